"""`pointmoe demo`: the whole pipeline on tiny untrained checkpoints (one task, one episode), the
class mapping that scores it, and the fallback to the sensor I/O demo when a checkpoint is missing."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from pointmoe_core import cli
from pointmoe_core.demo_pipeline import STAGES, TOPICS, class_mapping

pytest.importorskip("pybullet")
TASK = "pick-and-place-primitive"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A randomly initialised tiny Point-MoE with the coarse tabletop classes and input, and a tiny
    Pose-DiT planner, both in the project's checkpoint formats."""
    from pointmoe_core.common.checkpoint import save_checkpoint
    from pointmoe_core.plan.planner import PoseDiTPlanner, PoseDiTPlannerConfig
    from pointmoe_core.seg.model import InputConfig, load_config
    from pointmoe_core.seg.segmenter import Segmenter

    from .conftest import TINY_PLANNER

    folder = tmp_path_factory.mktemp("checkpoints")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only slows a shared CPU down
    torch.manual_seed(0)
    config = dataclasses.replace(load_config("tiny"), class_names=("table", "robot", "block", "bowl", "zone"),
                                 input=InputConfig(feat_keys=("color", "coord"), grid_size=0.01))
    seg = Segmenter.from_config(config).save(folder / "seg.safetensors")
    planner = PoseDiTPlanner(PoseDiTPlannerConfig.from_dict(TINY_PLANNER))
    save_checkpoint(folder / "planner", planner.checkpoint_payload(), 0, 0)
    yield seg, folder / "planner"
    torch.set_num_threads(threads)


def _output_and_json(capsys) -> tuple[str, dict]:
    output = capsys.readouterr().out
    return output, json.loads(output.strip().splitlines()[-1])


def test_class_mapping_by_name():
    sim = ("table", "robot", "smaller red block", "green bowl", "blue zone")
    vocabulary, lookup = class_mapping(("floor", "table", "block", "bowl", "zone", "robot", "table"), sim)
    assert vocabulary == ("table", "block", "bowl", "zone", "robot")  # checkpoint order, tabletop names only
    assert lookup.tolist() == [0, 4, 1, 2, 3]
    # a coloured class table takes the colour form before the kind
    vocabulary, lookup = class_mapping(("table", "red block", "block"), sim)
    assert vocabulary == ("table", "red block") and lookup.tolist() == [0, -1, 1, -1, -1]
    # nothing in common: the whole table, and nothing scored
    vocabulary, lookup = class_mapping(("car", "road"), sim)
    assert vocabulary == ("car", "road") and (lookup == -1).all()


def test_pipeline_one_task_one_episode(checkpoints, tmp_path, capsys):
    from pointmoe_core.io import read_bag
    from pointmoe_core.io.ros_types import pointmoe_typestore

    seg, planner = checkpoints
    out = tmp_path / "out"
    assert cli.main(["demo", "--seg-checkpoint", str(seg), "--planner", str(planner), "--tasks", TASK,
                     "--episodes", "1", "--image-size", "60x80", "--out", str(out), "--json"]) == 0
    output, summary = _output_and_json(capsys)
    assert summary["mode"] == "pipeline" and summary["vocabulary"] == ["table", "robot", "block", "bowl", "zone"]
    task = summary["tasks"][TASK]
    assert task["episodes"] == 1 and 0.0 <= task["success_rate"] <= 1.0
    assert task["miou"] is not None and 0.0 <= task["miou"] <= 1.0
    assert all(task["median_ms"][stage] > 0 for stage in STAGES if stage != "execute")
    assert "episode 1/1" in output and TASK in output.split("median ms:")[1]  # progress line and table row
    for key in ("classes_png", "experts_png", "plan_png"):
        assert (out / f"{TASK}_{key[:-4]}.png").stat().st_size > 1000 and task[key].endswith(f"_{key[:-4]}.png")

    messages = {}
    for topic, _, msg in read_bag(out / "run_bag", typestore=pointmoe_typestore()):
        messages.setdefault(topic, []).append(msg)
    assert set(messages) == set(TOPICS.values())
    plans = len(messages[TOPICS["pose_sequence"]])
    assert plans >= 1 and all(len(m) == plans for m in messages.values())
    assert summary["topics"] == {topic: plans for topic in TOPICS.values()}
    points, segmented = messages[TOPICS["points"]][0], messages[TOPICS["segmented"]][0]
    assert [f.name for f in points.fields] == ["x", "y", "z", "rgb"]  # no ground truth on the wire
    assert {"label", "score", "rgb"} <= {f.name for f in segmented.fields} and segmented.width == points.width
    sequence = messages[TOPICS["pose_sequence"]][0]
    assert sequence.__msgtype__ == "pointmoe_ros/msg/PoseSequence" and sequence.planner == "pose-dit"
    assert len(messages[TOPICS["poses"]][0].poses) == 2 * len(sequence.steps)
    assert np.isfinite([s.pick.position.x for s in sequence.steps]).all()


def test_missing_default_checkpoint_falls_back_to_the_sensor_demo(tmp_path, monkeypatch, capsys):
    from pointmoe_core import demo

    absent = tmp_path / "absent.safetensors"
    monkeypatch.setattr(demo, "DEFAULT_SEG_CHECKPOINT", absent)
    args = cli.build_parser().parse_args(["demo", "--data", str(tmp_path / "no_data"), "--out", str(tmp_path / "out")])
    args.seg_checkpoint = absent  # the parser read the default before the patch
    summary = demo.run(args)
    output = capsys.readouterr().out
    assert f"missing checkpoint: {absent}" in output and "make train-defaults" in output
    assert summary["ok"] and summary["mode"] == "sensor" and str(absent) in summary["missing"]
    # a checkpoint the user named that does not exist fails the run, after the sensor demo
    args.seg_checkpoint = tmp_path / "mine.safetensors"
    assert not demo.run(args)["ok"]
