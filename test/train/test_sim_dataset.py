"""The ``sim_demos`` dataset: frames of `pointmoe sim demos` files as samples, labels mapped to a class set."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from pointmoe_core.data.sample import IGNORE_INDEX
from pointmoe_core.data.sim_demos import SIM_CLASS_SETS, SimDemoDataset, sim_class_name, sim_label_map
from pointmoe_core.sim.objects import SEMANTIC_CLASSES
from pointmoe_core.train.datasets import DatasetEntry

COARSE = SIM_CLASS_SETS["coarse"]


def _write_episode(path, seed: int, frames: list[list[str]], task: str = "pick-and-place-primitive") -> list:
    """A demo file in the `pointmoe sim demos` layout; frame i has one point per name in frames[i]
    (None: an unlabelled point). Returns the point names, frame after frame."""
    names = [name for frame in frames for name in frame]
    label = np.array([-1 if n is None else SEMANTIC_CLASSES.index(n) for n in names], np.int16)
    n = len(names)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, task=task, seed=seed, split="train", instruction="x",
        xyz=np.arange(3 * n, dtype=np.float32).reshape(n, 3) / 100, rgb=np.full((n, 3), 7, np.uint8),
        label=label, object_id=np.zeros(n, np.int32),
        frame_offsets=np.concatenate([[0], np.cumsum([len(f) for f in frames])]),
        class_names=np.array(SEMANTIC_CLASSES))
    return names


def test_class_names_map_to_coarse_and_colour_sets():
    assert sim_class_name("table") == "table" and sim_class_name("robot") == "robot"
    assert sim_class_name("smaller blue block") == "block" and sim_class_name("green bowl") == "bowl"
    assert sim_class_name("bigger red block", "color") == "red block"
    assert sim_class_name("white zone", "color") == "white zone" and sim_class_name("robot", "color") == "robot"
    assert sim_class_name("floor") is None
    mapping = sim_label_map(SEMANTIC_CLASSES)
    assert len(mapping) == len(SEMANTIC_CLASSES) and (mapping >= 0).all()  # every sim class has a coarse one
    assert {COARSE[i] for i in mapping} == set(COARSE)
    colour = sim_label_map(SEMANTIC_CLASSES, "color")
    assert (colour >= 0).all()
    names = SIM_CLASS_SETS["color"]
    for source, target in zip(SEMANTIC_CLASSES, colour):
        assert names[target] == sim_class_name(source, "color")


def test_frames_are_samples_with_mapped_labels_and_seed_splits(tmp_path):
    first = _write_episode(tmp_path / "a" / "ep0.npz", seed=0, frames=[
        ["table", "smaller red block", "blue bowl", None], ["table", "robot", "green zone"]])
    second = _write_episode(tmp_path / "b" / "sub" / "ep7.npz", seed=7, frames=[["bigger yellow block", "table"]],
                            task="stack-block-in-absolute-area")
    dataset = SimDemoDataset(tmp_path)
    assert len(dataset) == 3 and dataset.class_names == COARSE and dataset.name == "sim_tabletop"
    expected = [n if n is None else sim_class_name(n) for n in first + second]
    got = []
    for index in range(3):
        sample = dataset.load(index)
        assert sample["coord"].dtype == np.float32 and sample["color"].shape == (len(sample["coord"]), 3)
        assert "normal" not in sample and sample["dataset"] == "sim_tabletop"
        got += [None if s == IGNORE_INDEX else COARSE[s] for s in sample["segment"]]
    assert got == expected
    assert dataset.input_spec.feat_keys == ("color", "coord")
    assert dataset.load(1)["name"] == "ep0#1"
    # held-out splits by episode seed and by task
    assert len(SimDemoDataset(tmp_path, seeds=[5, 10])) == 1
    assert len(SimDemoDataset(tmp_path, tasks="pick-and-place-primitive")) == 2
    with pytest.raises(FileNotFoundError):
        SimDemoDataset(tmp_path, seeds=[100, 200])
    colour = SimDemoDataset([tmp_path / "a"], classes="color")
    assert [SIM_CLASS_SETS["color"][s] for s in colour.load(1)["segment"]] == ["table", "robot", "green zone"]


def test_config_entry_builds_training_samples(tmp_path):
    _write_episode(tmp_path / "ep.npz", seed=0, frames=[["table"] * 50 + ["smaller red block"] * 20])
    entry = DatasetEntry.from_spec(f"sim_demos:root={tmp_path},classes=coarse")
    dataset = entry.build(train=True, point_max=30)
    sample = dataset[0]
    assert sample["feat"].shape == (len(sample["coord"]), 6) and len(sample["coord"]) <= 30
    assert set(np.unique(sample["segment"])) <= {0, 2}
    evaluated = entry.build(train=False)[0]
    assert len(evaluated["inverse"]) == 70 and evaluated["grid_size"] == pytest.approx(0.01)


def test_reads_clouds_the_simulator_wrote(tmp_path):
    from pointmoe_core.sim import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    cli.run(parser.parse_args(["demos", "--task", "pick-and-place-primitive", "--episodes", "1",
                               "--image-size", "60x80", "--out", str(tmp_path)]))
    dataset = SimDemoDataset(tmp_path)
    raw = np.load(next(tmp_path.rglob("*.npz")))
    assert len(dataset) == len(raw["frame_offsets"]) - 1 >= 2
    sample = dataset.load(0)
    source = raw["label"][: raw["frame_offsets"][1]]
    names = raw["class_names"]
    expected = [IGNORE_INDEX if s < 0 else COARSE.index(sim_class_name(names[s])) for s in source]
    assert sample["segment"].tolist() == expected
    assert {0, 2, 3} <= set(sample["segment"].tolist())  # table, block and bowls are seen
