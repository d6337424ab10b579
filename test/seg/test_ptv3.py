"""Point-MoE backbone (PTv3 + MoE at W_o): module names, windows, pooling, forward/backward."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from pointmoe_core.seg.moe import SparseMoE
from pointmoe_core.seg.ptv3 import (
    BackboneConfig,
    PointTransformerMoE,
    SerializedAttention,
    SerializedPooling,
    SerializedUnpooling,
    _batch_windows,
    attention_windows,
)
from pointmoe_core.seg.structure import Point


# ---- fixtures ------------------------------------------------------------------------------
def tiny_config(**overrides) -> BackboneConfig:
    cfg = dict(
        in_channels=6, stride=(2, 2), enc_depths=(1, 1, 2), enc_channels=(16, 16, 32),
        enc_num_head=(2, 2, 4), enc_patch_size=(32, 32, 32), dec_depths=(1, 1),
        dec_channels=(16, 16), dec_num_head=(2, 2), dec_patch_size=(32, 32), mlp_ratio=2,
        drop_path=0.1, num_experts=4, top_k=2, moe_hidden_ratio=2, aux_loss_alpha=0.01,
        conv_backend="torch",
    )
    cfg.update(overrides)
    return BackboneConfig(**cfg)


def voxelize(coord: np.ndarray, grid_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first point per voxel (in input order); grid = floor(coord / size) - min."""
    grid = np.floor(coord.astype(np.float64) / grid_size).astype(np.int64)
    _, keep = np.unique(grid, axis=0, return_index=True)
    keep = np.sort(keep)
    grid = grid[keep]
    return keep, grid - grid.min(0)


def synthetic_room(num_points: int, seed: int, grid_size: float = 0.05) -> dict:
    """A small indoor scene: floor, two walls and a box; feat = colour + normal (6 channels)."""
    rng = np.random.default_rng(seed)
    parts, normals, colours = [], [], []
    n = num_points // 4
    floor = np.c_[rng.uniform(0, 3, n), rng.uniform(0, 2.5, n), np.zeros(n)]
    wall_x = np.c_[np.zeros(n), rng.uniform(0, 2.5, n), rng.uniform(0, 2, n)]
    wall_y = np.c_[rng.uniform(0, 3, n), np.zeros(n), rng.uniform(0, 2, n)]
    box = rng.uniform([1.0, 1.0, 0.0], [1.6, 1.5, 0.7], (num_points - 3 * n, 3))
    for pts, nrm, col in ((floor, (0, 0, 1), (0.6, 0.5, 0.4)), (wall_x, (1, 0, 0), (0.9, 0.9, 0.9)),
                          (wall_y, (0, 1, 0), (0.8, 0.8, 0.7)), (box, (0, 0, 1), (0.2, 0.3, 0.8))):
        parts.append(pts)
        normals.append(np.tile(nrm, (len(pts), 1)))
        colours.append(np.clip(np.array(col) + rng.normal(0, 0.05, (len(pts), 3)), 0, 1))
    coord = np.concatenate(parts).astype(np.float32)
    feat = np.concatenate([np.concatenate(colours) * 2 - 1, np.concatenate(normals)], 1).astype(np.float32)
    keep, grid = voxelize(coord, grid_size)
    return dict(coord=coord[keep], grid_coord=grid, feat=feat[keep])


def batch_of(*clouds: dict, grid_size: float = 0.05) -> dict:
    return dict(
        coord=torch.from_numpy(np.concatenate([c["coord"] for c in clouds])),
        grid_coord=torch.from_numpy(np.concatenate([c["grid_coord"] for c in clouds])),
        feat=torch.from_numpy(np.concatenate([c["feat"] for c in clouds])),
        offset=torch.tensor(np.cumsum([len(c["coord"]) for c in clouds])),
        grid_size=grid_size,
    )


# ---- module names / official kwargs --------------------------------------------------------
def test_state_dict_matches_official_key_list(shared_data):
    meta = json.loads((shared_data / "parity" / "pointmoe_tiny_meta.json").read_text())
    model = PointTransformerMoE.from_official_kwargs(meta["kwargs"], conv_backend="torch")
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    official = {name: shape for name, shape, _dtype in meta["state_dict"]}
    assert ours == official


def test_default_config_is_point_moe_with_moe_at_w_o():
    model = PointTransformerMoE(BackboneConfig(conv_backend="torch"))
    keys = set(model.state_dict())
    assert "embedding.stem.conv.weight" in keys and "embedding.stem.conv.bias" not in keys
    assert "enc.enc3.block5.attn.proj.experts.7.down_proj.weight" in keys
    assert "enc.enc4.block1.attn.proj.gate.weight" in keys
    assert "dec.dec0.up.proj_skip.1.running_var" in keys
    assert "enc.enc1.down.norm.0.weight" in keys
    assert not any(".mlp.0.experts" in k for k in keys)
    assert len(model.moe_layers()) == 14 + 8  # every block's W_o: 14 encoder + 8 decoder blocks
    assert model.out_channels == 64


