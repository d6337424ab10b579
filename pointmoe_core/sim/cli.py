"""``pointmoe sim``: oracle demonstrations and closed-loop evaluation on the LoHoRavens tasks.

    pointmoe sim demos --task T --episodes N --out DIR
    pointmoe sim eval --task T --planner oracle --episodes 35 [--seed S] [--json]
    pointmoe sim eval --task T --planner CHECKPOINT [--steps N] [--scheduler flow|ddpm] ...

``demos`` keeps only successful oracle episodes, one ``.npz`` each: the fused cloud of every
observation (xyz, rgb, semantic label, object id, split by ``frame_offsets``), the instruction,
the executed pose sequence and the rewards; ``index.json`` lists them. ``eval`` runs a planner
through the bridge, reports success rate and mean score per task, and draws the first frame with
the executed pick -> place arrows and a contact sheet of the first episode. The planner is the
oracle or a Pose-DiT checkpoint (file or checkpoint directory), which runs closed loop: after
every executed step it plans again from the new fused cloud and executes only the first step.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .bridge import RavensBridge
from .env import EnvConfig, TabletopEnv
from .language import ObjectFact, object_metadata, scene_objects
from .objects import SEMANTIC_CLASSES
from .oracle import Oracle
from .pictures import annotate_steps, contact_sheet, save_png
from .poses import ActionRefused, PoseStep
from .tasks import TASKS

if TYPE_CHECKING:
    from pointmoe_core.plan.planner import PoseDiTPlanner

Planner = Callable[[RavensBridge], dict | None]
SCHEDULER_NAMES = {"flow": "rectified_flow", "ddpm": "ddpm"}  # --scheduler -> PoseDiTPlannerConfig.scheduler


def _image_size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    try:
        return int(height), int(width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size is HEIGHTxWIDTH, e.g. 480x640, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    demos = actions.add_parser("demos", help="write successful oracle episodes (clouds, labels, poses)")
    evaluate = actions.add_parser("eval", help="success rate and mean score of a planner per task")
    for sub, episodes, split in ((demos, 10, "train"), (evaluate, 35, "test")):
        sub.add_argument("--task", action="append", required=True, choices=[*TASKS, "all"],
                         help="LoHoRavens task name (repeatable), or 'all'")
        sub.add_argument("--episodes", type=int, default=episodes, help="episodes per task")
        sub.add_argument("--seed", type=int, default=0, help="seed of the first episode (then +1 each)")
        sub.add_argument("--split", choices=("train", "test"), default=split, help="colour split")
        sub.add_argument("--image-size", type=_image_size, default=(480, 640), metavar="HxW",
                         help="camera images (intrinsics scale with them)")
        sub.add_argument("--assets-root", help="Ravens/LoHoRavens assets folder: use the UR5 arm")
    demos.add_argument("--out", type=Path, required=True, help="output folder")
    demos.add_argument("--append", action="store_true",
                       help="add to the episodes already listed in OUT/index.json (one data set from several runs)")
    demos.add_argument("--voxel-size", type=float, default=0.005, help="cloud voxel edge in metres (0: off)")
    evaluate.add_argument("--planner", default="oracle",
                          help="'oracle', a Pose-DiT checkpoint (file or directory) or a 3D-MoE planner folder")
    evaluate.add_argument("--steps", type=int, help="Pose-DiT sampling steps (default: the checkpoint's, "
                          "4 for rectified flow, 50 for DDPM)")
    evaluate.add_argument("--scheduler", choices=sorted(SCHEDULER_NAMES),
                          help="Pose-DiT scheduler; must be the one the checkpoint was trained with (checked)")
    evaluate.add_argument("--snap-radius", type=float,
                          help="metres: snap each planned pick and place onto the nearest object centre within it "
                               "(default: the checkpoint's, 0 = off)")
    evaluate.add_argument("--out", type=Path, default=Path("demo_out/sim_eval"), help="folder for the PNGs")


def run(args: argparse.Namespace) -> dict:
    return {"demos": write_demos, "eval": evaluate}[args.action](args)


@dataclass
class Episode:
    """One closed-loop episode: the steps sent, their rewards, and (if kept) every observation."""

    task: str
    seed: int
    instruction: str
    steps: list[PoseStep] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    observations: list[dict] = field(default_factory=list)
    score: float = 0.0
    success: bool = False
    refused: str = ""  # why the bridge refused the planner's action, if it did


def oracle_planner(bridge: RavensBridge) -> dict | None:
    return Oracle(bridge.env).act()


class PoseDiTClosedLoop:
    """A Pose-DiT planner (MiniLM- or 3D-MoE-conditioned) in closed loop: a full plan from the latest observation, of which only
    the first step is executed, so that every step sees where the last one left the objects."""

    def __init__(self, planner: "PoseDiTPlanner", num_steps: int | None = None, seed: int = 0) -> None:
        import torch  # imported here, as the planner is: the oracle paths of this CLI run without torch

        self.planner, self.num_steps = planner, num_steps
        self.generator = torch.Generator().manual_seed(seed)
        self.planning_times: list[float] = []  # seconds per plan: object tokens, text and sampling

    def __call__(self, bridge: RavensBridge) -> dict | None:
        from pointmoe_core.plan.train_pose_dit import object_instances

        scene = bridge.cloud()
        instance_ids = object_instances(scene.cloud.label, scene.object_id, scene.class_names)
        plan = self.planner.plan(scene.cloud.xyz, scene.cloud.rgb, instance_ids, bridge.instruction,
                                 num_steps=self.num_steps, generator=self.generator)
        self.planning_times.append(plan.planning_time)
        return plan.to_ravens_actions()[0] if len(plan) else None


def make_planner(name: str, num_steps: int | None = None, scheduler: str | None = None, seed: int = 0,
                 snap_radius: float | None = None) -> Planner:
    """'oracle', or a Pose-DiT checkpoint (file or directory) or 3D-MoE planner folder run closed loop;
    ``snap_radius`` replaces the checkpoint's (``planner.snap_to_objects``)."""
    if name == "oracle":
        return oracle_planner
    if not Path(name).exists():
        raise ValueError(f"planner {name!r}: neither 'oracle' nor an existing Pose-DiT checkpoint or 3D-MoE planner")
    from pointmoe_core.plan.moe_planner import load_planner

    planner = load_planner(name)
    if scheduler is not None and SCHEDULER_NAMES[scheduler] != planner.config.scheduler:
        # each scheduler trains its own prediction target (velocity vs noise): a network only samples with its own
        raise ValueError(f"{name} was trained with the {planner.config.scheduler} scheduler, not {scheduler}; "
                         f"train one with planner.scheduler={SCHEDULER_NAMES[scheduler]}")
    if snap_radius is not None:
        planner.config.snap_radius = snap_radius
    return PoseDiTClosedLoop(planner, num_steps, seed)


