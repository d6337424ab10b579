"""Fitting Pose-DiT to oracle demos, training with checkpoints and resume, and the planner's poses
going through the simulator bridge (open loop, and closed loop from a checkpoint)."""
import argparse
import json

import numpy as np
import pytest
import torch

from pointmoe_core.common.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from pointmoe_core.common.pose_sequence import PoseSequence
from pointmoe_core.data.demo_frames import load_demo_frames, object_instances
from pointmoe_core.plan import planner as planner_module
from pointmoe_core.plan.planner import PoseDiTPlanner, PoseDiTPlannerConfig
from pointmoe_core.plan.train_pose_dit import (
    FitConfig,
    PoseDiTTrainConfig,
    fit,
    train,
)

CLASS_NAMES = ("table", "robot", "smaller red block", "green bowl")


def write_demo(path, seed: int, steps: int):
    """One episode in the layout ``pointmoe sim demos`` writes: a cloud per frame (steps + 1)."""
    rng = np.random.default_rng(seed)
    xyz, rgb, label, body, offsets = [], [], [], [], [0]
    for _ in range(steps + 1):
        parts = [  # (points, class, body id)
            (np.c_[rng.uniform(0.25, 0.75, 300), rng.uniform(-0.5, 0.5, 300), np.zeros(300)], 0, 1),
            (rng.normal([0.5, 0.6, 0.3], 0.01, (20, 3)), 1, 2),
            (rng.normal([0.4, 0.1, 0.02], 0.01, (50, 3)), 2, 5),
            (rng.normal([0.6, -0.2, 0.02], 0.03, (80, 3)), 3, 6),
        ]
        for points, cls, body_id in parts:
            xyz.append(points)
            rgb.append(np.full((len(points), 3), 40 * cls, np.uint8))
            label.append(np.full(len(points), cls))
            body.append(np.full(len(points), body_id))
        offsets.append(offsets[-1] + sum(len(p[0]) for p in parts))
    pick = rng.uniform([0.3, -0.4, 0.02], [0.7, 0.4, 0.05], (steps, 3))
    place = rng.uniform([0.3, -0.4, 0.02], [0.7, 0.4, 0.05], (steps, 3))
    quat = np.tile([0.0, 0.0, 0.0, 1.0], (steps, 1))
    np.savez_compressed(
        path, task="pick-and-place-primitive", seed=seed, split="train", instruction=f"demo {seed}",
        xyz=np.concatenate(xyz).astype(np.float32), rgb=np.concatenate(rgb),
        label=np.concatenate(label).astype(np.int16), object_id=np.concatenate(body).astype(np.int32),
        frame_offsets=np.array(offsets), class_names=np.array(CLASS_NAMES),
        pick_xyz=pick, pick_quat=quat, place_xyz=place, place_quat=quat,
        rewards=np.ones(steps), score=1.0, success=True,
    )


@pytest.fixture
def demo_dir(tmp_path):
    episodes = []
    for seed, steps in ((0, 1), (1, 3)):
        name = f"task/ep{seed}.npz"
        (tmp_path / "task").mkdir(exist_ok=True)
        write_demo(tmp_path / name, seed, steps)
        episodes.append({"file": name, "task": "task", "seed": seed, "steps": steps})
    (tmp_path / "index.json").write_text(json.dumps({"class_names": CLASS_NAMES, "episodes": episodes}))
    return tmp_path


def test_every_frame_with_steps_left_is_a_sample(demo_dir):
    frames = load_demo_frames(demo_dir)
    assert [len(f.remaining) for f in frames] == [1, 3, 2, 1]  # the final frames have nothing left
    with np.load(demo_dir / "task/ep1.npz") as demo:
        assert frames[2].remaining.steps[0].pick_xyz == tuple(demo["pick_xyz"][1])
        assert frames[2].remaining.steps[-1].place_xyz == tuple(demo["place_xyz"][2])
    assert frames[1].instruction == "demo 1" and frames[1].remaining.planner == "oracle"
    # table (body 1) and robot (body 2) are background; the block and the bowl are objects
    assert set(np.unique(frames[0].instance_ids).tolist()) == {-1, 5, 6}
    assert len(frames[0].xyz) == 450


def test_object_instances():
    label = np.array([0, 1, 2, 3, -1])
    body = np.array([10, 11, 12, 13, 14])
    assert object_instances(label, body, CLASS_NAMES).tolist() == [-1, -1, 12, 13, -1]


def test_fit_lowers_the_loss(demo_dir, tiny_planner_config, hash_text):
    torch.manual_seed(0)
    planner = PoseDiTPlanner(PoseDiTPlannerConfig.from_dict(tiny_planner_config), instruction_encoder=hash_text)
    seen = []
    history = fit(planner, load_demo_frames(demo_dir), FitConfig(steps=60, batch_size=8, lr=3e-3, warmup_steps=5),
                  on_step=lambda step, losses: seen.append((step, set(losses))))
    assert len(history) == 60 and seen[-1] == (59, {"loss", "pose_loss", "stop_loss", "grounding_loss"})
    assert np.mean(history[-10:]) < np.mean(history[:10]) / 3
    assert not planner.training


