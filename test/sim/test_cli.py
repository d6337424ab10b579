"""`pointmoe sim demos` and `pointmoe sim eval` through their module entry points."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from pointmoe_core.sim import cli
from pointmoe_core.sim.objects import CLASS_IDS, SEMANTIC_CLASSES


def _run(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def test_eval_reports_rates_and_draws_pictures(tmp_path):
    from PIL import Image

    result = _run("eval", "--task", "pick-and-place-primitive", "--episodes", "2", "--image-size", "60x80",
                  "--out", str(tmp_path))
    task = result["tasks"]["pick-and-place-primitive"]
    assert result["ok"] and result["success_rate"] == task["success_rate"] == 1.0
    assert task["mean_score"] == 1.0 and task["episodes"] == 2 and task["refused"] == 0
    first = np.asarray(Image.open(task["first_frame_png"]))
    sheet = np.asarray(Image.open(task["contact_sheet_png"]))
    assert first.shape == (60, 80, 3) and sheet.shape[1] == 2 * 80 + 4  # reset frame + one step
    json.dumps(result)  # what `--json` prints


def test_demos_write_clouds_labels_and_poses(tmp_path):
    result = _run("demos", "--task", "put-block-into-matching-bowl", "--episodes", "1", "--image-size", "60x80",
                  "--out", str(tmp_path))
    assert result["ok"] and result["episodes"] == 1
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["class_names"] == list(SEMANTIC_CLASSES)
    entry = index["episodes"][0]
    data = np.load(tmp_path / entry["file"])
    steps = len(data["pick_xyz"])
    assert steps == entry["steps"] >= 2 and data["place_quat"].shape == (steps, 4)
    assert len(data["frame_offsets"]) == steps + 2 and data["frame_offsets"][-1] == len(data["xyz"])
    assert bool(data["success"]) and float(data["score"]) == 1.0 and str(data["instruction"]) == entry["instruction"]
    assert data["rewards"].sum() == pytest.approx(1.0)
    labels, bodies = data["label"], data["object_id"]
    # one class per body, and the blocks carry block classes
    for body in np.unique(bodies):
        assert len(np.unique(labels[bodies == body])) == 1
    assert {CLASS_IDS["table"]} < set(labels.tolist())
    assert any(SEMANTIC_CLASSES[label].endswith("block") for label in np.unique(labels))


def test_demos_append_to_the_index_and_replace_an_episode_written_again(tmp_path):
    common = ("--task", "pick-and-place-primitive", "--episodes", "1", "--image-size", "60x80", "--out", str(tmp_path))
    _run("demos", *common)
    _run("demos", *common, "--seed", "7", "--append")
    result = _run("demos", *common, "--seed", "7", "--append")
    index = json.loads((tmp_path / "index.json").read_text())["episodes"]
    assert result["episodes"] == 2 and [entry["seed"] for entry in index] == [0, 7]
    _run("demos", *common, "--seed", "3")  # without --append the index starts again
    assert [entry["seed"] for entry in json.loads((tmp_path / "index.json").read_text())["episodes"]] == [3]


def test_a_planner_is_the_oracle_or_an_existing_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="neither 'oracle' nor an existing Pose-DiT checkpoint"):
        _run("eval", "--task", "pick-and-place-primitive", "--planner", "runs/pose_dit.pt", "--out", str(tmp_path))


@pytest.mark.slow
def test_acceptance_matching_bowl_oracle_success(tmp_path):
    """The issue's acceptance run: 10 episodes at full camera resolution."""
    result = _run("eval", "--task", "put-block-into-matching-bowl", "--episodes", "10", "--out", str(tmp_path))
    assert result["success_rate"] >= 0.95