def test_from_official_kwargs_maps_and_rejects():
    cfg = BackboneConfig.from_official_kwargs(dict(use_moe=True, use_moe_proj=True, use_moe_mlp=False,
                                                   topk=2, num_experts=8, n_intermediate_size=2))
    assert (cfg.moe_placement, cfg.top_k, cfg.num_experts, cfg.moe_hidden_ratio) == ("proj", 2, 8, 2)
    assert cfg.order == ("z", "z-trans") and cfg.enc_patch_size == (48,) * 5  # official defaults
    assert BackboneConfig.from_official_kwargs({}).moe_placement == "none"  # use_moe=False default
    assert BackboneConfig.from_official_kwargs(dict(use_moe=True)).moe_placement == "mlp"
    both = dict(use_moe=True, use_moe_proj=True, use_moe_mlp=True)
    assert BackboneConfig.from_official_kwargs(both).moe_placement == "both"
    for bad in (dict(enable_rpe=True), dict(use_RMS=True), dict(use_moe_attn=True),
                dict(moe_use_residual=True), dict(no_such_option=1), dict(proj_ratio=2.0)):
        with pytest.raises(ValueError):
            BackboneConfig.from_official_kwargs(bad)
    with pytest.raises(ValueError):
        BackboneConfig(moe_placement="ffn")


@pytest.mark.parametrize("placement,proj_moe,mlp_moe", [
    ("proj", True, False), ("mlp", False, True), ("both", True, True), ("none", False, False)])
def test_moe_placements(placement, proj_moe, mlp_moe):
    model = PointTransformerMoE(tiny_config(moe_placement=placement, enc_depths=(1, 1, 1)))
    block = model.enc["enc0"].block0
    assert isinstance(block.attn.proj, SparseMoE) == proj_moe
    assert isinstance(block.mlp[0], SparseMoE) == mlp_moe
    model.eval()
    with torch.no_grad():
        out = model(batch_of(synthetic_room(600, 0)))
    assert out.feat.shape[1] == 16 and torch.isfinite(out.feat).all()
    assert len(model.routing()) == (3 + 2) * (proj_moe + mlp_moe)


def test_moe_layers_selects_blocks_by_index():
    model = PointTransformerMoE(tiny_config(moe_layers=(0, 3)))
    names = sorted(model.moe_layers())
    # encoder blocks are numbered 0..3 in order, decoder blocks 0..1 from the coarsest stage
    assert names == ["dec.dec1.block0.attn.proj", "enc.enc0.block0.attn.proj", "enc.enc2.block1.attn.proj"]


# ---- attention windows ---------------------------------------------------------------------
def test_attention_windows_layout():
    p = Point(feat=torch.zeros(20, 1), grid_coord=torch.zeros(20, 3, dtype=torch.long),
              offset=torch.tensor([10, 17, 20]))
    win = attention_windows(p, 4)
    # cloud sizes 10, 7, 3 -> padded 12, 8, 3 (a cloud smaller than the window stays as is)
    assert win["cu_seqlens"].tolist() == [0, 4, 8, 12, 16, 20, 23]
    assert not win["full"]
    pad, unpad = win["pad"], win["unpad"]
    assert torch.equal(pad[unpad], torch.arange(20))
    # last window of cloud 0 = its 2 new points 8, 9 then the 2 points just before them
    assert pad[8:12].tolist() == [8, 9, 6, 7]
    assert pad[16:20].tolist() == [14, 15, 16, 13]
    assert attention_windows(p, 4) is win  # cached per patch size


@pytest.mark.parametrize("num_points", [1, 3, 4, 8, 10, 23])
def test_one_cloud_windows_are_the_batch_layout_without_identities(num_points):
    """One cloud's windows come from its size alone; where pad / unpad are the identity they are
    None, else what the layout of a batch gives; a cloud of one window needs no mask (its window
    is as long as it is)."""
    one = Point(feat=torch.zeros(num_points, 1), grid_coord=torch.zeros(num_points, 3, dtype=torch.long))
    win = attention_windows(one, 4)
    batch = _batch_windows(torch.tensor([num_points]), 4)
    assert win["cu_seqlens"].dtype == torch.int32 and torch.equal(win["cu_seqlens"], batch["cu_seqlens"])
    assert win["full"] and win["window"] == min(num_points, 4) and win["unpad"] is None
    assert torch.equal(batch["unpad"], torch.arange(num_points))
    pad = torch.arange(num_points) if win["pad"] is None else win["pad"]
    assert torch.equal(pad, batch["pad"]) and (win["pad"] is None) == (num_points <= 4 or num_points % 4 == 0)


