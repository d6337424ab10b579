"""Space-filling-curve codes: brute-force references, curve properties and the official fixture."""
import itertools

import numpy as np
import pytest
import torch

from pointmoe_core.seg.serialization import (
    ORDERS,
    encode,
    hilbert_encode,
    inverse_permutation,
    serialize,
    z_order_encode,
)
from pointmoe_core.seg.structure import Point, batch2offset, offset2batch


# ---- pure-Python references (one point at a time) ------------------------------------------
def morton_ref(x: int, y: int, z: int, depth: int) -> int:
    code = 0
    for i in range(depth):
        code |= ((x >> i) & 1) << (3 * i + 2)
        code |= ((y >> i) & 1) << (3 * i + 1)
        code |= ((z >> i) & 1) << (3 * i)
    return code


def hilbert_ref(coords: tuple[int, int, int], depth: int) -> int:
    """John Skilling, "Programming the Hilbert curve" (2004): AxesToTranspose, then read the
    transposed index MSB first, axis 0 first."""
    x = list(coords)
    n = len(x)
    m = 1 << (depth - 1)
    q = m
    while q > 1:
        p = q - 1
        for i in range(n):
            if x[i] & q:
                x[0] ^= p
            else:
                t = (x[0] ^ x[i]) & p
                x[0] ^= t
                x[i] ^= t
        q >>= 1
    for i in range(1, n):
        x[i] ^= x[i - 1]
    t = 0
    q = m
    while q > 1:
        if x[n - 1] & q:
            t ^= q - 1
        q >>= 1
    for i in range(n):
        x[i] ^= t
    code = 0
    for b in range(depth - 1, -1, -1):
        for i in range(n):
            code = (code << 1) | ((x[i] >> b) & 1)
    return code


def full_cube(depth: int) -> torch.Tensor:
    side = range(1 << depth)
    return torch.tensor(list(itertools.product(side, side, side)), dtype=torch.long)


# ---- curve codes ---------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_codes_match_brute_force_on_full_cubes(depth):
    g = full_cube(depth)
    z = z_order_encode(g, depth).tolist()
    h = hilbert_encode(g, depth).tolist()
    for (x, y, zz), zc, hc in zip(g.tolist(), z, h):
        assert zc == morton_ref(x, y, zz, depth)
        assert hc == hilbert_ref((x, y, zz), depth)
    # both curves are bijections of the cube onto 0 .. 8^depth - 1
    assert sorted(z) == list(range(8**depth))
    assert sorted(h) == list(range(8**depth))


@pytest.mark.parametrize("depth", [9, 13, 16])
def test_codes_match_brute_force_on_random_deep_coords(depth):
    gen = torch.Generator().manual_seed(depth)
    g = torch.randint(0, 1 << depth, (300, 3), generator=gen)
    z = z_order_encode(g, depth).tolist()
    h = hilbert_encode(g, depth).tolist()
    for (x, y, zz), zc, hc in zip(g.tolist(), z, h):
        assert zc == morton_ref(x, y, zz, depth)
        assert hc == hilbert_ref((x, y, zz), depth)
    assert max(z + h) < 1 << (3 * depth)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_hilbert_curve_steps_to_face_neighbours(depth):
    """Walking the cube in Hilbert order moves one voxel at a time (z-order jumps)."""
    g = full_cube(depth)
    walk = g[torch.argsort(hilbert_encode(g, depth))]
    steps = (walk[1:] - walk[:-1]).abs().sum(1)
    assert torch.all(steps == 1)
    assert walk[0].tolist() == [0, 0, 0]
    zwalk = g[torch.argsort(z_order_encode(g, depth))]
    assert (zwalk[1:] - zwalk[:-1]).abs().sum(1).max() > 1


def test_trans_orders_swap_x_and_y():
    g = torch.randint(0, 512, (200, 3))
    swapped = g[:, [1, 0, 2]]
    assert torch.equal(encode(g, order="z-trans", depth=9), z_order_encode(swapped, 9))
    assert torch.equal(encode(g, order="hilbert-trans", depth=9), hilbert_encode(swapped, 9))
    assert not torch.equal(encode(g, order="z", depth=9), encode(g, order="z-trans", depth=9))


