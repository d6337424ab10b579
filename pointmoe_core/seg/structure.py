"""The ``Point`` structure: one batch of point clouds flowing through the PTv3 / Point-MoE backbone.

Pointcept keeps a batch as a dict of concatenated per-point tensors plus ``offset`` (cumulative
point counts, one entry per cloud). This is the same information as a plain dataclass:

* ``coord`` (N, 3) float: original coordinates; ``grid_coord`` (N, 3) long: voxel indices
  (``floor(coord / grid_size) - min``); ``feat`` (N, C): features.
* ``offset`` (B,) / ``batch`` (N,): given one, the other is derived.
* serialization (see :mod:`.serialization`): ``serialized_depth`` and the stacked ``(K, N)``
  tensors ``serialized_code``, ``serialized_order``, ``serialized_inverse`` (row ``k`` is curve
  ``k``; they behave like lists over orders).
* ``cache``: per-stage memo for sparse-conv neighbour maps and attention pad/unpad indices. The
  decoder at stage ``s`` works on the very same ``Point`` object as the encoder at stage ``s``,
  so it reuses these.
* ``pooling_parent`` / ``pooling_inverse``: set by pooling so that unpooling can go back.
* ``stage_rows``: set by the backbone on the point it returns: for every encoder stage, the row
  that holds each input point there (the pooled token it went into), for per-point routing.
* ``conv_feat``: features the next sparse convolution sees when they differ from ``feat``
  (only after unpooling, see ``SerializedUnpooling``); ``None`` means "use ``feat``".
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping, Sequence

import torch

from .serialization import MAX_DEPTH, ORDERS, serialize


def offset2bincount(offset: torch.Tensor) -> torch.Tensor:
    """Points per cloud from cumulative ``offset``."""
    return torch.diff(offset, prepend=offset.new_zeros(1))


def offset2batch(offset: torch.Tensor, num_points: int | None = None) -> torch.Tensor:
    """Cloud index of every point, ``(N,)`` long; ``num_points`` (N), where known, spares a GPU
    the host's wait for the total."""
    counts = offset2bincount(offset)
    return torch.repeat_interleave(torch.arange(len(counts), device=offset.device), counts, output_size=num_points)


def batch2offset(batch: torch.Tensor, num_clouds: int | None = None) -> torch.Tensor:
    """Cumulative point counts from per-point cloud indices (clouds contiguous, in ascending order);
    ``num_clouds``, where known, spares a GPU the host's wait for the largest index."""
    if num_clouds is None:
        num_clouds = int(batch.max()) + 1 if len(batch) else 0
    return torch.searchsorted(batch, torch.arange(num_clouds, device=batch.device), right=True)


@dataclass(eq=False)
class Point:
    """A batch of point clouds (Pointcept's ``Point`` dict as a dataclass)."""

    feat: torch.Tensor
    coord: torch.Tensor | None = None
    grid_coord: torch.Tensor | None = None
    offset: torch.Tensor | None = None
    batch: torch.Tensor | None = None
    grid_size: float | None = None
    serialized_depth: int | None = None
    serialized_code: torch.Tensor | None = None
    serialized_order: torch.Tensor | None = None
    serialized_inverse: torch.Tensor | None = None
    pooling_parent: "Point | None" = None
    pooling_inverse: torch.Tensor | None = None
    conv_feat: torch.Tensor | None = None
    stage_rows: list[torch.Tensor] | None = None
    cache: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.offset is None and self.batch is None:
            n = self.feat.shape[0]
            self.offset = torch.full((1,), n, dtype=torch.long, device=self.feat.device)
        if self.batch is None:
            self.offset = torch.as_tensor(self.offset, device=self.feat.device).long()
            self.batch = offset2batch(self.offset, self.feat.shape[0])
        elif self.offset is None:
            self.batch = torch.as_tensor(self.batch, device=self.feat.device).long()
            self.offset = batch2offset(self.batch)
        if self.grid_size is not None:
            self.grid_size = float(self.grid_size)
        if self.grid_coord is None:
            if self.coord is None or self.grid_size is None:
                raise ValueError("Point needs grid_coord, or coord together with grid_size")
            # Pointcept's fallback: truncate (coord - min) / grid_size.
            rel = self.coord - self.coord.min(0).values
            self.grid_coord = torch.div(rel, self.grid_size, rounding_mode="trunc").long()
        else:
            self.grid_coord = self.grid_coord.long()
        if self.coord is None:
            self.coord = self.grid_coord.to(self.feat.dtype) * (self.grid_size or 1.0)

    # ---- construction / dict-style access -------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Point":
        """Build from a Pointcept-style data dict; keys that are not fields are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self, key, value)

    def __contains__(self, key: str) -> bool:
        return getattr(self, key, None) is not None

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    @property
    def num_points(self) -> int:
        return self.feat.shape[0]

    @property
    def bincount(self) -> torch.Tensor:
        """Points per cloud, ``(B,)``."""
        return offset2bincount(self.offset)

    # ---- serialization ----------------------------------------------------------------------
    def serialization(
        self,
        order: str | Sequence[str] = ORDERS,
        depth: int | None = None,
        shuffle_orders: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        """Encode ``grid_coord`` along each curve in ``order`` (PTv3 serialization).

        ``depth`` defaults to ``bit_length(max grid_coord)``, Pointcept v1.5's rule (the one the
        official Point-MoE code uses). ``shuffle_orders`` permutes the list of curves with
        ``torch.randperm`` on ``generator`` (the global RNG when ``None``), as in training.
        """
        orders = (order,) if isinstance(order, str) else tuple(order)
        if depth is None:
            depth = int(self.grid_coord.max()).bit_length() if self.num_points else 0
        if depth > MAX_DEPTH:
            raise ValueError(
                f"serialization depth {depth} > {MAX_DEPTH}: grid coordinates reach "
                f"{int(self.grid_coord.max())}; use a coarser grid_size or crop the cloud"
            )
        if depth * 3 + len(self.offset).bit_length() > 63:
            raise ValueError("serialization code would overflow int64 (too many clouds)")
        code, order_, inverse = serialize(self.grid_coord, self.batch, depth, orders)
        if shuffle_orders:
            perm = torch.randperm(code.shape[0], generator=generator)
            code, order_, inverse = code[perm], order_[perm], inverse[perm]
        self.serialized_depth = depth
        self.serialized_code = code
        self.serialized_order = order_
        self.serialized_inverse = inverse
