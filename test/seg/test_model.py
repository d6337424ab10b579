"""Segmentation model: YAML configs and presets, parameter counts, forward + backward on CPU."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from pointmoe_core.data.preprocess import grid_sample, normalize_color
from pointmoe_core.seg.model import (
    OUTDOOR_INPUT,
    PRESETS,
    InputConfig,
    PointMoESegmentor,
    SegmentorConfig,
    count_parameters,
    load_config,
)
from pointmoe_core.seg.moe import SparseMoE

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "seg"


def batch_from(clouds: list[dict], feat_keys: tuple[str, ...], grid_size: float) -> tuple[dict, torch.Tensor]:
    """One point per voxel of each cloud, concatenated into the backbone's data dict; and the labels."""
    parts = {key: [] for key in ("coord", "grid_coord", "feat", "label")}
    for cloud in clouds:
        voxels = grid_sample(cloud["coord"], grid_size)
        rows = voxels.fragment(0)
        grid = voxels.grid_coord[rows]
        features = {"coord": cloud["coord"], "normal": cloud.get("normal"), "strength": cloud.get("strength"),
                    "color": None if "color" not in cloud else normalize_color(cloud["color"])}
        parts["coord"].append(cloud["coord"][rows])
        parts["grid_coord"].append(grid)
        parts["feat"].append(np.concatenate([features[k][rows].reshape(len(rows), -1) for k in feat_keys], 1))
        parts["label"].append(cloud["label"][rows])
    data = dict(coord=torch.from_numpy(np.concatenate(parts["coord"])),
                grid_coord=torch.from_numpy(np.concatenate(parts["grid_coord"])),
                feat=torch.from_numpy(np.concatenate(parts["feat"]).astype(np.float32)),
                offset=torch.tensor(np.cumsum([len(g) for g in parts["grid_coord"]])),
                grid_size=grid_size)
    return data, torch.from_numpy(np.concatenate(parts["label"]))


# ---- configs -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_yaml_and_match_repo_files(name, tmp_path):
    config = load_config(name)
    path = tmp_path / f"{name}.yaml"
    config.to_yaml(path)
    assert SegmentorConfig.from_yaml(path) == config
    assert load_config(CONFIG_DIR / f"{name}.yaml") == config  # config/seg/*.yaml never drift from the presets
    assert config.input.in_channels == config.backbone.in_channels == 6


def test_config_validation_names_the_problem(tmp_path):
    data = load_config("tiny").to_dict()
    with pytest.raises(ValueError, match="unknown keys in backbone: \\['num_expert'\\]"):
        SegmentorConfig.from_dict({**data, "backbone": {**data["backbone"], "num_expert": 8}})
    with pytest.raises(ValueError, match="2 channels"):
        replace(load_config("tiny"), input=InputConfig(feat_keys=("strength", "strength")))
    with pytest.raises(ValueError, match="valid_classes\\['ScanNet'\\]"):
        replace(load_config("tiny"), valid_classes={"ScanNet": [0, 99]})
    with pytest.raises(FileNotFoundError, match="preset"):
        load_config("huge")
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({**data, "name": "mine", "class_names": ["a", "b"]}))
    assert load_config(tmp_path / "mine.yaml").class_names == ("a", "b")


def test_parameter_counts_of_the_presets():
    large = PointMoESegmentor(load_config("L"))
    counts = count_parameters(large)
    moe = [m for m in large.modules() if isinstance(m, SparseMoE)]
    assert len(moe) == 14 + 8 and all((m.num_experts, m.top_k) == (8, 2) for m in moe)
    # Point-MoE-L: ~100M total, ~59M active (paper / model card); measured 99,842,369 / 58,775,873
    assert 98e6 < counts["total"] < 102e6 and 57e6 < counts["active"] < 61e6
    # active = total minus the 6 idle experts of every MoE layer
    per_expert = sum(p.numel() for p in moe[0].experts[0].parameters())
    assert per_expert == 3 * 32 * 64  # gate, up (32 -> 64) and down (64 -> 32) of stage 0
    base = count_parameters(PointMoESegmentor(load_config("base")))
    assert base["total"] == base["active"] and 45e6 < base["total"] < 47e6  # PTv3-base: 46.2M
    tiny = count_parameters(PointMoESegmentor(load_config("tiny")))
    assert tiny["active"] < tiny["total"] < 5e6
    edge = count_parameters(PointMoESegmentor(load_config("edge")))
    assert edge["active"] < edge["total"] < 0.6e6  # top-1 of 4 experts: 3 idle per layer