def test_only_low_depth_bits_are_encoded_and_bad_args_raise():
    g = torch.tensor([[5, 6, 7]])
    assert z_order_encode(g + 8, 3).item() == z_order_encode(g, 3).item()
    with pytest.raises(ValueError):
        z_order_encode(g, 17)
    with pytest.raises(ValueError):
        encode(g, order="peano")


def test_batch_code_keeps_clouds_apart():
    gen = torch.Generator().manual_seed(0)
    g = torch.randint(0, 64, (500, 3), generator=gen)
    batch = torch.sort(torch.randint(0, 3, (500,), generator=gen)).values
    for order in ORDERS:
        code = encode(g, batch, depth=6, order=order)
        assert torch.equal(code >> 18, batch)
        assert torch.equal(code & ((1 << 18) - 1), encode(g, None, depth=6, order=order))
    code, order, inverse = serialize(g, batch, 6)
    for k in range(len(ORDERS)):
        assert torch.all(torch.diff(batch[order[k]]) >= 0)  # sequences never interleave clouds


def test_order_and_inverse_are_inverse_permutations():
    g = torch.randint(0, 100, (1000, 3))
    code, order, inverse = serialize(g, None, 7)
    assert code.shape == order.shape == inverse.shape == (4, 1000)
    ar = torch.arange(1000)
    for k in range(4):
        assert torch.equal(order[k][inverse[k]], ar)
        assert torch.equal(inverse[k][order[k]], ar)
        assert torch.all(torch.diff(code[k][order[k]]) >= 0)
    assert torch.equal(inverse_permutation(order), inverse)


# ---- Point structure -----------------------------------------------------------------------
def test_offset_batch_round_trip():
    offset = torch.tensor([3, 7, 12])
    batch = offset2batch(offset)
    assert batch.tolist() == [0] * 3 + [1] * 4 + [2] * 5
    assert torch.equal(batch2offset(batch), offset)
    p = Point(feat=torch.zeros(12, 2), grid_coord=torch.zeros(12, 3, dtype=torch.long), batch=batch)
    assert torch.equal(p.offset, offset)
    p = Point(feat=torch.zeros(12, 2), coord=torch.rand(12, 3), grid_size=0.1, offset=offset)
    assert torch.equal(p.batch, batch) and p.grid_coord.dtype == torch.long


@pytest.mark.parametrize("max_coord,depth", [(399, 9), (511, 9), (512, 10), (1, 1)])
def test_serialization_depth_is_bit_length_of_max_grid_coord(max_coord, depth):
    g = torch.tensor([[0, 0, 0], [max_coord, 0, 1]])
    p = Point(feat=torch.zeros(2, 1), grid_coord=g)
    p.serialization()
    assert p.serialized_depth == depth  # Pointcept v1.5 rule, used by the official Point-MoE


def test_serialization_shuffle_is_reproducible_with_a_generator():
    g = torch.randint(0, 50, (100, 3))
    runs = []
    for _ in range(2):
        p = Point(feat=torch.zeros(100, 1), grid_coord=g)
        p.serialization(ORDERS, shuffle_orders=True, generator=torch.Generator().manual_seed(3))
        runs.append(p.serialized_code)
    assert torch.equal(runs[0], runs[1])
    plain = Point(feat=torch.zeros(100, 1), grid_coord=g)
    plain.serialization(ORDERS)
    assert sorted(map(tuple, runs[0].tolist())) == sorted(map(tuple, plain.serialized_code.tolist()))


def test_matches_official_codes_in_parity_fixture(shared_data):
    io = np.load(shared_data / "parity" / "pointmoe_tiny_io.npz")
    p = Point(feat=torch.from_numpy(io["feat"]), grid_coord=torch.from_numpy(io["grid_coord"]),
              offset=torch.from_numpy(io["offset"]))
    p.serialization(("z", "z-trans", "hilbert", "hilbert-trans"))
    assert p.serialized_depth == int(io["serialized_depth"]) == 9
    np.testing.assert_array_equal(p.serialized_code.numpy(), io["serialized_code"])
    np.testing.assert_array_equal(p.serialized_order.numpy(), io["serialized_order"])
