"""Checkpoint compatibility: the Pointcept / point_moe key map and `pointmoe convert` both ways."""
import argparse
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from pointmoe_core.seg import convert_cli as convert_command
from pointmoe_core.seg.convert import (
    CheckpointKeyError,
    check_state_dict,
    load_segmentor,
    read_checkpoint,
    to_our_keys,
    to_pointcept_keys,
)
from pointmoe_core.seg.model import HeadConfig, PointMoESegmentor, load_config
from pointmoe_core.seg.ptv3 import PointTransformerMoE


def tiny_model() -> PointMoESegmentor:
    torch.manual_seed(0)
    model = PointMoESegmentor(load_config("tiny"))
    model.head.set_class_embedding(torch.randn(8, 384))
    return model


def convert_cli(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    convert_command.add_arguments(parser)
    return convert_command.run(parser.parse_args(list(argv)))


def test_key_map_names_the_official_head():
    state = tiny_model().state_dict()
    official = to_pointcept_keys(state)
    head_keys = sorted(k for k in official if not k.startswith("backbone."))
    assert head_keys == ["class_embedding", "logit_scale", "proj_head.bias", "proj_head.weight"]  # PPTMoE-v0m0
    assert {k for k in official if k.startswith("backbone.")} == {k for k in state if k.startswith("backbone.")}
    back = to_our_keys({f"module.{k}": v for k, v in official.items()})  # DDP prefix dropped
    assert list(back) == list(state) and all(back[k] is state[k] for k in state)
    linear = PointMoESegmentor(replace(load_config("tiny"), head=HeadConfig(type="linear"))).state_dict()
    assert {"seg_head.weight", "seg_head.bias"} <= set(to_pointcept_keys(linear))  # DefaultSegmentorV2


def test_pointcept_checkpoint_round_trips_through_convert(tmp_path):
    model = tiny_model()
    ours = model.state_dict()
    official = {f"module.{k}": v.clone() for k, v in to_pointcept_keys(ours).items()}
    # as Pointcept's CheckpointSaver writes it, numpy scalar included
    torch.save({"epoch": 7, "state_dict": official, "best_metric_value": np.float64(0.61)}, tmp_path / "official.pth")
    load_config("tiny").to_yaml(tmp_path / "tiny.yaml")

    summary = convert_cli("--to", "ours", str(tmp_path / "official.pth"), str(tmp_path / "ours.pth"),
                          "--config", str(tmp_path / "tiny.yaml"))
    assert summary["ok"] and summary["checked"] and summary["source"] == "official"
    assert summary["tensors"] == len(ours)
    converted = read_checkpoint(tmp_path / "ours.pth")
    assert converted.config == load_config("tiny") and converted.epoch == 7 and converted.source == "pointmoe"
    assert converted.state_dict.keys() == ours.keys()
    assert all(torch.equal(converted.state_dict[k], ours[k]) for k in ours)

    convert_cli("--to", "pointcept", str(tmp_path / "ours.pth"), str(tmp_path / "back.pth"))
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    expected = {k.removeprefix("module."): v for k, v in official.items()}
    assert back["epoch"] == 7 and back["state_dict"].keys() == expected.keys()
    assert all(torch.equal(back["state_dict"][k], expected[k]) for k in expected)

    summary = convert_cli("--to", "ours", str(tmp_path / "back.pth"), str(tmp_path / "ours.safetensors"))
    assert not summary["checked"]  # no config given or stored: converted, not checked
    reloaded = load_segmentor(tmp_path / "ours.safetensors", config="tiny")
    assert all(torch.equal(reloaded.state_dict()[k], ours[k]) for k in ours)


def test_official_checkpoint_needs_a_config(tmp_path):
    model = tiny_model()
    torch.save({"state_dict": to_pointcept_keys(model.state_dict()), "epoch": 1}, tmp_path / "official.pth")
    with pytest.raises(ValueError, match="config="):
        load_segmentor(tmp_path / "official.pth")
    loaded = load_segmentor(tmp_path / "official.pth", config="tiny")
    torch.testing.assert_close(loaded.head.class_embedding, model.head.class_embedding)
    with pytest.raises(CheckpointKeyError, match="class_names"):  # an 8-class table into a 3-class config
        load_segmentor(tmp_path / "official.pth", config=replace(load_config("tiny"), class_names=tuple("abc")))


def test_unknown_and_missing_keys_are_listed():
    state = to_pointcept_keys(tiny_model().state_dict())
    with pytest.raises(CheckpointKeyError, match="embedding_table.weight") as info:  # PPT-v1m1's PDNorm context
        to_our_keys({**state, "embedding_table.weight": torch.zeros(3, 256)})
    assert info.value.unexpected == ["embedding_table.weight"]

    ours = to_our_keys(state)
    del ours["backbone.enc.enc2.block0.attn.qkv.weight"]
    ours["backbone.enc.enc9.block0.attn.qkv.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointKeyError) as info:
        check_state_dict(tiny_model(), ours)
    assert info.value.missing == ["backbone.enc.enc2.block0.attn.qkv.weight"]
    assert info.value.unexpected == ["backbone.enc.enc9.block0.attn.qkv.weight"]
    assert "1 missing: backbone.enc.enc2.block0.attn.qkv.weight" in str(info.value)


def test_bare_official_backbone_nests_under_backbone(shared_data):
    path = shared_data / "parity" / "pointmoe_tiny_official.pth"
    if not path.is_file():
        pytest.skip(f"parity fixture not found at {path}")
    checkpoint = read_checkpoint(path)
    assert len(checkpoint.state_dict) == 477 and all(k.startswith("backbone.") for k in checkpoint.state_dict)
    kwargs = json.loads((shared_data / "parity" / "pointmoe_tiny_meta.json").read_text())["kwargs"]
    backbone = PointTransformerMoE.from_official_kwargs(kwargs, conv_backend="torch")
    backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in checkpoint.state_dict.items()})
    config = replace(load_config("tiny"), backbone=backbone.config)
    with pytest.raises(CheckpointKeyError) as info:  # weights without a head cannot segment
        check_state_dict(PointMoESegmentor(config), checkpoint.state_dict)
    assert info.value.missing == ["head.class_embedding", "head.logit_scale", "head.proj.bias", "head.proj.weight"]
    assert not info.value.unexpected and not info.value.mismatched


def test_arbitrary_pickles_need_allow_pickle(tmp_path):
    state = to_pointcept_keys(tiny_model().state_dict())
    torch.save({"state_dict": state, "scheduler": {"anneal_func": np.linspace}}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="allow_pickle"):
        read_checkpoint(tmp_path / "pickled.pth")
    assert len(read_checkpoint(tmp_path / "pickled.pth", allow_pickle=True).state_dict) == len(state)
