"""Submanifold sparse 3D convolution (PTv3's embedding stem and xCPE positional encoding).

PTv3 calls spconv's ``SubMConv3d``: a 3D convolution evaluated only at the active voxels, whose
output sites are exactly the input sites. Two backends compute the same thing:

* ``"torch"``: a neighbour map by binary search in the sorted voxel keys and one
  gather-matmul-scatter per kernel offset. Runs anywhere torch runs, supports autograd.
* ``"spconv"``: spconv 2.x's native rulebook kernels, used when ``spconv.pytorch`` imports.

Convention (checked against spconv 2.3.8): with ``r = k // 2``,
``out[p] = bias + sum_d W[:, d + r] @ in[p + d]`` for ``d`` in ``[-r, r]^3``, ``p`` and ``d`` in
``grid_coord`` column order (x, y, z), neighbours only among active voxels of the same batch
element. ``weight`` has spconv's layout ``(out, kx, ky, kz, in)`` so official state dicts load
unchanged under either backend.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..common.device import device_constants
from ..common.grouped_mm import GROUPED_WIDTH, compute_dtype, fused, grouped_mm, grouped_operand, kept_operand


@functools.cache
def _spconv_ops():
    """spconv's low-level ops module, or None when spconv is not installed."""
    try:
        from spconv.pytorch import ops
    except ImportError:
        return None
    return ops


def available_backends() -> list[str]:
    """Backends usable in this environment, preferred last (``"auto"`` picks the last one)."""
    return ["torch", "spconv"] if _spconv_ops() is not None else ["torch"]


# --------------------------------------------------------------------------- torch backend


