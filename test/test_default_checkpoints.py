"""The default checkpoints shipped under checkpoints/ (see checkpoints/README.md): hashes and a sanity run."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pointmoe_core.data.sim_demos import SIM_CLASS_SETS, sim_label_map
from pointmoe_core.train.checkpoint import sha256_file

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
SEG = CHECKPOINTS / "seg_default.safetensors"
COARSE = SIM_CLASS_SETS["coarse"]


def test_seg_checkpoint_hash_matches_the_recorded_one():
    digest = sha256_file(SEG)
    sidecar = (CHECKPOINTS / "seg_default.safetensors.sha256").read_text().split()
    assert sidecar == [digest, SEG.name]
    assert digest in (CHECKPOINTS / "README.md").read_text()
    assert SEG.stat().st_size < 8.5e6  # its share of the 20 MB checkpoint budget


@pytest.fixture(scope="module")
def segmenter():
    import torch

    from pointmoe_core.seg.segmenter import Segmenter

    torch.set_num_threads(1)
    return Segmenter.from_checkpoint(SEG)


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