# ---- forward / backward --------------------------------------------------------------------
def test_tiny_trains_on_a_synthetic_indoor_batch(make_room):
    config = replace(load_config("tiny"), backbone=replace(load_config("tiny").backbone, drop_path=0.0),
                     valid_classes={"rooms": (0, 1, 3), "all": tuple(range(8))})
    torch.manual_seed(0)
    model = PointMoESegmentor(config).train()
    model.head.set_class_embedding(torch.randn(8, 384))
    data, label = batch_from([make_room(3000, 0), make_room(2000, 1)], config.input.feat_keys, 0.02)
    mask = model.class_mask_for(["rooms", "all"])
    assert mask.sum(1).tolist() == [3, 8]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def loss_now() -> torch.Tensor:
        logits = model(data, class_mask=mask, generator=torch.Generator().manual_seed(0))
        return F.cross_entropy(logits, label) + model.backbone.aux_loss(), logits

    loss, logits = loss_now()
    assert logits.shape == (len(label), 8) and torch.isfinite(loss)
    first_cloud = data["offset"][0]
    assert (logits[:first_cloud][:, [2, 4, 5, 6, 7]] == -1e4).all()  # masked to the "rooms" classes
    loss.backward()
    for name in ("head.proj.weight", "backbone.embedding.stem.conv.weight",
                 "backbone.enc.enc0.block0.attn.proj.gate.weight", "backbone.dec.dec0.block0.attn.qkv.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    optimizer.step()
    optimizer.zero_grad()
    assert loss_now()[0] < loss  # one AdamW step on the same batch lowers the loss


def test_edge_runs_no_block_at_full_resolution_and_trains(make_room):
    config = load_config("edge")
    torch.manual_seed(0)
    model = PointMoESegmentor(config).train()
    model.head.set_class_embedding(torch.randn(8, 384))
    assert model.backbone.enc["enc0"].num_blocks == 0 and model.backbone.dec["dec0"].num_blocks == 0
    data, label = batch_from([make_room(3000, 0), make_room(2000, 1)], config.input.feat_keys, 0.02)
    logits = model(data)
    assert logits.shape == (len(label), 8)  # labels for every voxel, though the blocks see 4^3 cells
    (F.cross_entropy(logits, label) + model.backbone.aux_loss()).backward()
    for name in ("backbone.embedding.stem.conv.weight", "backbone.enc.enc1.down.proj.weight",
                 "backbone.enc.enc1.block0.attn.proj.gate.weight", "backbone.dec.dec0.up.proj_skip.0.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.get_parameter("backbone.embedding.stem.conv.weight").shape[1:4] == (3, 3, 3)  # (out, k, k, k, in)


def test_tiny_forward_backward_on_a_real_semantickitti_scan(shared_data):
    scan_path = shared_data / "semantickitti/sequences/00/velodyne/000000.bin"
    label_path = shared_data / "semantickitti/sequences/00/labels/000000.label"
    learning_map = yaml.safe_load((shared_data / "semantickitti/semantic-kitti.yaml").read_text())["learning_map"]
    scan = np.fromfile(scan_path, np.float32).reshape(-1, 4)
    raw = np.fromfile(label_path, np.uint32) & 0xFFFF
    label = np.vectorize(learning_map.get)(raw).astype(np.int64) - 1  # 0 "unlabeled" -> -1 (ignored)
    pick = np.random.default_rng(0).choice(len(scan), 15000, replace=False)
    cloud = dict(coord=np.clip(scan[pick, :3], OUTDOOR_INPUT.point_clip[:3], OUTDOOR_INPUT.point_clip[3:]),
                 strength=scan[pick, 3:], label=label[pick])
    names = tuple(f"kitti class {i}" for i in range(19))
    config = replace(load_config("tiny"), class_names=names, input=OUTDOOR_INPUT)
    torch.manual_seed(0)
    model = PointMoESegmentor(config).train()
    model.head.set_class_embedding(torch.randn(19, 384))
    data, target = batch_from([cloud], OUTDOOR_INPUT.feat_keys, OUTDOOR_INPUT.grid_size)
    assert 10000 < len(target) <= 15000 and (target >= 0).sum() > 0.8 * len(target)

    logits = model(data)
    loss = F.cross_entropy(logits, target, ignore_index=-1) + model.backbone.aux_loss()
    loss.backward()
    assert logits.shape == (len(target), 19) and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.head.proj.weight.grad.abs().sum() > 0
    assert len(torch.unique(model.backbone.routing()["enc.enc0.block0.attn.proj"])) > 1