def naive_window_attention(qkv, point, order_index, K, heads, scale, flash):
    """Per point: softmax attention over its window of the serialized sequence."""
    C = qkv.shape[1] // 3
    D = C // heads
    q, k, v = qkv.split(C, dim=1)
    out = torch.zeros(qkv.shape[0], C, dtype=qkv.dtype)
    order = point.serialized_order[order_index]
    for b, (start, n) in enumerate(zip((point.offset - point.bincount).tolist(), point.bincount.tolist())):
        seq = order[start:start + n]
        for j in range(n):
            if flash and n <= K:
                keys = seq
            else:
                w0 = (j // K) * K
                keys = seq[w0:w0 + K] if w0 + K <= n else seq[n - K:]
            i = seq[j]
            for h in range(heads):
                sl = slice(h * D, (h + 1) * D)
                att = torch.softmax((q[i, sl] @ k[keys, sl].T) * scale, dim=0)
                out[i, sl] = att @ v[keys, sl]
    return out


@pytest.mark.parametrize("counts", [[45, 70, 20], [20], [70]], ids=["batch", "one-window", "one-cloud"])
@pytest.mark.parametrize("flash", [False, True])
def test_serialized_attention_matches_naive_windows(flash, counts):
    torch.manual_seed(0)
    grid = torch.cat([torch.randperm(512)[:n] for n in counts])
    grid = torch.stack([grid // 64, (grid // 8) % 8, grid % 8], 1)
    p = Point(feat=torch.randn(sum(counts), 8, dtype=torch.float64), grid_coord=grid,
              offset=torch.tensor(counts).cumsum(0))
    p.serialization()
    attn = SerializedAttention(8, 2, 32, nn.Identity(), order_index=2, enable_flash=flash).double()
    out = attn(p.feat, p)
    K = 32 if flash else min(32, *counts)
    ref = naive_window_attention(attn.qkv(p.feat), p, 2, K, 2, attn.scale, flash)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)


# ---- pooling / unpooling -------------------------------------------------------------------
def test_pooling_then_unpooling_restores_point_order():
    torch.manual_seed(0)
    room = synthetic_room(800, 1)
    data = batch_of(room, synthetic_room(500, 2))
    p = Point.from_dict(data)
    p.feat = torch.randn(p.num_points, 8)
    p.serialization()
    pool = SerializedPooling(8, 12, stride=2).eval()
    perm = torch.tensor([2, 0, 3, 1])
    pooled = pool(p, perm=perm)

    inv = pooled.pooling_inverse
    assert pooled.pooling_parent is p and inv.shape == (p.num_points,)
    # every point falls in the coarse voxel of its 2x2x2 cell, within its own cloud
    assert torch.equal(pooled.grid_coord[inv], p.grid_coord >> 1)
    assert torch.equal(pooled.batch[inv], p.batch)
    cells = torch.cat([pooled.batch[:, None], pooled.grid_coord], 1)
    assert len(torch.unique(cells, dim=0)) == pooled.num_points
    # codes are inherited (shifted), the curve list permuted by `perm`
    assert torch.equal(pooled.serialized_code[:, inv], (p.serialized_code >> 3)[perm])
    assert pooled.serialized_depth == p.serialized_depth - 1
    # features: Linear, segment max, BN, GELU
    with torch.no_grad():
        proj = pool.proj(p.feat)
        cell_max = torch.full((pooled.num_points, 12), -math.inf).scatter_reduce(
            0, inv[:, None].expand(-1, 12), proj, "amax")
        torch.testing.assert_close(pooled.feat, pool.act(pool.norm(cell_max)))
        torch.testing.assert_close(pooled.coord[inv[0]], p.coord[inv == inv[0]].mean(0))

    unpool = SerializedUnpooling(12, 8, 6).eval()
    with torch.no_grad():
        expected = unpool.proj_skip(p.feat) + unpool.proj(pooled.feat)[inv]
        back = unpool(pooled)
    assert back is p and back.num_points == len(data["coord"])
    torch.testing.assert_close(back.feat, expected)  # rows in the original point order
    assert back.conv_feat is not None  # official quirk: next xCPE sees only the skip branch


# ---- whole backbone ------------------------------------------------------------------------
def test_forward_backward_on_synthetic_indoor_batch():
    torch.manual_seed(0)
    data = batch_of(synthetic_room(2500, 0), synthetic_room(1500, 1))
    n = len(data["coord"])
    model = PointTransformerMoE(tiny_config()).train()
    out = model(data)
    assert out.feat.shape == (n, 16) and torch.isfinite(out.feat).all()
    routing = model.routing()
    assert len(routing) == 4 + 2
    assert routing["enc.enc0.block0.attn.proj"].shape == (n, 2)
    aux = model.aux_loss()
    assert aux is not None and aux.item() > 0
    (out.feat.square().mean() + aux).backward()
    for name in ("embedding.stem.conv.weight", "enc.enc0.block0.cpe.0.weight",
                 "enc.enc2.block1.attn.qkv.weight", "enc.enc1.down.proj.weight",
                 "dec.dec0.up.proj_skip.0.weight", "enc.enc0.block0.attn.proj.gate.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_batched_clouds_are_independent_in_eval():
    """With fixed orders and flash-style windows, a cloud's output ignores its batch mates."""
    torch.manual_seed(0)
    a, b = synthetic_room(1200, 3), synthetic_room(700, 4)
    model = PointTransformerMoE(tiny_config(shuffle_orders=False, pool_shuffle_orders=False,
                                            enable_flash=True)).eval()
    with torch.no_grad():
        both = model(batch_of(a, b)).feat
        only_a = model(batch_of(a)).feat
        only_b = model(batch_of(b)).feat
    torch.testing.assert_close(both, torch.cat([only_a, only_b]), atol=1e-5, rtol=1e-5)


def test_pool_order_shuffle_follows_global_seed_or_injected_perms():
    data = batch_of(synthetic_room(1500, 5))
    model = PointTransformerMoE(tiny_config(shuffle_orders=False)).eval()
    with torch.no_grad():
        torch.manual_seed(0)
        first = model(data).feat
        torch.manual_seed(0)
        again = model(data).feat
        perms = [torch.tensor([3, 2, 1, 0]), torch.tensor([1, 0, 3, 2])]
        injected = model(data, pool_order_perms=perms).feat
        torch.manual_seed(123)
        injected_again = model(data, pool_order_perms=perms).feat
    assert torch.equal(first, again)
    assert torch.equal(injected, injected_again)
    assert not torch.allclose(first, injected)


def test_fix_unpool_cpe_changes_the_decoder():
    torch.manual_seed(0)
    data = batch_of(synthetic_room(1000, 6))
    official = PointTransformerMoE(tiny_config(shuffle_orders=False, pool_shuffle_orders=False)).eval()
    fixed = PointTransformerMoE(tiny_config(shuffle_orders=False, pool_shuffle_orders=False,
                                            fix_unpool_cpe=True)).eval()
    fixed.load_state_dict(official.state_dict())
    with torch.no_grad():
        assert not torch.allclose(official(data).feat, fixed(data).feat)


def test_cls_mode_has_no_decoder():
    model = PointTransformerMoE(tiny_config(cls_mode=True)).eval()
    assert not hasattr(model, "dec") and model.out_channels == 32
    with torch.no_grad():
        out = model(batch_of(synthetic_room(800, 7)))
    assert out.feat.shape[1] == 32 and out.num_points < 800


def test_forward_backward_on_real_semantickitti_scan(shared_data):
    path = shared_data / "semantickitti/sequences/00/velodyne/000000.bin"
    scan = np.fromfile(path, np.float32).reshape(-1, 4)
    scan = scan[(np.abs(scan[:, 0]) < 20) & (np.abs(scan[:, 1]) < 20)]
    keep, grid = voxelize(scan[:, :3], 0.1)
    pick = np.linspace(0, len(keep) - 1, 20000).astype(np.int64)  # ~1 in 2 voxels
    pts, grid = scan[keep][pick], grid[pick]
    grid = grid - grid.min(0)
    r = pts[:, 3:4]
    data = dict(coord=torch.from_numpy(pts[:, :3].copy()), grid_coord=torch.from_numpy(grid),
                feat=torch.from_numpy(np.concatenate([pts[:, :3], r, r, r], 1)),
                offset=torch.tensor([len(pts)]), grid_size=0.1)
    cfg = tiny_config(stride=(2, 2, 2, 2), enc_depths=(1, 1, 1, 1, 1), enc_channels=(16, 16, 32, 32, 64),
                      enc_num_head=(1, 1, 2, 2, 4), enc_patch_size=(64,) * 5, dec_depths=(1, 1, 1, 1),
                      dec_channels=(16, 16, 32, 32), dec_num_head=(1, 1, 2, 2), dec_patch_size=(64,) * 4,
                      num_experts=8, conv_backend="auto")
    model = PointTransformerMoE(cfg).train()
    torch.manual_seed(0)
    out = model(data)
    (out.feat.square().mean() + model.aux_loss()).backward()
    assert out.feat.shape == (20000, 16) and torch.isfinite(out.feat).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    experts_used = torch.unique(model.routing()["enc.enc0.block0.attn.proj"])
    assert len(experts_used) > 1