def run_episode(bridge: RavensBridge, seed: int, planner: Planner, keep_observations: bool) -> Episode:
    """Reset with ``seed`` and let ``planner`` act until the env is done or the planner stops."""
    env: TabletopEnv = bridge.env
    env.seed(seed)
    bridge.reset()
    episode = Episode(env.task.name, seed, env.task.instruction)
    if keep_observations:
        episode.observations.append(bridge.obs)
    done = False
    while not done:
        action = planner(bridge)
        if action is None:
            break
        try:
            obs, reward, done, _ = bridge.step(action)
        except ActionRefused as error:
            episode.refused = str(error)
            break
        episode.steps.append(PoseStep(*action["pose0"], *action["pose1"]))
        episode.rewards.append(float(reward))
        if keep_observations:
            episode.observations.append(obs)
    episode.score, episode.success = env.task.score, env.task.success
    return episode


def _task_names(args: argparse.Namespace) -> list[str]:
    return list(TASKS) if "all" in args.task else list(dict.fromkeys(args.task))


def _make_env(args: argparse.Namespace, task_name: str) -> TabletopEnv:
    return TabletopEnv(TASKS[task_name](split=args.split),
                       EnvConfig(image_size=args.image_size, assets_root=args.assets_root))


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
                episode = run_episode(bridge, seed, _recording_oracle(objects), keep_observations=True)
                if not episode.success:
                    continue
                # the oracle saw every frame but the last, after the final step: that is the scene now
                objects = objects[:len(episode.steps)] + [scene_objects(env)]
                path = _save_episode(args.out / name / f"{name}-{seed:06d}.npz", episode,
                                     [bridge.cloud(obs) for obs in episode.observations], objects, args.split)
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


def _recording_oracle(objects: list[list[ObjectFact]]) -> Planner:
    """The oracle, noting the scene's objects at every frame it plans from (for language data)."""

    def planner(bridge: RavensBridge) -> dict | None:
        objects.append(scene_objects(bridge.env))
        return oracle_planner(bridge)

    return planner


def _save_episode(path: Path, episode: Episode, clouds, objects: list[list[ObjectFact]], split: str) -> Path:
    """One demo file; ``objects`` (one list per frame) becomes the ``object_*`` metadata arrays."""
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
        **object_metadata(objects),
    )
    return path


def evaluate(args: argparse.Namespace) -> dict:
    planner = make_planner(args.planner, args.steps, args.scheduler, args.seed, args.snap_radius)
    results = {}
    for name in _task_names(args):
        with _make_env(args, name) as env:
            bridge = RavensBridge(env)
            episodes = [run_episode(bridge, args.seed + i, planner, keep_observations=i == 0)
                        for i in range(args.episodes)]
            pictures = _draw_episode(episodes[0], env, args.out / f"{name}")
        results[name] = {
            "episodes": len(episodes),
            "success_rate": float(np.mean([e.success for e in episodes])),
            "mean_score": float(np.mean([e.score for e in episodes])),
            "mean_steps": float(np.mean([len(e.steps) for e in episodes])),
            "refused": sum(bool(e.refused) for e in episodes),
            **pictures,
        }
        if isinstance(planner, PoseDiTClosedLoop):
            # the median: the first plan also loads the text model
            results[name]["median_plan_seconds"] = float(np.median(planner.planning_times))
            planner.planning_times.clear()
        print(f"{name}: success {results[name]['success_rate']:.3f}, mean score "
              f"{results[name]['mean_score']:.3f} over {len(episodes)} episodes ({args.split} colours)")
    return {
        "ok": True, "planner": args.planner, "steps": args.steps, "snap_radius": args.snap_radius, "split": args.split,
        "tasks": results,
        "success_rate": float(np.mean([r["success_rate"] for r in results.values()])),
        "mean_score": float(np.mean([r["mean_score"] for r in results.values()])),
    }


def _draw_episode(episode: Episode, env: TabletopEnv, stem: Path) -> dict:
    """The first frame (front camera) with every executed step, and a contact sheet of the
    episode with each frame showing the step about to be taken."""
    camera = env.cameras[0]
    frames = [obs["color"][0] for obs in episode.observations]
    first = save_png(annotate_steps(frames[0], camera, episode.steps), f"{stem}_first_frame.png")
    tiles = [annotate_steps(frame, camera, episode.steps[i:i + 1]) for i, frame in enumerate(frames)]
    sheet = save_png(contact_sheet(tiles), f"{stem}_episode.png")
    return {"first_frame_png": str(first), "contact_sheet_png": str(sheet)}
