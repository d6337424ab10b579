"""Small training runs for the tests: a step takes about a second on 2 CPU cores."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from pointmoe_core.data.taxonomy import INDOOR_ROOM_CLASSES, OUTDOOR_LIDAR_CLASSES, TABLETOP_CLASSES
from pointmoe_core.seg.model import load_config
from pointmoe_core.seg.text import TextConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """YAML of the tiny preset reading fixed random class-name embeddings from a file, so that no
    run (subprocesses included) loads a text model."""
    folder = tmp_path_factory.mktemp("tiny_model")
    names = sorted(set(INDOOR_ROOM_CLASSES + OUTDOOR_LIDAR_CLASSES + TABLETOP_CLASSES))
    table = torch.randn(len(names), load_config("tiny").head.text_dim, generator=torch.Generator().manual_seed(0))
    torch.save(table, folder / "text.pth")
    (folder / "names.json").write_text(json.dumps(names))
    text = TextConfig(source="precomputed", embeddings=str(folder / "text.pth"), names=str(folder / "names.json"))
    dataclasses.replace(load_config("tiny"), text=text).to_yaml(folder / "tiny.yaml")
    return str(folder / "tiny.yaml")


def tiny_run_config(output_dir: Path, model: str, **overrides) -> dict:
    config = {
        "model": model,
        "train_datasets": [
            {"kind": "synthetic", "domain": "indoor", "num_scenes": 2, "split": "train"},
            {"kind": "synthetic", "domain": "outdoor", "num_scenes": 2, "split": "train"},
        ],
        "grid_size": 0.1,
        "point_max": 600,
        "batch_size": 2,
        "max_steps": 2,
        "eval_every": 0,
        "log_every": 1,
        "output_dir": str(output_dir),
    }
    config.update(overrides)
    return config


@pytest.fixture
def write_config(tmp_path, tiny_model):
    """Write a tiny run config (with overrides) to a YAML file; returns its path."""

    def write(name: str = "run", **overrides) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(tiny_run_config(tmp_path / name, **{"model": tiny_model, **overrides})))
        return path

    return write


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_model) -> Path:
    """Output folder of a 2-step run that validates on indoor/outdoor and zero-shots tabletop."""
    from pointmoe_core.train.seg_trainer import SegTrainConfig, train

    output_dir = tmp_path_factory.mktemp("trained") / "run"
    val = [{"kind": "synthetic", "domain": domain, "num_scenes": 1, "split": "val"} for domain in ("indoor", "outdoor")]
    zero_shot = [{"kind": "synthetic", "domain": "tabletop", "num_scenes": 1, "split": "val"}]
    train(SegTrainConfig.from_dict(tiny_run_config(output_dir, tiny_model, val_datasets=val,
                                                   zero_shot_datasets=zero_shot)))
    return output_dir
