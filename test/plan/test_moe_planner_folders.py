"""A 3D-MoE planner folder is checked whole before its LLM loads: missing files and broken metadata
are named, non-finite weights refused by name (`moe_planner.from_checkpoint`, `load_planner`)."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from pointmoe_core.common.checkpoint import write_hash_sidecar
from pointmoe_core.plan import moe_planner
from pointmoe_core.plan.interface import load_planner
from pointmoe_core.plan.llm import load_llm
from pointmoe_core.plan.moe_planner import MoEPlanner
from pointmoe_core.plan.train_planner import PlannerTrainConfig


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    planner = MoEPlanner(PlannerTrainConfig.load("config/train/planner_tiny.yaml").planner)
    planner.adapt()
    return planner.export(tmp_path_factory.mktemp("planner") / "shipped")


@pytest.fixture
def folder(exported, tmp_path, monkeypatch):
    """A copy to break; the LLM must not be reached (every check comes before it loads)."""
    def no_llm(*args, **kwargs):
        raise AssertionError("the LLM loaded before the folder was checked")

    monkeypatch.setattr(moe_planner, "load_llm", no_llm)
    return shutil.copytree(exported, tmp_path / "planner")


@pytest.mark.parametrize("name", ["pose_dit.safetensors", "pointer.safetensors", "scene_tokenizer.safetensors",
                                  "adapters/adapters.safetensors", "adapters/adapters.json"])
def test_a_missing_file_is_named(folder, name):
    (folder / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"the 3D-MoE planner in {folder} lacks {name}"):
        load_planner(folder)


def test_missing_metadata_is_named_not_taken_for_a_pose_dit_checkpoint(folder):
    (folder / "planner.json").unlink()
    with pytest.raises(FileNotFoundError, match="lacks planner.json"):
        load_planner(folder)


@pytest.mark.parametrize("text, says", [("{\"format\": ", "planner.json is not valid JSON"),
                                        ("[1, 2]", "lacks the 3D-MoE planner's version, adapted and config"),
                                        ("\xff", "planner.json is not valid JSON")])
def test_broken_metadata_is_named(folder, text, says):
    (folder / "planner.json").write_text(text, encoding="latin-1")
    with pytest.raises(ValueError, match=says):
        load_planner(folder)


def test_non_finite_weights_are_refused_by_name(folder):
    state = load_file(folder / "pose_dit.safetensors")
    name = next(iter(state))
    state[name] = torch.full_like(state[name], float("inf"))
    save_file(state, folder / "pose_dit.safetensors")
    write_hash_sidecar(folder / "pose_dit.safetensors")  # a consistent file: only its values are wrong
    with pytest.raises(ValueError, match=f"non-finite \\(NaN/Inf\\) weights in 1 tensors: {name}"):
        load_planner(folder)


def test_an_intact_folder_still_loads(exported):
    planner = load_planner(exported)
    assert isinstance(planner, MoEPlanner) and json.loads((exported / "planner.json").read_text())["adapted"]


def test_the_base_llm_can_come_from_a_model_folder(exported, tmp_path):
    """The same base model stored as a Hugging Face folder plans exactly as from its own source."""
    config = PlannerTrainConfig.load("config/train/planner_tiny.yaml").planner
    llm, tokenizer = load_llm(config.llm)
    llm.save_pretrained(tmp_path / "llm")
    tokenizer.save_pretrained(tmp_path / "llm")
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-0.3, 0.3, (400, 3)).astype(np.float32)
    colors = rng.integers(0, 255, (400, 3), dtype=np.uint8)
    instance_ids = np.repeat(np.arange(4), 100)
    plans = [load_planner(exported, llm_folder=folder).plan(xyz, colors, instance_ids, "put the red block in the bowl",
                                                           generator=torch.Generator().manual_seed(0))
             for folder in (None, tmp_path / "llm")]
    def numbers(plan):
        return [[*s.pick_xyz, *s.pick_quat, *s.place_xyz, *s.place_quat, s.score] for s in plan.steps]

    assert len(plans[0]) > 0 and np.allclose(numbers(plans[0]), numbers(plans[1]), atol=1e-5)
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_planner(exported, llm_folder=tmp_path / "nothing")
