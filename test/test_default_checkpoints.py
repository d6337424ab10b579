"""The default checkpoints shipped under checkpoints/ (see checkpoints/README.md): hashes and a sanity run."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pointmoe_core.common.checkpoint import sha256_file
from pointmoe_core.data.sim_demos import SIM_CLASS_SETS, sim_label_map
from pointmoe_core.demo import DEFAULT_PLANNER

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
SEG = CHECKPOINTS / "seg_default.safetensors"
COARSE = SIM_CLASS_SETS["coarse"]


WEIGHTS = sorted(CHECKPOINTS.rglob("*.safetensors"))


def test_the_demo_defaults_are_shipped():
    assert SEG in WEIGHTS and DEFAULT_PLANNER.exists()


@pytest.mark.parametrize("checkpoint", WEIGHTS, ids=lambda path: path.relative_to(CHECKPOINTS).as_posix())
def test_checkpoint_hash_matches_the_recorded_one(checkpoint):
    digest = sha256_file(checkpoint)
    sidecar = checkpoint.with_name(checkpoint.name + ".sha256").read_text().split()
    assert sidecar == [digest, checkpoint.name]
    assert digest in (CHECKPOINTS / "README.md").read_text()


def test_checkpoints_fit_the_budget():
    assert sum(path.stat().st_size for path in CHECKPOINTS.rglob("*") if path.is_file()) < 20e6


def test_demo_pipeline_runs_on_the_shipped_checkpoints(tmp_path, capsys):
    """One task, one episode of `pointmoe demo` with its defaults: every stage produced output."""
    import json

    from pointmoe_core import cli
    from pointmoe_core.demo_pipeline import STAGES

    task = "pick-and-place-primitive"
    out = tmp_path / "out"
    assert cli.main(["demo", "--tasks", task, "--episodes", "1", "--image-size", "120x160", "--out", str(out),
                     "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["mode"] == "pipeline" and summary["planner"].endswith(DEFAULT_PLANNER.name)
    result = summary["tasks"][task]
    assert result["episodes"] == 1 and result["miou"] is not None
    assert all(result["median_ms"][stage] > 0 for stage in STAGES if stage != "execute")
    assert all((out / f"{task}_{kind}.png").stat().st_size > 1000 for kind in ("classes", "experts", "plan"))
    assert (out / "run_bag").is_dir()


@pytest.fixture(scope="module")
def segmenter():
    import torch

    from pointmoe_core.seg.segmenter import Segmenter

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield Segmenter.from_checkpoint(SEG)
    torch.set_num_threads(threads)


def test_seg_checkpoint_loads_with_the_tabletop_input(segmenter):
    config = segmenter.config
    assert set(COARSE) <= set(config.class_names)
    assert config.valid_classes["sim_tabletop"] and len(config.valid_classes["sim_tabletop"]) == len(COARSE)
    assert config.input.feat_keys == ("color", "coord") and config.input.grid_size == pytest.approx(0.01)
    recorded = re.search(r"seed\D+(\d+)", (CHECKPOINTS / "README.md").read_text())
    assert recorded is not None


@pytest.mark.parametrize("task", ["put-block-into-matching-bowl"])
def test_seg_checkpoint_segments_a_sim_cloud(segmenter, task):
    """A fresh scene of an unseen seed, test colours: the cloud the demo segments, scored against sim GT."""
    from pointmoe_core.sim.bridge import RavensBridge
    from pointmoe_core.sim.env import EnvConfig, TabletopEnv
    from pointmoe_core.sim.tasks import TASKS

    with TabletopEnv(TASKS[task](split="test"), EnvConfig(image_size=(240, 320))) as env:
        bridge = RavensBridge(env, voxel_size=0.005)
        env.seed(4321)
        scene = bridge.reset()
    cloud = scene.cloud
    target = sim_label_map(scene.class_names)[cloud.label]
    target[cloud.label < 0] = -1
    result = segmenter.predict(cloud.xyz, color=cloud.rgb, class_names=COARSE)
    assert result.labels.shape == target.shape and result.class_names == COARSE
    known = target >= 0
    ious = []
    for index in np.unique(target[known]):
        truth, pred = target[known] == index, result.labels[known] == index
        ious.append((truth & pred).sum() / (truth | pred).sum())
    assert np.mean(ious) > 0.5, dict(zip([COARSE[i] for i in np.unique(target[known])], np.round(ious, 3)))
