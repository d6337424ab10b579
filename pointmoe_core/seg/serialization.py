"""Space-filling-curve serialization of voxelised point clouds (PTv3 "point cloud serialization").

Point Transformer V3 turns an unordered sparse voxel set into sequences by sorting the voxels
along space-filling curves; attention then runs inside consecutive windows ("patches") of each
sequence. Four curves are used: ``"z"`` (Morton / z-order), ``"hilbert"``, and their
``"-trans"`` variants which swap the x and y axes before encoding.

Bit conventions (identical to Pointcept, so that released checkpoints see the same windows):

* Morton: bit ``i`` of x, y, z lands at code bit ``3i + 2``, ``3i + 1``, ``3i``.
* Hilbert: John Skilling's "AxesToTranspose" (2004) followed by Gray decoding; the transposed
  form is read with x as the most significant axis of every 3-bit group.
* Batched code: ``(batch << 3 * depth) | curve_code`` so that sorting keeps clouds apart.

``depth`` is the number of bits per axis (≤ 16, grid coordinates must lie in ``[0, 2**depth)``).
Everything is vectorised over points: the only Python loops run over bits (≤ 16) and axes (3).
"""
from __future__ import annotations

from typing import Sequence

import torch

ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")
MAX_DEPTH = 16


def _spread_bits(v: torch.Tensor) -> torch.Tensor:
    """Spread the low 16 bits of ``v`` so that bit ``i`` moves to bit ``3i`` ("part1by2")."""
    v = v & 0xFFFF
    v = (v | (v << 32)) & 0x1F00000000FFFF
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


def _interleave(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Interleave three ≤16-bit integers: x on bits 3i+2, y on 3i+1, z on 3i."""
    return (_spread_bits(x) << 2) | (_spread_bits(y) << 1) | _spread_bits(z)


def _check(grid_coord: torch.Tensor, depth: int) -> torch.Tensor:
    if grid_coord.ndim < 2 or grid_coord.shape[-1] != 3:
        raise ValueError(f"grid_coord must be (..., N, 3), got {tuple(grid_coord.shape)}")
    if not 0 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be in [0, {MAX_DEPTH}], got {depth}")
    # Like Pointcept, only the low `depth` bits of each axis are encoded.
    return grid_coord.long() & ((1 << depth) - 1)


def z_order_encode(grid_coord: torch.Tensor, depth: int = MAX_DEPTH) -> torch.Tensor:
    """Morton code of integer grid coordinates ``(..., N, 3)`` -> int64 ``(..., N)``."""
    g = _check(grid_coord, depth)
    return _interleave(g[..., 0], g[..., 1], g[..., 2])


def hilbert_encode(grid_coord: torch.Tensor, depth: int = MAX_DEPTH) -> torch.Tensor:
    """3D Hilbert index of integer grid coordinates ``(..., N, 3)`` -> int64 ``(..., N)``.

    Skilling's algorithm on int64 columns: undo excess work from the most significant bit
    down (invert or exchange the lower bits of axis 0), then Gray-decode the transposed index.
    """
    g = _check(grid_coord, depth)
    if depth == 0:
        return torch.zeros(g.shape[:-1], dtype=torch.long, device=g.device)
    x = [g[..., 0].clone(), g[..., 1].clone(), g[..., 2].clone()]
    top = 1 << (depth - 1)

    # Inverse undo: for each bit q from the top, for each axis i.
    q = top
    while q > 1:
        low = q - 1
        for i in range(3):
            bit_set = (x[i] & q) != 0
            if i == 0:
                x[0] = torch.where(bit_set, x[0] ^ low, x[0])
            else:
                swap = (x[0] ^ x[i]) & low
                x0_new = torch.where(bit_set, x[0] ^ low, x[0] ^ swap)
                x[i] = torch.where(bit_set, x[i], x[i] ^ swap)
                x[0] = x0_new
        q >>= 1

    # Gray encode of the transposed form (prefix XOR over the interleaved bit string).
    x[1] = x[1] ^ x[0]
    x[2] = x[2] ^ x[1]
    t = torch.zeros_like(x[0])
    q = top
    while q > 1:
        t = torch.where((x[2] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    x = [xi ^ t for xi in x]
    return _interleave(x[0], x[1], x[2])


def encode(
    grid_coord: torch.Tensor,
    batch: torch.Tensor | None = None,
    depth: int = MAX_DEPTH,
    order: str = "z",
) -> torch.Tensor:
    """Serialization code for one curve; with ``batch`` the cloud index fills the high bits."""
    return encode_orders(grid_coord, batch, depth, [order])[0]


def encode_orders(grid_coord: torch.Tensor, batch: torch.Tensor | None, depth: int,
                  orders: Sequence[str]) -> torch.Tensor:
    """``encode`` for several curves, (K, N): each curve with its ``-trans`` twin in one pass, the
    twin's coordinates stacked beside the original's (half the operators of one pass per curve)."""
    unknown = [order for order in orders if order not in ORDERS]
    if unknown:
        raise ValueError(f"unknown serialization order {unknown[0]!r}; expected one of {ORDERS}")
    codes: dict[str, torch.Tensor] = {}
    for curve, encode_curve in (("z", z_order_encode), ("hilbert", hilbert_encode)):
        wanted = [order for order in orders if order.split("-")[0] == curve]
        if wanted:
            axes = [(1, 0, 2) if order.endswith("-trans") else (0, 1, 2) for order in wanted]
            # columns picked one by one: a list index would copy itself to a GPU first
            coords = [torch.stack([grid_coord[:, axis] for axis in a], dim=1) for a in axes]
            codes.update(zip(wanted, encode_curve(torch.stack(coords), depth)))
    code = torch.stack([codes[order] for order in orders])
    if batch is not None:
        code = (batch.long() << (depth * 3)) | code
    return code


def inverse_permutation(order: torch.Tensor) -> torch.Tensor:
    """Inverse of permutation(s) along the last dim: ``inverse[..., order[..., j]] = j``."""
    src = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, src)


def serialize(
    grid_coord: torch.Tensor,
    batch: torch.Tensor | None,
    depth: int,
    orders: Sequence[str] = ORDERS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes, sort orders and inverses for several curves, each stacked as ``(K, N)``.

    ``order[k]`` lists point indices along curve ``k``; ``inverse[k]`` maps a point to its
    position in that sequence. Sorting is stable, so duplicated codes keep storage order.
    """
    code = encode_orders(grid_coord, batch, depth, orders)
    order = torch.argsort(code, dim=-1, stable=True)
    return code, order, inverse_permutation(order)
