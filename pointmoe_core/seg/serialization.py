"""Space-filling-curve serialization of voxelised point clouds (PTv3 "point cloud serialization").

Point Transformer V3 turns an unordered sparse voxel set into sequences by sorting the voxels
along space-filling curves; attention then runs inside consecutive windows ("patches") of each
sequence. Four curves are used: ``"z"`` (Morton / z-order), ``"hilbert"``, and their
``"-trans"`` variants which swap the x and y axes before encoding.

Bit conventions (identical to Pointcept, so that released checkpoints see the same windows):

* Morton: bit ``i`` of x, y, z lands at code bit ``3i + 2``, ``3i + 1``, ``3i``.
* Hilbert: John Skilling's "AxesToTranspose" (2004) followed by Gray decoding; the transposed
  form is read with x as the most significant axis of every 3-bit group. Computed from the Morton
  code by the curve's automaton (``hilbert_from_morton``).
* Batched code: ``(batch << 3 * depth) | curve_code`` so that sorting keeps clouds apart.

``depth`` is the number of bits per axis (≤ 16, grid coordinates must lie in ``[0, 2**depth)``).
Everything is vectorised over points: the only Python loops run over levels (≤ 16).
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..common.device import device_constants

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


# The Hilbert curve as an automaton over the Morton code's 3-bit groups, top level first: in state
# s, octant o (x y z bits) of a level gives that level's 3 digits and the next state. Its states
# are the cube symmetries reached from the identity: the root's digits are the Gray-code ranks of
# the octants, and the sub-cube of octant o is walked as the whole curve under CHILD_SYMMETRY[o]
# (output axis a reads input axis perm[a], flipped where bit 2 - a of flip is set). That is the
# curve Pointcept encodes with Skilling's "AxesToTranspose" + Gray decoding (24 states; the tests
# hold it to a transcription of Skilling's algorithm), at one table lookup per level where his
# algorithm takes ~20 operations.
ROOT_DIGITS = (0, 1, 3, 2, 7, 6, 4, 5)
CHILD_SYMMETRY = (((2, 0, 1), 0), ((1, 0, 2), 0), ((2, 1, 0), 5), ((0, 1, 2), 0),
                  ((2, 0, 1), 6), ((1, 0, 2), 6), ((2, 1, 0), 0), ((0, 1, 2), 0))


def _octant_map(perm: tuple[int, int, int], flip: int) -> tuple[int, ...]:
    """The symmetry (perm, flip) as a map of the 8 octants."""
    def mapped(octant: int) -> int:
        bits = [octant >> (2 - axis) & 1 for axis in range(3)]
        return sum((bits[perm[axis]] ^ (flip >> (2 - axis) & 1)) << (2 - axis) for axis in range(3))
    return tuple(mapped(octant) for octant in range(8))


def _hilbert_automaton() -> tuple[list[int], list[int]]:
    """Digits and next states, indexed by ``8 * state + octant``; states stored as ``8 * state``."""
    child = [_octant_map(*symmetry) for symmetry in CHILD_SYMMETRY]
    states = [tuple(range(8))]
    number = {states[0]: 0}
    digits, next_states = [], []
    for state in states:  # grows while it is walked: breadth-first over the reachable symmetries
        for octant in range(8):
            seen = state[octant]
            digits.append(ROOT_DIGITS[seen])
            following = tuple(child[seen][state[o]] for o in range(8))
            if following not in number:
                number[following] = len(states)
                states.append(following)
            next_states.append(8 * number[following])
    return digits, next_states


HILBERT_DIGITS, HILBERT_NEXT = _hilbert_automaton()


@device_constants
def _hilbert_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(HILBERT_DIGITS, device=device), torch.tensor(HILBERT_NEXT, device=device)


def hilbert_from_morton(morton: torch.Tensor, depth: int) -> torch.Tensor:
    """3D Hilbert index from the Morton code of the same coordinates (``z_order_encode``)."""
    digits, next_states = _hilbert_tables(morton.device)
    code = torch.zeros_like(morton)
    state = torch.zeros_like(morton)
    for level in reversed(range(depth)):
        at = state + ((morton >> (3 * level)) & 7)
        code = (code << 3) | digits[at]
        if level:
            state = next_states[at]
    return code


def hilbert_encode(grid_coord: torch.Tensor, depth: int = MAX_DEPTH) -> torch.Tensor:
    """3D Hilbert index of integer grid coordinates ``(..., N, 3)`` -> int64 ``(..., N)``."""
    return hilbert_from_morton(z_order_encode(grid_coord, depth), depth)


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
    """``encode`` for several curves, (K, N)."""
    unknown = [order for order in orders if order not in ORDERS]
    if unknown:
        raise ValueError(f"unknown serialization order {unknown[0]!r}; expected one of {ORDERS}")
    # the curves of one axis order (x y z, or y x z for the -trans curves) share its Morton code,
    # from which the Hilbert code follows; the axis orders are stacked and encoded together
    variants = sorted({order.endswith("-trans") for order in orders})
    # columns picked one by one: a list index would copy itself to a GPU first
    coords = torch.stack([torch.stack([grid_coord[:, axis] for axis in ((1, 0, 2) if trans else (0, 1, 2))], dim=1)
                          for trans in variants])
    curves = {"z": z_order_encode(coords, depth)}
    if any(order.startswith("hilbert") for order in orders):
        curves["hilbert"] = hilbert_from_morton(curves["z"], depth)
    code = torch.stack([curves[order.split("-")[0]][variants.index(order.endswith("-trans"))] for order in orders])
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