def test_planner_poses_execute_through_the_sim_bridge(hash_text, tiny_planner_config):
    pytest.importorskip("pybullet")
    from pointmoe_core.sim import EnvConfig, Oracle, RavensBridge, TabletopEnv
    from pointmoe_core.sim.tasks import TASKS

    planner = PoseDiTPlanner(PoseDiTPlannerConfig.from_dict(tiny_planner_config), instruction_encoder=hash_text).eval()
    with TabletopEnv(TASKS["pick-and-place-primitive"](split="train"), EnvConfig(image_size=(60, 80))) as env:
        env.seed(0)
        bridge = RavensBridge(env)
        scene = bridge.reset()
        ids = object_instances(scene.cloud.label, scene.object_id, scene.class_names)
        assert len(np.unique(ids[ids >= 0])) >= 2  # the cameras see the objects
        plan = planner.plan(scene.cloud.xyz, scene.cloud.rgb, ids, bridge.instruction)
        result = bridge.execute(plan)  # an untrained plan: it must execute, not succeed
        assert 1 <= result.steps_sent <= len(plan)
        # the oracle's plan, as a PoseSequence, runs through the same path and solves the task
        env.seed(1)
        bridge.reset()
        oracle = PoseSequence.from_ravens_actions(
            [{"pose0": (s.pick_xyz, s.pick_quat), "pose1": (s.place_xyz, s.place_quat)} for s in Oracle(env).plan()])
        bridge.execute(oracle)
        assert env.task.success


def _log_losses(output_dir) -> dict[int, float]:
    lines = (output_dir / "log.jsonl").read_text().splitlines()
    return {entry["step"]: entry["loss"] for entry in map(json.loads, lines)}


def test_training_checkpoints_and_resume_continue_the_same_run(demo_dir, tiny_planner_config, hash_text, tmp_path):
    config = PoseDiTTrainConfig(demos=str(demo_dir), planner=PoseDiTPlannerConfig.from_dict(tiny_planner_config),
                                fit=FitConfig(steps=4, batch_size=4, warmup_steps=1), output_dir=str(tmp_path / "full"),
                                checkpoint_every=2, keep_last=0, log_every=1, device="cpu")
    summary = train(config, instruction_encoder=hash_text)
    checkpoints = tmp_path / "full/checkpoints"
    assert summary["steps"] == 4 and summary["resumed_from"] is None
    assert sorted(p.name for p in checkpoints.glob("step_*.pt")) == ["step_00000002.pt", "step_00000004.pt"]
    assert latest_checkpoint(checkpoints).name == "step_00000004.pt"
    assert (tmp_path / "full/tensorboard").is_dir()

    # a run killed after step 2: its checkpoint directory holds only the step-2 checkpoint
    save_checkpoint(tmp_path / "killed/checkpoints", load_checkpoint(checkpoints / "step_00000002.pt"), 2, 0)
    config.output_dir = str(tmp_path / "killed")
    resumed = train(config, resume=True, instruction_encoder=hash_text)
    assert resumed["resumed_from"] == 2 and resumed["steps"] == 4
    # the same batches, noise and optimiser state: the same losses and the same weights
    full, rest = _log_losses(tmp_path / "full"), _log_losses(tmp_path / "killed")
    assert sorted(rest) == [3, 4] and all(rest[step] == pytest.approx(full[step], rel=1e-6) for step in rest)
    a = PoseDiTPlanner.from_checkpoint(checkpoints, instruction_encoder=hash_text)
    b = PoseDiTPlanner.from_checkpoint(tmp_path / "killed/checkpoints", instruction_encoder=hash_text)
    assert not a.training
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)


def test_resume_without_a_checkpoint_is_refused(demo_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(PoseDiTTrainConfig(demos=str(demo_dir), output_dir=str(tmp_path)), resume=True)


def test_train_cli_takes_demos_and_dotted_overrides(demo_dir, tmp_path, monkeypatch):
    from pointmoe_core import train_cli

    seen = {}
    monkeypatch.setattr("pointmoe_core.plan.train_pose_dit.train",
                        lambda config, resume: seen.update(config=config, resume=resume) or {"ok": True})
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["pose-dit", "--config", "config/train/pose_dit_tiny.yaml", "--demos", str(demo_dir),
                              "fit.steps=3", "planner.scheduler=ddpm", "--resume"])
    assert train_cli.run(args) == {"ok": True}
    config = seen["config"]
    assert seen["resume"] and config.demos == str(demo_dir) and config.fit.steps == 3
    assert config.planner.scheduler == "ddpm" and config.planner.model.hidden_size == 128  # the rest from the YAML


def test_checkpoint_plans_closed_loop_in_sim_eval(tiny_planner_config, hash_text, tmp_path, monkeypatch):
    pytest.importorskip("pybullet")
    from pointmoe_core.sim import cli

    planner = PoseDiTPlanner(PoseDiTPlannerConfig.from_dict(tiny_planner_config), instruction_encoder=hash_text)
    checkpoint = save_checkpoint(tmp_path / "checkpoints", planner.checkpoint_payload(), 0, 0).path
    monkeypatch.setattr(planner_module, "InstructionEncoder", lambda mode: hash_text)  # MiniLM is not needed here
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)

    def evaluate(*options: str) -> dict:
        return cli.run(parser.parse_args(["eval", "--task", "pick-and-place-primitive", "--episodes", "1",
                                          "--image-size", "60x80", "--out", str(tmp_path), *options]))

    result = evaluate("--planner", str(checkpoint), "--steps", "2", "--scheduler", "flow")
    task = result["tasks"]["pick-and-place-primitive"]
    # untrained weights: the plans must execute (valid, re-planned each step), not succeed
    assert result["ok"] and result["steps"] == 2 and task["refused"] == 0
    assert task["mean_steps"] >= 1 and task["median_plan_s"] > 0
    with pytest.raises(ValueError, match="trained with the rectified_flow scheduler"):
        evaluate("--planner", str(tmp_path / "checkpoints"), "--scheduler", "ddpm")
