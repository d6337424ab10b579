"""SubMConv3d: the pure-torch backend against a dense conv3d, spconv and the official stem output."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pointmoe_core.common import grouped_mm
from pointmoe_core.seg.sparse_conv import SubMConv3d, available_backends, build_neighbour_map

needs_spconv = pytest.mark.skipif("spconv" not in available_backends(), reason="spconv is not installed")


def random_sparse_grid(seed: int, extent=(7, 6, 5), points_per_cloud=(40, 25)):
    """Two clouds of unique random voxels inside `extent`, concatenated batch-major."""
    g = torch.Generator().manual_seed(seed)
    coords, batches = [], []
    for b, n in enumerate(points_per_cloud):
        cells = torch.randperm(int(np.prod(extent)), generator=g)[:n]
        x, rest = cells // (extent[1] * extent[2]), cells % (extent[1] * extent[2])
        coords.append(torch.stack([x, rest // extent[2], rest % extent[2]], 1))
        batches.append(torch.full((n,), b))
    return torch.cat(coords), torch.cat(batches)


def dense_reference(feat, grid_coord, batch, weight, bias):
    """Scatter into a dense volume, run conv3d (cross-correlation) and read back active sites.

    conv3d's weight is (out, in, kx, ky, kz) and out[p] = sum_i W[..., i] in[p + i - r], which is
    our convention once the input-channel axis is moved from last to second.
    """
    num_batches = int(batch.max()) + 1
    extent = (grid_coord.max(0).values + 1).tolist()
    volume = feat.new_zeros(num_batches, feat.shape[1], *extent)
    x, y, z = grid_coord.T
    volume[batch, :, x, y, z] = feat
    dense_out = F.conv3d(volume, weight.permute(0, 4, 1, 2, 3), bias, padding=weight.shape[1] // 2)
    return dense_out[batch, :, x, y, z]


@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_torch_backend_equals_dense_conv3d(kernel_size, seed):
    torch.manual_seed(seed)
    grid_coord, batch = random_sparse_grid(seed)
    conv = SubMConv3d(4, 6, kernel_size, backend="torch").double()
    feat = torch.randn(len(batch), 4, dtype=torch.float64)
    out = conv(feat, grid_coord, batch)
    expected = dense_reference(feat, grid_coord, batch, conv.weight, conv.bias)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel_size, widths", [(3, (8, 16)), (5, (8, 16)), (5, (4, 12)), (3, (6, 5))])
def test_grouped_offset_products_equal_the_loop_and_dense_conv3d(kernel_size, widths):
    """CUDA's grouped-GEMM path (torch also runs it on a CPU, one GEMM per group): the loop's outputs
    and gradients, on a sparse grid where most of the kernel's offsets meet no neighbour; widths
    that are not multiples of 8 (the stem's input) are padded with zeros for it."""
    torch.manual_seed(2)
    grid_coord, batch = random_sparse_grid(2, extent=(9, 9, 9), points_per_cloud=(30, 12))
    conv = SubMConv3d(*widths, kernel_size, backend="torch")
    results = {}
    for products in ("loop", "grouped"):
        conv.offset_products = products
        feat = torch.randn(len(batch), widths[0], generator=torch.Generator().manual_seed(3)).requires_grad_(True)
        out = conv(feat, grid_coord, batch)
        results[products] = (out, *torch.autograd.grad(out.square().sum(), [feat, conv.weight, conv.bias]))
    for got, want in zip(results["grouped"], results["loop"]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    expected = dense_reference(feat.detach(), grid_coord, batch, conv.weight.detach(), conv.bias.detach())
    torch.testing.assert_close(results["grouped"][0], expected, rtol=1e-5, atol=1e-5)


def test_grouped_offset_products_run_in_the_autocast_dtype():
    grid_coord, batch = random_sparse_grid(4, extent=(9, 9, 9), points_per_cloud=(30, 12))
    conv = SubMConv3d(8, 16, 3, backend="torch")
    feat = torch.randn(len(batch), 8)  # float32, as the residual stream reaches the xCPE under autocast
    outputs = {}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for products in ("loop", "grouped"):
            conv.offset_products = products
            outputs[products] = conv(feat, grid_coord, batch)
    assert outputs["grouped"].dtype == outputs["loop"].dtype == torch.bfloat16
    torch.testing.assert_close(outputs["grouped"], outputs["loop"], rtol=0.02, atol=0.02)


def test_grouped_offset_products_are_chosen_only_where_a_fused_kernel_runs(monkeypatch):
    conv = SubMConv3d(16, 32, 3, backend="torch")
    fused = "grouped_mm" if hasattr(torch, "_grouped_mm") else "torch"
    monkeypatch.setattr(grouped_mm, "capability_major", lambda device: 10)  # a B200
    assert conv.kernel("cuda", torch.bfloat16) == "torch"  # training keeps the loop
    with torch.no_grad():
        assert conv.kernel("cuda", torch.bfloat16) == fused
        monkeypatch.setattr(grouped_mm, "capability_major", lambda device: 8)  # a Jetson Orin: torch loops itself
        assert conv.kernel("cuda", torch.bfloat16) == "torch"
        monkeypatch.setattr(grouped_mm, "capability_major", lambda device: 10)
        assert conv.kernel("cuda", torch.float32) == conv.kernel("cpu", torch.bfloat16) == "torch"
        assert SubMConv3d(6, 32, 3, backend="torch").kernel("cuda", torch.bfloat16) == fused  # padded to 8
    conv.offset_products = "grouped"
    assert conv.kernel("cpu", torch.float32) == "grouped_mm"
    conv.offset_products = "every"
    with pytest.raises(ValueError, match="offset_products"):
        conv.kernel("cpu", torch.float32)


def test_neighbours_stay_inside_their_batch_element():
    # Two clouds occupying the same voxels: each must see only itself.
    grid_coord = torch.tensor([[0, 0, 0], [0, 0, 1]] * 2)
    batch = torch.tensor([0, 0, 1, 1])
    nmap = build_neighbour_map(grid_coord, batch, 3)
    for rows, cols in nmap.pairs:
        assert torch.equal(batch[rows], batch[cols])
    assert sum(len(rows) for rows, _ in nmap.pairs) == 4 + 4  # 4 self pairs + 2 clouds x 2 directed edges


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_neighbour_map_lists_each_offsets_pairs_and_reads_back_only_their_number(kernel_size, host_reads):
    """The grouped layout (pairs offset after offset, ends on the device) is built reading back
    only the number of pairs (``nonzero``), besides the CPU's own NumPy search; ``pairs`` splits
    it per offset, each offset's pairs those of a brute-force search."""
    grid_coord, batch = random_sparse_grid(4)
    with host_reads() as reads:
        nmap = build_neighbour_map(grid_coord, batch, kernel_size)
    assert reads.found == ["lift_fresh", "nonzero"]  # torch.from_numpy of the CPU search; the pair count
    radius = kernel_size // 2
    span = range(-radius, radius + 1)
    offsets = [(dx, dy, dz) for dx in span for dy in span for dz in span]
    assert len(nmap.pairs) == len(offsets) and nmap.ends.dtype == torch.int32
    for (rows, cols), offset in zip(nmap.pairs, offsets):
        expected = {(p, q) for p in range(len(batch)) for q in range(len(batch))
                    if batch[p] == batch[q] and (grid_coord[q] - grid_coord[p]).tolist() == list(offset)}
        assert set(zip(rows.tolist(), cols.tolist())) == expected


def test_cache_is_reused_and_checked():
    grid_coord, batch = random_sparse_grid(3)
    conv = SubMConv3d(2, 2, 3, backend="torch")
    cache: dict = {}
    conv(torch.randn(len(batch), 2), grid_coord, batch, cache)
    nmap = cache[("subm", 3)]
    conv(torch.randn(len(batch), 2), grid_coord, batch, cache)
    assert cache[("subm", 3)] is nmap
    with pytest.raises(ValueError, match="one cache dict per point set"):
        conv(torch.randn(5, 2), grid_coord[:5], batch[:5], cache)


@pytest.mark.parametrize("backend", available_backends())
def test_gradients_match_dense_conv3d(backend):
    torch.manual_seed(0)
    grid_coord, batch = random_sparse_grid(5)
    conv = SubMConv3d(3, 5, 3, backend=backend).double()
    feat = torch.randn(len(batch), 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(len(batch), 5, dtype=torch.float64)
    grads = torch.autograd.grad((conv(feat, grid_coord, batch) * upstream).sum(), [feat, conv.weight, conv.bias])
    expected = torch.autograd.grad(
        (dense_reference(feat, grid_coord, batch, conv.weight, conv.bias) * upstream).sum(),
        [feat, conv.weight, conv.bias],
    )
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@needs_spconv
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_torch_backend_equals_spconv(kernel_size):
    torch.manual_seed(kernel_size)
    grid_coord, batch = random_sparse_grid(kernel_size, extent=(20, 20, 8), points_per_cloud=(900, 600))
    conv = SubMConv3d(8, 16, kernel_size, backend="torch")
    feat = torch.randn(len(batch), 8)
    reference = conv(feat, grid_coord, batch)
    conv.backend = "spconv"
    threads = torch.get_num_threads()
    try:
        # Unguarded, spconv CPU with 2 threads is off by ~0.3 here; the module must run it on one.
        for n in (1, 2):
            torch.set_num_threads(n)
            torch.testing.assert_close(conv(feat, grid_coord, batch), reference, rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(threads)


@needs_spconv
def test_spconv_backend_restores_thread_count():
    grid_coord, batch = random_sparse_grid(0)
    conv = SubMConv3d(2, 2, 3, backend="spconv")
    before = torch.get_num_threads()
    feat = torch.randn(len(batch), 2, requires_grad=True)
    conv(feat, grid_coord, batch).sum().backward()
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("backend", available_backends())
def test_state_dict_layout_is_spconv(backend):
    conv = SubMConv3d(6, 16, 5, bias=False, backend=backend)
    assert {k: tuple(v.shape) for k, v in conv.state_dict().items()} == {"weight": (16, 5, 5, 5, 6)}


@pytest.mark.parametrize("backend", available_backends())
def test_empty_input(backend):
    conv = SubMConv3d(4, 7, 3, backend=backend)
    out = conv(torch.zeros(0, 4), torch.zeros(0, 3, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 7)


@pytest.mark.parametrize("backend", available_backends())
def test_official_stem_reproduced(shared_data, backend):
    """The official embedding stem (SubMConv3d k=5 -> BatchNorm eps 1e-3 -> GELU) on a real scan."""
    parity = shared_data / "parity"
    state = torch.load(parity / "pointmoe_tiny_official.pth", weights_only=True)
    io = np.load(parity / "pointmoe_tiny_io.npz")
    conv = SubMConv3d(6, 16, 5, bias=False, backend=backend)
    conv.load_state_dict({"weight": state["embedding.stem.conv.weight"]})
    grid_coord = torch.from_numpy(io["grid_coord"]).long()
    feat = torch.from_numpy(io["feat"])
    with torch.no_grad():
        x = conv(feat, grid_coord, torch.zeros(len(feat), dtype=torch.long))
        x = F.batch_norm(
            x, state["embedding.stem.norm.running_mean"], state["embedding.stem.norm.running_var"],
            state["embedding.stem.norm.weight"], state["embedding.stem.norm.bias"], eps=1e-3,
        )
        x = F.gelu(x)
    torch.testing.assert_close(x, torch.from_numpy(io["embed_feat"]), rtol=0, atol=1e-5)
