"""``pointmoe sim``: oracle demonstrations and closed-loop evaluation on the LoHoRavens tasks.

    pointmoe sim demos --task T --episodes N --out DIR
    pointmoe sim eval --task T --planner oracle --episodes 35 [--seed S] [--json]
    pointmoe sim eval --task T --planner CHECKPOINT [--seg-checkpoint SEG] [--steps N] ...
    pointmoe sim eval --env lohoravens --lohoravens-root PATH --task T --mode test --episodes N --json

``demos`` keeps only successful oracle episodes, one ``.npz`` each: the fused cloud of every
observation (xyz, rgb, semantic label, object id, split by ``frame_offsets``), the instruction,
the executed pose sequence and the rewards; ``index.json`` lists them. ``eval`` runs a planner
through the bridge (``sim.episode.run_episode``), reports per task the success rate, mean score
(reward), steps, failure reasons and per-stage seconds, and draws the first frame with the executed
pick -> place arrows and a contact sheet of the first episode. The planner is the environment's
oracle or a Pose-DiT checkpoint / 3D-MoE planner folder, which runs closed loop: after every
executed step it plans again from the new fused cloud and executes only the first step. It sees
the simulator's ground-truth objects, or, with ``--seg-checkpoint`` (needed on LoHoRavens, which
labels nothing), the objects the Point-MoE segmentation finds, as ``pointmoe demo`` does.

``--env lohoravens`` runs the tasks of a user's LoHoRavens checkout as they are
(``sim.lohoravens``); ``--mode`` (alias of ``--split``) is then its train/val/test mode.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..common.cli_args import image_size
from .bridge import RavensBridge
from .episode import (
    Episode,
    Policy,
    add_env_arguments,
    env_counts,
    open_env,
    oracle_planner,
    run_episode,
    summarize,
    unscorable_note,
)
from .language import ObjectFact, object_metadata, scene_objects
from .lohoravens import LOHORAVENS_TASKS
from .objects import SEMANTIC_CLASSES
from .pictures import annotate_steps, contact_sheet, save_png
from .tasks import TASKS

if TYPE_CHECKING:
    from pointmoe_core.plan.interface import Planner

SCHEDULER_NAMES = {"flow": "rectified_flow", "ddpm": "ddpm"}  # --scheduler -> PoseDiTPlannerConfig.scheduler


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    demos = actions.add_parser("demos", help="write successful oracle episodes (clouds, labels, poses)")
    evaluate = actions.add_parser("eval", help="success rate and mean score of a planner per task")
    for sub, episodes, split in ((demos, 10, "train"), (evaluate, 35, "test")):
        sub.add_argument("--task", action="append", required=True, metavar="TASK",
                         help=f"task name (repeatable), or 'all'; ours: {', '.join(TASKS)}; "
                              "LoHoRavens: any of its registered tasks")
        sub.add_argument("--episodes", type=_positive, default=episodes, help="episodes per task")
        sub.add_argument("--seed", type=int, default=0, help="seed of the first episode (then +1 each)")
        sub.add_argument("--image-size", type=image_size, default=(480, 640), metavar="HxW",
                         help="camera images of our simulator (intrinsics scale with them)")
        add_env_arguments(sub, split)
    demos.add_argument("--out", type=Path, required=True, help="output folder")
    demos.add_argument("--append", action="store_true",
                       help="add to the episodes already listed in OUT/index.json (one data set from several runs)")
    demos.add_argument("--voxel-size", type=float, default=0.005, help="cloud voxel edge in metres (0: off)")
    evaluate.add_argument("--planner", default="oracle",
                          help="'oracle', a Pose-DiT checkpoint (file or directory) or a 3D-MoE planner folder")
    evaluate.add_argument("--seg-checkpoint", type=Path,
                          help="plan on the objects this Point-MoE checkpoint segments instead of the simulator's "
                               "ground truth (needed with --env lohoravens)")
    evaluate.add_argument("--steps", type=int, help="Pose-DiT sampling steps (default: the checkpoint's, "
                          "4 for rectified flow, 50 for DDPM)")
    evaluate.add_argument("--scheduler", choices=sorted(SCHEDULER_NAMES),
                          help="Pose-DiT scheduler; must be the one the checkpoint was trained with (checked)")
    evaluate.add_argument("--snap-radius", type=float,
                          help="metres: snap each planned pick and place onto the nearest object centre within it "
                               "(default: the checkpoint's, 0 = off)")
    evaluate.add_argument("--device", default="cpu", help="torch device of the planner and segmenter")
    evaluate.add_argument("--out", type=Path, default=Path("demo_out/sim_eval"), help="folder for the PNGs")


def run(args: argparse.Namespace) -> dict:
    return {"demos": write_demos, "eval": evaluate}[args.action](args)


class PoseDiTClosedLoop:
    """A Pose-DiT planner (MiniLM- or 3D-MoE-conditioned) in closed loop: a full plan from the latest
    observation, of which only the first step is executed, so that every step sees where the last
    one left the objects."""

    def __init__(self, planner: "Planner", num_steps: int | None = None, seed: int = 0) -> None:
        import torch  # imported here, as the planner is: the oracle paths of this CLI run without torch

        self.planner, self.num_steps = planner, num_steps
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, bridge: RavensBridge) -> dict | None:
        from pointmoe_core.data.demo_frames import object_instances

        scene = bridge.cloud()
        instance_ids = object_instances(scene.cloud.label, scene.object_id, scene.class_names)
        plan = self.planner.plan(scene.cloud.xyz, scene.cloud.rgb, instance_ids, bridge.instruction,
                                 num_steps=self.num_steps, generator=self.generator)
        return plan.to_ravens_actions()[0] if len(plan) else None


def make_planner(name: str, num_steps: int | None = None, scheduler: str | None = None, seed: int = 0,
                 snap_radius: float | None = None, seg_checkpoint: Path | None = None,
                 device: str = "cpu") -> Policy:
    """'oracle', or a Pose-DiT checkpoint (file or directory) or 3D-MoE planner folder run closed loop;
    ``snap_radius`` replaces the checkpoint's (``planner.snap_to_objects``). With ``seg_checkpoint``
    the planner sees the segmented objects (``demo_pipeline.PerceivePlanAct``), else ground truth."""
    if name == "oracle":
        return oracle_planner
    if not Path(name).exists():
        raise ValueError(f"planner {name!r}: neither 'oracle' nor an existing Pose-DiT checkpoint or 3D-MoE planner")
    from pointmoe_core.plan.interface import load_planner

    planner = load_planner(name, map_location=device)
    if scheduler is not None and SCHEDULER_NAMES[scheduler] != planner.config.scheduler:
        # each scheduler trains its own prediction target (velocity vs noise): a network only samples with its own
        raise ValueError(f"{name} was trained with the {planner.config.scheduler} scheduler, not {scheduler}; "
                         f"train one with planner.scheduler={SCHEDULER_NAMES[scheduler]}")
    if snap_radius is not None:
        planner.config.snap_radius = snap_radius
    if seg_checkpoint is None:
        return PoseDiTClosedLoop(planner, num_steps, seed)
    from pointmoe_core.demo_pipeline import PerceivePlanAct, class_mapping
    from pointmoe_core.seg.segmenter import Segmenter

    segmenter = Segmenter.from_checkpoint(seg_checkpoint, device=device)
    vocabulary, sim_to_vocabulary = class_mapping(segmenter.config.class_names, SEMANTIC_CLASSES)
    return PerceivePlanAct(segmenter, planner, vocabulary, sim_to_vocabulary, expert_layer=None, seed=seed)


def _task_names(args: argparse.Namespace) -> list[str]:
    if "all" in args.task:
        return list(LOHORAVENS_TASKS if args.env == "lohoravens" else TASKS)
    return list(dict.fromkeys(args.task))


def _make_env(args: argparse.Namespace, task_name: str):
    return open_env(args.env, task_name, args.split, args.image_size, args.assets_root, args.lohoravens_root,
                    args.repair_scoring)


def write_demos(args: argparse.Namespace) -> dict:
    """Oracle episodes until ``episodes`` succeed per task (at most 2x + 10 tries); ``append`` keeps
    the episodes already listed (an episode written again replaces its entry)."""
    index_path = args.out / "index.json"
    index, summary = [], {}
    if args.append and index_path.is_file():
        index = json.loads(index_path.read_text())["episodes"]
    for name in _task_names(args):
        with _make_env(args, name) as env:
            bridge = RavensBridge(env, voxel_size=args.voxel_size or None)
            written, tried = 0, 0
            while written < args.episodes and tried < 2 * args.episodes + 10:
                seed = args.seed + tried
                tried += 1
                objects: list[list[ObjectFact]] = []
                options: list[np.ndarray] = []
                episode = run_episode(bridge, seed, _recording_oracle(objects, options), keep_observations=True)
                if not episode.success:
                    continue
                # the oracle saw every frame but the last, after the final step: that is the scene now
                objects = objects[:len(episode.steps)] + [scene_objects(env)]
                path = _save_episode(args.out / name / f"{name}-{seed:06d}.npz", episode,
                                     [bridge.cloud(obs) for obs in episode.observations], objects, args.split,
                                     options[:len(episode.steps)])
                file = str(path.relative_to(args.out))
                index = [entry for entry in index if entry["file"] != file]
                index.append({"file": file, "task": name, "seed": seed,
                              "instruction": episode.instruction, "steps": len(episode.steps),
                              "score": episode.score})
                written += 1
        summary[name] = {"written": written, "tried": tried}
        print(f"{name}: {written} successful demos of {tried} tried")
    args.out.mkdir(parents=True, exist_ok=True)
    index_path.write_text(json.dumps(
        {"class_names": list(SEMANTIC_CLASSES), "episodes": index}, indent=1))
    return {"ok": all(s["written"] == args.episodes for s in summary.values()), "out": str(args.out),
            "tasks": summary, "episodes": len(index)}


def _recording_oracle(objects: list[list[ObjectFact]], options: list[np.ndarray]) -> Policy:
    """The oracle, noting at every frame it plans from the scene's objects (for language data)
    and, in our simulator, every step that could come first ((K, pick|place, xyz), for grounding)."""

    from .env import TabletopEnv
    from .oracle import first_step_options

    def planner(bridge: RavensBridge) -> dict | None:
        objects.append(scene_objects(bridge.env))
        if isinstance(bridge.env, TabletopEnv):
            steps = first_step_options(bridge.env.task, bridge.env)
            options.append(np.array([[s.pick_xyz, s.place_xyz] for s in steps], dtype=np.float32).reshape(-1, 2, 3))
        return oracle_planner(bridge)

    return planner


def _save_episode(path: Path, episode: Episode, clouds, objects: list[list[ObjectFact]], split: str,
                  options: list[np.ndarray]) -> Path:
    """One demo file; ``objects`` (one list per frame) becomes the ``object_*`` metadata arrays,
    ``options`` (one array per step, when the env gives them) ``option_xyz`` and ``option_offsets``."""
    first_steps = {} if len(options) != len(episode.steps) else {
        "option_xyz": np.concatenate(options).reshape(-1, 2, 3),
        "option_offsets": np.concatenate([[0], np.cumsum([len(o) for o in options])])}
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = np.array([np.concatenate([s.pick_xyz, s.pick_quat, s.place_xyz, s.place_quat])
                      for s in episode.steps]).reshape(-1, 14)
    np.savez_compressed(
        path,
        task=episode.task, seed=episode.seed, split=split, instruction=episode.instruction,
        xyz=np.concatenate([c.cloud.xyz for c in clouds]),
        rgb=np.concatenate([c.cloud.rgb for c in clouds]),
        label=np.concatenate([c.cloud.label for c in clouds]).astype(np.int16),
        object_id=np.concatenate([c.object_id for c in clouds]),
        frame_offsets=np.concatenate([[0], np.cumsum([len(c) for c in clouds])]),
        class_names=np.array(clouds[0].class_names),
        pick_xyz=steps[:, 0:3], pick_quat=steps[:, 3:7], place_xyz=steps[:, 7:10], place_quat=steps[:, 10:14],
        rewards=np.array(episode.rewards), score=episode.score, success=episode.success,
        **object_metadata(objects), **first_steps,
    )
    return path


def evaluate(args: argparse.Namespace) -> dict:
    planner = make_planner(args.planner, args.steps, args.scheduler, args.seed, args.snap_radius,
                           args.seg_checkpoint, args.device)
    if args.env == "lohoravens" and args.planner != "oracle" and args.seg_checkpoint is None:
        raise ValueError("LoHoRavens labels no points: give --seg-checkpoint for a learned planner")
    results = {}
    for name in _task_names(args):
        stats = getattr(planner, "start_task", lambda: None)()
        with _make_env(args, name) as env:
            bridge = RavensBridge(env, voxel_size=getattr(planner, "voxel_size", None))
            episodes = []
            for index in range(args.episodes):
                episodes.append(run_episode(bridge, args.seed + index, planner, keep_observations=index == 0))
                if stats is not None:
                    stats.seconds["execute"].extend(episodes[-1].execute_seconds)
                print(f"  {name} seed {episodes[-1].seed}: "
                      f"{'success' if episodes[-1].success else 'failure (' + episodes[-1].failure + ')'}, "
                      f"score {episodes[-1].score:.2f}, {len(episodes[-1].steps)} steps", flush=True)
            pictures = _draw_episode(episodes[0], bridge, args.out / f"{name}")
            counts = env_counts(env)
        results[name] = {**summarize(episodes), **pictures, "seeds": [args.seed, args.seed + args.episodes - 1],
                         **counts}
        if stats is not None:
            results[name].update(stats.summary())
        print(f"{name}: success {results[name]['success_rate']:.3f}, mean score {results[name]['mean_score']:.3f} "
              f"over {len(episodes)} episodes ({args.env}, {args.split}); failures {results[name]['failures']}")
        if note := unscorable_note(results[name]):
            print(f"{name}: {note}")
    return {
        "ok": True, "env": args.env, "planner": args.planner, "seg_checkpoint": _text(args.seg_checkpoint),
        "steps": args.steps, "snap_radius": args.snap_radius, "split": args.split, "seed": args.seed,
        "tasks": results,
        "success_rate": float(np.mean([r["success_rate"] for r in results.values()])),
        "mean_score": float(np.mean([r["mean_score"] for r in results.values()])),
    }


def _text(value) -> str | None:
    return None if value is None else str(value)


def _draw_episode(episode: Episode, bridge: RavensBridge, stem: Path) -> dict:
    """The first frame (first camera) with every executed step, and a contact sheet of the
    episode with each frame showing the step about to be taken."""
    camera = bridge.cameras[0]
    frames = [obs["color"][0] for obs in episode.observations if obs and len(obs.get("color", ()))]
    if not frames:
        return {}
    first = save_png(annotate_steps(frames[0], camera, episode.steps), f"{stem}_first_frame.png")
    tiles = [annotate_steps(frame, camera, episode.steps[i:i + 1]) for i, frame in enumerate(frames)]
    sheet = save_png(contact_sheet(tiles), f"{stem}_episode.png")
    return {"first_frame_png": str(first), "contact_sheet_png": str(sheet)}