@dataclass(frozen=True)
class NeighbourMap:
    """Every (output row, input row) pair with ``grid_coord[in] == grid_coord[out] + d_j`` in the
    same batch element, offset ``j`` (flattened kx, ky, kz) after offset: ``out_rows`` and
    ``in_rows`` (P,), and ``ends`` (K,) int32, where each offset's pairs end. That is one grouped
    GEMM's layout, and it stays on the device; ``pairs`` splits it for the loop over offsets."""

    num_points: int
    kernel_size: int
    out_rows: torch.Tensor
    in_rows: torch.Tensor
    ends: torch.Tensor

    @functools.cached_property
    def pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(output rows, input rows) of each offset (one host read of ``ends``)."""
        bounds = [0, *self.ends.tolist()]
        return [(self.out_rows[start:end], self.in_rows[start:end]) for start, end in zip(bounds, bounds[1:])]


def build_neighbour_map(grid_coord: torch.Tensor, batch: torch.Tensor, kernel_size: int) -> NeighbourMap:
    """Hash the active voxels and look up all ``kernel_size**3`` neighbours of each one.

    Voxel key = ((batch * Dx + x) * Dy + y) * Dz + z (int64), with the coordinates shifted by the
    kernel radius and D the per-axis extent plus twice the radius, so every neighbour has a key of
    its own and an offset is one constant added to every key. Queries run in key order, so the
    lookups of neighbouring voxels touch neighbouring memory, and along z each position follows
    from the previous one, so one binary search serves a whole (dx, dy) row of offsets: 2x faster
    on a CPU than one search per offset in the voxels' own order.
    """
    if kernel_size % 2 != 1:
        raise ValueError(f"submanifold convolution needs an odd kernel size, got {kernel_size}")
    n = grid_coord.shape[0]
    device = grid_coord.device
    radius = kernel_size // 2
    num_offsets = kernel_size**3
    centre = num_offsets // 2
    all_rows = torch.arange(n, device=device)
    if n == 0:
        return NeighbourMap(n, kernel_size, all_rows, all_rows, torch.zeros(num_offsets, dtype=torch.int32,
                                                                            device=device))

    coord = grid_coord.long() - grid_coord.long().min(0).values + radius
    extent = coord.max(0).values + 1 + radius
    keys = ((batch.long() * extent[0] + coord[:, 0]) * extent[1] + coord[:, 1]) * extent[2] + coord[:, 2]
    sorted_keys, order = torch.sort(keys)
    # the offsets before the centre in (dx, dy) rows of dz = -radius..radius, all rows at once;
    # their key shifts computed where the keys are (nothing read back from a GPU)
    dx, dy, offsets = _kernel_rows(kernel_size, device)
    rows_xy = len(dx)
    row_shift = (dx * extent[1] + dy) * extent[2]
    query = sorted_keys + row_shift[:, None] - radius  # (rows, n): dz = -radius
    pos = _search_sorted(sorted_keys, query, int32=n < 2**31 - kernel_size)
    # past the last key, positions up to n - 1 + kernel_size read a key no query equals: no clamping
    padded_keys = torch.cat([sorted_keys, sorted_keys.new_full((kernel_size,), -1)])
    # (row, dz, n): offset j = (row, dz) in the flattened kernel order
    at = torch.empty(rows_xy, kernel_size, n, dtype=pos.dtype, device=device)
    hit = torch.empty(rows_xy, kernel_size, n, dtype=torch.bool, device=device)
    for step in range(kernel_size):
        if step:  # keys are distinct integers: the first key >= q + 1 follows the first >= q iff that one is q
            torch.add(at[:, step - 1], hit[:, step - 1], out=at[:, step])
            query += 1
        else:
            at[:, 0] = pos
        torch.eq(padded_keys[at[:, step]], query, out=hit[:, step])
    at, hit = at.reshape(-1, n)[:centre], hit.reshape(-1, n)[:centre]
    offset, sorted_row = hit.nonzero(as_tuple=True)  # by offset, then by key
    rows, cols = order[sorted_row], order[at[offset, sorted_row]]
    # Offset -d is flattened index K-1-j and relates the same voxel pairs the other way round: the
    # offsets after the centre are these blocks reversed (an offset pairs each voxel at most once,
    # so the order within a block changes no sum)
    block_start, block_end = (torch.searchsorted(offset, offsets, right=right) for right in (False, True))
    found = len(offset)
    ends = torch.cat([block_end, block_end.new_full((1,), found + n), 2 * found + n - block_start.flip(0)])
    return NeighbourMap(n, kernel_size, torch.cat([rows, all_rows, cols.flip(0)]),
                        torch.cat([cols, all_rows, rows.flip(0)]), ends.to(torch.int32))


@device_constants
def _kernel_rows(kernel_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dy) of the kernel's (dx, dy) rows up to the centre's, and the flattened indices of the
    offsets before the centre: constants of the kernel size."""
    radius = kernel_size // 2
    centre = kernel_size**3 // 2
    rows_xy = centre // kernel_size + 1
    span = torch.arange(-radius, radius + 1, device=device)
    dx, dy = span.repeat_interleave(kernel_size), span.repeat(kernel_size)
    return dx[:rows_xy], dy[:rows_xy], torch.arange(centre, device=device)


def _search_sorted(sorted_keys: torch.Tensor, query: torch.Tensor, int32: bool) -> torch.Tensor:
    """``torch.searchsorted`` for queries sorted along their last dim. On a CPU NumPy's does it in
    half the time: it starts each search from the previous result when the queries increase."""
    if sorted_keys.device.type != "cpu":
        return torch.searchsorted(sorted_keys, query, out_int32=int32)
    found = np.searchsorted(sorted_keys.numpy(), query.numpy().ravel()).reshape(query.shape)
    return torch.from_numpy(found.astype(np.int32) if int32 else found)


def _torch_subm_conv(feat: torch.Tensor, weight: torch.Tensor, nmap: NeighbourMap,
                     operand: torch.Tensor | None) -> torch.Tensor:
    """One gather-matmul-scatter per kernel offset or, given the weights as a grouped-GEMM
    ``operand`` (:func:`grouped_conv_operand`), all offsets' products as one grouped GEMM
    (:mod:`..common.grouped_mm`): 3 launches a convolution instead of ~80."""
    cout, cin = weight.shape[0], weight.shape[-1]
    if operand is not None:
        # the fused kernel wants 16-byte rows: the operand's widths are padded with zeros to
        # multiples of 8 (the stem's 4-6 input channels), which adds nothing to the products
        rows = feat.index_select(0, nmap.in_rows)
        if operand.shape[1] != cin:  # a pad copies even when it adds nothing
            rows = F.pad(rows, (0, operand.shape[1] - cin))
        products = grouped_mm(rows.to(operand.dtype), operand, nmap.ends)[:, :cout]
        return products.new_zeros(nmap.num_points, cout).index_add_(0, nmap.out_rows, products)
    per_offset = weight.reshape(cout, -1, cin)
    centre = per_offset.shape[1] // 2
    out = feat @ per_offset[:, centre].T
    for j, (rows, cols) in enumerate(nmap.pairs):
        if j == centre or rows.numel() == 0:
            continue
        out.index_add_(0, rows, feat.index_select(0, cols) @ per_offset[:, j].T)
    return out


