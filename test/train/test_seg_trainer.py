import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pointmoe_core import cli
from pointmoe_core.common.checkpoint import latest_checkpoint, load_checkpoint
from pointmoe_core.seg.segmenter import Segmenter
from pointmoe_core.train import seg_trainer
from pointmoe_core.train.losses import segmentation_loss
from pointmoe_core.train.seg_trainer import SegTrainConfig, global_target, model_config_for, param_groups, train

from .conftest import REPO


def step_losses(output_dir: Path) -> dict[int, float]:
    """The loss of every step in log.jsonl; a step logged twice (killed, then resumed) keeps the last."""
    losses = {}
    for line in (output_dir / "log.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "loss" in entry:
            losses[entry["step"]] = entry["loss"]
    return losses


def test_config_loads_yaml_with_overrides(write_config):
    path = write_config(max_steps=5)
    config = SegTrainConfig.load(path, ["lr=0.01", "backbone.moe_placement=none", "point_max=null",
                                        "train_datasets=['synthetic:domain=tabletop,num_scenes=3']"])
    assert config.max_steps == 5 and config.lr == 0.01 and config.point_max is None
    assert config.backbone == {"moe_placement": "none"}
    [entry] = config.train_datasets
    assert (entry.kind, entry.options, entry.loop) == ("synthetic", {"domain": "tabletop", "num_scenes": 3}, 1.0)
    with pytest.raises(ValueError, match="unknown training config keys"):
        SegTrainConfig.load(path, ["learning_rate=1"])


def test_class_table_targets_and_block_learning_rate(write_config):
    config = SegTrainConfig.load(write_config())
    datasets = [entry.build(train=True) for entry in config.train_datasets]
    model_config = model_config_for(config, datasets)
    indoor, outdoor = (d.class_names for d in datasets)
    assert model_config.class_names == indoor + outdoor  # each dataset indexes its own rows
    assert model_config.valid_classes["synthetic_outdoor"] == tuple(range(len(indoor), len(indoor) + len(outdoor)))
    batch = {"offset": torch.tensor([3, 5]), "segment": torch.tensor([0, -1, 2, 1, 0]),
             "dataset": ["synthetic_indoor", "synthetic_outdoor"]}
    assert global_target(batch, model_config.valid_classes).tolist() == [0, -1, 2, len(indoor) + 1, len(indoor)]

    model = torch.nn.ModuleDict({"stem": torch.nn.Linear(2, 2), "block0": torch.nn.Linear(2, 2)})
    base, block = param_groups(model, lr=0.1, block_lr=0.01)
    assert (base["lr"], block["lr"]) == (0.1, 0.01)
    assert [p.shape for p in block["params"]] == [p.shape for p in model["block0"].parameters()]


def test_two_steps_write_a_checkpoint_the_segmenter_loads(write_config, capsys):
    path = write_config(max_steps=2, model="tiny")  # the preset as shipped: MiniLM class embeddings
    assert cli.main(["train", "seg", "--config", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["final_loss"] > 0
    output_dir = Path(summary["output_dir"])
    checkpoint = latest_checkpoint(output_dir / "checkpoints")
    assert checkpoint.name == "step_00000002.pt" and Path(summary["checkpoint"]) == checkpoint
    payload = load_checkpoint(checkpoint)
    assert payload["step"] == 2 and {"optimizer", "scheduler", "scaler", "rng", "train_config"} <= set(payload)
    segmenter = Segmenter.from_checkpoint(checkpoint)
    assert torch.equal(segmenter.model.state_dict()["head.proj.weight"], payload["state_dict"]["head.proj.weight"])
    rng = np.random.default_rng(0)
    result = segmenter.predict(rng.uniform(0, 2, (500, 3)), color=rng.uniform(0, 255, (500, 3)),
                               class_names=("floor", "wall"))
    assert len(result.labels) == 500 and set(result.labels.tolist()) <= {0, 1}
    assert sorted(step_losses(output_dir)) == [1, 2]
    assert list((output_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_killed_run_resumes_with_the_same_loss_trajectory(write_config, tmp_path):
    steps = 4
    straight = SegTrainConfig.load(write_config("straight", max_steps=steps))
    train(straight)
    expected = step_losses(Path(straight.output_dir))

    killed = write_config("killed", max_steps=steps, checkpoint_every=2)
    output_dir = tmp_path / "killed"
    # the same intra-op thread count as this process: float sums depend on it
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen([sys.executable, "-m", "pointmoe_core.cli", "train", "seg", "--config", str(killed)],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while latest_checkpoint(output_dir / "checkpoints") is None and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed_from = load_checkpoint(output_dir / "checkpoints")["step"]
    assert resumed_from < steps, "the run finished before it could be killed"

    summary = train(SegTrainConfig.load(killed), resume=True)
    assert summary["resumed_from"] == resumed_from and summary["steps"] == steps
    assert step_losses(output_dir) == expected  # bit-identical: same batches, RNG, optimizer state


def loss_nan_at(steps: set[int]):
    """The training loss, NaN at the given (1-based) steps."""
    calls = []

    def loss(logits, target, config):
        calls.append(None)
        parts = segmentation_loss(logits, target, config)
        if len(calls) in steps:
            parts["loss"] = parts["loss"] * float("nan")
        return parts

    return loss


def test_a_nan_step_is_skipped_and_a_nan_run_stops(write_config, monkeypatch):
    monkeypatch.setattr(seg_trainer, "segmentation_loss", loss_nan_at({1}))
    summary = train(SegTrainConfig.load(write_config("one_nan", max_steps=2)))
    state = load_checkpoint(summary["checkpoint"])["state_dict"]
    assert all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())
    losses = step_losses(Path(summary["output_dir"]))
    assert math.isnan(losses[1]) and math.isfinite(losses[2])  # step 1 skipped, step 2 trained

    monkeypatch.setattr(seg_trainer, "NONFINITE_PATIENCE", 2)
    monkeypatch.setattr(seg_trainer, "segmentation_loss", loss_nan_at({1, 2, 3}))
    with pytest.raises(FloatingPointError, match="not finite for 2 steps"):
        train(SegTrainConfig.load(write_config("all_nan", max_steps=3)))