def grouped_conv_operand(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The convolution's weight ``(out, kx, ky, kz, in)`` as a grouped GEMM's operand, one group per
    kernel offset: ``(K, in, out)`` in ``dtype``, widths padded with zeros to multiples of
    ``GROUPED_WIDTH``."""
    cout, cin = weight.shape[0], weight.shape[-1]
    per_offset = weight.reshape(cout, -1, cin)
    pad_in, pad_out = -cin % GROUPED_WIDTH, -cout % GROUPED_WIDTH
    if pad_in or pad_out:
        per_offset = F.pad(per_offset, (0, pad_in, 0, 0, 0, pad_out))
    return grouped_operand(per_offset.transpose(0, 1), dtype)


# -------------------------------------------------------------------------- spconv backend


@functools.cache
def _patch_spconv_streams_for_cpu() -> None:
    """spconv's CPU backward asks torch for the current CUDA stream, which raises without a GPU;
    on CPU the stream handle spconv expects is simply 0."""
    if torch.cuda.is_available():
        return
    for name in ("spconv.pytorch.cppcore", "spconv.pytorch.ops", "spconv.pytorch.hash"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "get_current_stream"):
            module.get_current_stream = lambda: 0


@contextlib.contextmanager
def _one_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """spconv 2.3.8's CPU gather-GEMM-scatter races when torch runs more than one thread: with 2
    threads the parity stem was off by up to 1.28 and results varied run to run, with 1 thread
    they match a float64 reference to 2e-7. So its CPU kernels run single-threaded."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class SpconvRulebook:
    num_points: int
    indice_pairs: torch.Tensor
    indice_pair_num: torch.Tensor


def build_spconv_rulebook(grid_coord: torch.Tensor, batch: torch.Tensor, kernel_size: int) -> SpconvRulebook:
    ops = _spconv_ops()
    from spconv.core import ConvAlgo

    indices = torch.cat([batch.view(-1, 1), grid_coord], 1).int().contiguous()
    spatial_shape = (grid_coord.max(0).values + 1).tolist()
    batch_size = int(batch.max()) + 1
    with _one_thread_on_cpu(indices.device):
        _, pairs, pair_num = ops.get_indice_pairs(
            indices, batch_size, spatial_shape, ConvAlgo.Native,
            [kernel_size] * 3, [1] * 3, [0] * 3, [1] * 3, [0] * 3, True, False,
        )
    return SpconvRulebook(grid_coord.shape[0], pairs, pair_num)


class _SpconvSubMConv(torch.autograd.Function):
    """spconv's native submanifold conv (no bias), with both passes under ``_one_thread_on_cpu``."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float16)  # as spconv's own Functions
    def forward(ctx, feat: torch.Tensor, weight: torch.Tensor, pairs: torch.Tensor, pair_num: torch.Tensor):
        from spconv.core import ConvAlgo

        feat, weight = feat.contiguous(), weight.contiguous()
        ctx.save_for_backward(feat, weight, pairs, pair_num)
        with _one_thread_on_cpu(feat.device):
            return _spconv_ops().indice_conv(
                feat, weight, pairs, pair_num, feat.shape[0], False, True, algo=ConvAlgo.Native
            )

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out: torch.Tensor):
        from spconv.core import ConvAlgo

        feat, weight, pairs, pair_num = ctx.saved_tensors
        with _one_thread_on_cpu(feat.device):
            grad_feat, grad_weight = _spconv_ops().indice_conv_backward(
                feat, weight, grad_out.contiguous(), pairs, pair_num, False, True, algo=ConvAlgo.Native
            )
        return grad_feat, grad_weight, None, None


# ---------------------------------------------------------------------------------- module

_Entry = TypeVar("_Entry", NeighbourMap, SpconvRulebook)


class SubMConv3d(nn.Module):
    """Submanifold 3D convolution over a batch of voxelised clouds (spconv ``SubMConv3d``).

    ``cache`` (one dict per resolution level) holds the neighbour map / rulebook so that all
    convolutions of a stage with the same kernel size build it once.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True, backend: str = "auto"
    ) -> None:
        super().__init__()
        if backend not in ("auto", "torch", "spconv"):
            raise ValueError(f"unknown backend {backend!r}; choose auto, torch or spconv")
        if backend == "spconv" and "spconv" not in available_backends():
            raise ImportError("backend='spconv' needs spconv (pip install spconv)")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.backend = available_backends()[-1] if backend == "auto" else backend
        self.offset_products = "auto"  # torch backend: "loop" (a GEMM per offset), "grouped", or auto
        self.kept_operands: dict | None = None  # common.grouped_mm.keep_operands
        k = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, k, k, k, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def kernel(self, device: torch.device | str, dtype: torch.dtype) -> str:
        """What runs this convolution on ``device`` in ``dtype``: "spconv", "torch" (ours, a GEMM per
        kernel offset) or "grouped_mm" (ours, one grouped GEMM: auto where that is a fused kernel,
        CUDA in bfloat16)."""
        if self.backend == "spconv":
            return "spconv"
        if self.offset_products not in ("auto", "loop", "grouped"):
            raise ValueError(f"offset_products must be auto, loop or grouped, got {self.offset_products!r}")
        grouped = self.offset_products == "grouped" or (self.offset_products == "auto" and fused(device, dtype))
        return "grouped_mm" if grouped else "torch"

    def reset_parameters(self) -> None:
        # Same distribution as spconv / nn.Conv3d defaults: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size**3)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"bias={self.bias is not None}, backend={self.backend}"
        )

    def forward(
        self,
        feat: torch.Tensor,
        grid_coord: torch.Tensor,
        batch: torch.Tensor,
        cache: dict | None = None,
    ) -> torch.Tensor:
        if feat.shape[0] == 0:
            return feat.new_zeros(0, self.out_channels)
        cache = {} if cache is None else cache
        if self.backend == "spconv":
            rulebook = self._cached(cache, ("spconv_subm", self.kernel_size), feat.shape[0],
                                    lambda: build_spconv_rulebook(grid_coord, batch, self.kernel_size))
            _patch_spconv_streams_for_cpu()
            cpu = feat.device.type == "cpu"
            # spconv's CPU kernels want one dtype and no half floats: autocast stays outside them
            with torch.autocast("cpu", enabled=False) if cpu else contextlib.nullcontext():
                out = _SpconvSubMConv.apply(feat.to(self.weight.dtype) if cpu else feat, self.weight,
                                            rulebook.indice_pairs, rulebook.indice_pair_num)
        else:
            nmap = self._cached(cache, ("subm", self.kernel_size), feat.shape[0],
                                lambda: build_neighbour_map(grid_coord, batch, self.kernel_size))
            dtype = compute_dtype(feat)
            operand = None
            if self.kernel(feat.device, dtype) == "grouped_mm":
                operand = kept_operand(self.kept_operands, dtype, [self.weight],
                                       lambda: grouped_conv_operand(self.weight, dtype))
            out = _torch_subm_conv(feat, self.weight, nmap, operand)
        # spconv CPU cannot fuse a bias in eval mode; adding it here is the same math everywhere.
        return out if self.bias is None else out + self.bias.to(out.dtype)

    @staticmethod
    def _cached(cache: dict, key: tuple, num_points: int, build: Callable[[], _Entry]) -> _Entry:
        entry = cache.get(key)
        if entry is None:
            entry = cache[key] = build()
        elif entry.num_points != num_points:
            raise ValueError(
                f"cache entry {key} was built for {entry.num_points} points, got {num_points}: "
                "use one cache dict per point set"
            )
        return entry
