"""The product demo: simulator -> PointCloud2 -> Point-MoE segmentation -> planner -> simulator.

Every planning step of every episode goes through the functions the ROS nodes run:

1. the simulator's cameras are fused into one cloud (``RavensBridge.cloud``, as ``sim_bridge_node``);
2. the cloud, xyz and rgb only, is encoded as a ``sensor_msgs/PointCloud2`` (``msg_from_cloud``)
   and decoded again (``cloud_from_msg``), so nothing of the simulator's ground truth travels on;
3. ``perception.segment_cloud`` labels it with the Point-MoE ``Segmenter`` (``perception_node``);
4. ``instances_from_segmentation`` splits the predicted classes into objects: the planner sees
   these, never the simulator's body ids;
5. the planner (``load_planner``: Pose-DiT or 3D-MoE, as ``planner_node``) returns a
   ``PoseSequence``, whose first step goes through the bridge to the env (closed loop: the next
   step is planned from the scene that step left), until the task is done or its step limit.

The sim's ground-truth classes only score the segmentation (mIoU, ``class_mapping``). Everything
that crosses a ROS topic in the live pipeline is recorded in one rosbag2 under the topic names
the nodes publish (``TOPICS``), so ``ros2 bag play`` replays the run into RViz.
"""
from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from rosbags.interfaces import Nodetype

from pointmoe_core.common.pose_sequence import PoseSequence
from pointmoe_core.data.demo_frames import BACKGROUND_CLASSES
from pointmoe_core.data.sim_demos import sim_class_name
from pointmoe_core.io import BagWriter, PointCloud, cloud_from_msg, msg_from_cloud, new_bag_path
from pointmoe_core.io.ros_types import pointmoe_typestore
from pointmoe_core.plan.instances import instances_from_segmentation
from pointmoe_core.seg.perception import PerceptionResult, info_fields, segment_cloud
from pointmoe_core.sim.bridge import RavensBridge
from pointmoe_core.sim.cameras import TOP, CameraConfig
from pointmoe_core.sim.episode import env_counts, open_env, run_episode, summarize, unscorable_note
from pointmoe_core.sim.observe import CROP_BOUNDS, SceneCloud
from pointmoe_core.sim.pictures import annotate_steps, project, save_png
from pointmoe_core.train.metrics import confusion_matrix, scores

if TYPE_CHECKING:
    from pointmoe_core.plan.interface import Planner

# the voxel grid of `pointmoe sim demos`, which the default checkpoints were trained on; the
# instance clustering's eps (1 cm) assumes it
VOXEL_SIZE = 0.005
FRAME_ID = "map"  # the fixed frame of config/pointmoe.rviz
FRAME_PERIOD_NS = 500_000_000  # bag time between two planning steps, as sim_bridge_node's 2 Hz
STAGES = ("fuse", "encode", "decode", "segment", "instances", "plan", "execute")
# topic names of the nodes (sim.launch.py); config/pointmoe.rviz subscribes to the perception and
# planner ones as they are, and shows the input cloud from /cloud_publisher/points (see README)
TOPICS = {
    "points": "/sim_bridge_node/output/points",
    "instruction": "/sim_bridge_node/output/instruction",
    "segmented": "/perception_node/output/segmented",
    "experts": "/perception_node/output/experts",
    "info": "/perception_node/output/info",
    "pose_sequence": "/planner_node/output/pose_sequence",
    "poses": "/planner_node/output/poses",
}
TOP_VIEW_PIXEL = 0.002  # metres per pixel of the plan picture


def class_mapping(checkpoint_classes: Sequence[str], sim_classes: Sequence[str]
                  ) -> tuple[tuple[str, ...], np.ndarray]:
    """The vocabulary to segment sim clouds with, and each sim class id -> its index in it.

    A sim class (``"smaller red block"``) maps to the first of its exact name, its colour form
    (``"red block"``) and its kind (``"block"``) that the checkpoint's class table holds, so a
    checkpoint trained with coarse classes (table, robot, block, bowl, zone) and one trained with
    coloured ones both work. The vocabulary is the mapped names in checkpoint order (a mixed-domain
    table also lists indoor and outdoor classes, which a tabletop never shows). Sim classes without
    a match get -1 (not scored); when none matches, the vocabulary is the whole class table and the
    lookup is all -1, so no mIoU can be measured.
    """
    known = set(checkpoint_classes)
    matched = {}
    for sim_name in sim_classes:
        candidates = (sim_name, sim_class_name(sim_name, "color"), sim_class_name(sim_name, "coarse"))
        matched[sim_name] = next((name for name in candidates if name in known), None)
    vocabulary = tuple(dict.fromkeys(name for name in checkpoint_classes if name in matched.values()))
    if not vocabulary:
        return tuple(dict.fromkeys(checkpoint_classes)), np.full(len(sim_classes), -1, np.int64)
    index = {name: i for i, name in enumerate(vocabulary)}
    return vocabulary, np.array([index.get(matched[name], -1) for name in sim_classes], np.int64)


def ros_message(typestore, msgtype: str, **fields: Any) -> Any:
    """A rosbags message of ``msgtype`` with ``fields`` set and every other field at its ROS
    default (zero, empty, nested defaults): rosbags' classes take no defaults themselves."""
    cls = typestore.types[msgtype]
    _, definitions = typestore.fielddefs[msgtype]
    for name, (node_type, spec) in definitions:
        if name not in fields:
            fields[name] = _default_value(typestore, node_type, spec)
    return cls(**fields)


_NUMPY_TYPES = {"bool": "bool", "byte": "uint8", "char": "uint8"}  # ROS names numpy spells otherwise


def _default_value(typestore, node_type: Nodetype, spec: Any) -> Any:
    if node_type == Nodetype.BASE:  # spec: (type name, string bound)
        kind = spec[0]
        return "" if kind in ("string", "wstring") else False if kind == "bool" else (
            0.0 if kind.startswith("float") else 0)
    if node_type == Nodetype.NAME:  # a nested message
        return ros_message(typestore, spec)
    (inner_type, inner_spec), length = spec  # a fixed-length ARRAY or a SEQUENCE
    count = length if node_type == Nodetype.ARRAY else 0
    if inner_type == Nodetype.BASE and inner_spec[0] not in ("string", "wstring"):  # numbers: rosbags wants numpy
        return np.zeros(count, _NUMPY_TYPES.get(inner_spec[0], inner_spec[0]))
    return [_default_value(typestore, inner_type, inner_spec) for _ in range(count)]


class RunRecorder:
    """Writes the run's messages to a rosbag2 with the project's typestore, so the bag carries
    ``pointmoe_ros/msg/PoseSequence`` (and ``SegmentationInfo``) beside the Jazzy types."""

    def __init__(self, path: Path) -> None:
        self.typestore = pointmoe_typestore()
        self.bag = BagWriter(path, typestore=self.typestore)
        self.counts: dict[str, int] = defaultdict(int)

    def __enter__(self) -> "RunRecorder":
        self.bag.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bag.__exit__(*exc)

    def message(self, msgtype: str, **fields: Any) -> Any:
        return ros_message(self.typestore, msgtype, **fields)

    def write(self, key: str, msg: Any, t_ns: int) -> None:
        self.bag.write(TOPICS[key], msg, t_ns)
        self.counts[TOPICS[key]] += 1

    def pose(self, xyz: Sequence[float], quat: Sequence[float]) -> Any:
        return self.message("geometry_msgs/msg/Pose",
                            position=self.message("geometry_msgs/msg/Point", **dict(zip("xyz", map(float, xyz)))),
                            orientation=self.message("geometry_msgs/msg/Quaternion",
                                                     **dict(zip("xyzw", map(float, quat)))))

    def write_plan(self, plan: PoseSequence, header: Any, t_ns: int) -> None:
        """The plan as planner_node publishes it: a PoseSequence and a PoseArray (pick 1, place 1, ...)."""
        steps = [self.message("pointmoe_ros/msg/PickPlace", pick=self.pose(s.pick_xyz, s.pick_quat),
                              place=self.pose(s.place_xyz, s.place_quat), score=float(s.score))
                 for s in plan.steps]
        self.write("pose_sequence", self.message(
            "pointmoe_ros/msg/PoseSequence", header=header, instruction=plan.instruction, steps=steps,
            planner=plan.planner, planning_time=float(plan.planning_time)), t_ns)
        poses = [pose for step in steps for pose in (step.pick, step.place)]
        self.write("poses", self.message("geometry_msgs/msg/PoseArray", header=header, poses=poses), t_ns)


@dataclass
class FrameOutput:
    """What one planning step produced, kept for the pictures of a task's first frame."""

    cloud: PointCloud  # decoded from the message: xyz and camera rgb
    perception: PerceptionResult
    plan: PoseSequence


@dataclass
class TaskStats:
    """Accumulated over a task's episodes: segmentation confusion and per-stage seconds."""

    num_classes: int
    confusion: np.ndarray = field(init=False)  # (C, C), rows ground truth, over the vocabulary
    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    first_frame: FrameOutput | None = None
    warnings: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def summary(self) -> dict:
        """Segmentation mIoU (None without ground truth), median ms per stage, warnings."""
        return {"miou": segmentation_miou(self.confusion),
                "median_ms": {stage: float(np.median(self.seconds[stage]) * 1e3) if self.seconds[stage] else None
                              for stage in STAGES},
                "warnings": sorted(self.warnings)}


class PerceivePlanAct:
    """The closed-loop planner of ``sim.episode.run_episode``: one full pass of the pipeline per
    call, returning the first step of the plan as a Ravens action (None: the planner has nothing to
    do). ``recorder`` (optional) writes every message to the run's bag; ``start_task`` starts the
    statistics of the next task."""

    voxel_size = VOXEL_SIZE  # the bridge's cloud grid this pipeline expects

    def __init__(self, segmenter, planner: Planner, vocabulary: tuple[str, ...], sim_to_vocabulary: np.ndarray,
                 expert_layer: str | None, recorder: RunRecorder | None = None, seed: int = 0) -> None:
        import torch

        self.segmenter, self.planner = segmenter, planner
        self.vocabulary, self.sim_to_vocabulary = vocabulary, sim_to_vocabulary
        self.background = [i for i, name in enumerate(vocabulary) if name in BACKGROUND_CLASSES]
        self.expert_layer, self.recorder = expert_layer, recorder
        self.generator = torch.Generator().manual_seed(seed)  # as sim eval's closed loop: CPU sampling noise
        self.frame = 0  # planning steps so far in the run: the bag's clock
        self.stats: TaskStats | None = None  # per task, from start_task

    def start_task(self) -> TaskStats:
        self.stats = TaskStats(len(self.vocabulary))
        return self.stats

    def __call__(self, bridge: RavensBridge) -> dict | None:
        stats, seconds = self.stats, self.stats.seconds
        t_ns = self.frame * FRAME_PERIOD_NS
        self.frame += 1
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            seconds[stage].append(now - clock)
            clock = now

        scene: SceneCloud = bridge.cloud()
        lap("fuse")
        msg = msg_from_cloud(PointCloud(scene.cloud.xyz, rgb=scene.cloud.rgb), header=(FRAME_ID, t_ns / 1e9),
                             msg_class="rosbags")
        lap("encode")
        cloud, kept = cloud_from_msg(msg, return_indices=True)
        lap("decode")
        perception = segment_cloud(cloud, self.segmenter, class_names=list(self.vocabulary),
                                   expert_layer=self.expert_layer, points_in=msg.width * msg.height)
        lap("segment")
        segmented = perception.segmented  # every decoded point: a decoded cloud has no NaN rows left
        instance_ids = instances_from_segmentation(segmented.xyz, segmented.label, self.background, rgb=cloud.rgb)
        lap("instances")
        plan = self.planner.plan(cloud.xyz, cloud.rgb, instance_ids, bridge.instruction, generator=self.generator)
        lap("plan")

        target = self.sim_to_vocabulary[scene.cloud.label[kept]]
        target[scene.cloud.label[kept] < 0] = -1
        stats.confusion += confusion_matrix(segmented.label, target, len(self.vocabulary))
        stats.warnings.update(perception.summary.warnings)
        if stats.first_frame is None:
            stats.first_frame = FrameOutput(cloud, perception, plan)
        if self.recorder is not None:
            self._record(msg, perception, plan, bridge.instruction, t_ns)
        return plan.to_ravens_actions()[0] if len(plan) else None

    def _record(self, msg: Any, perception: PerceptionResult, plan: PoseSequence, instruction: str,
                t_ns: int) -> None:
        recorder = self.recorder
        recorder.write("points", msg, t_ns)
        recorder.write("instruction", recorder.message("std_msgs/msg/String", data=instruction), t_ns)
        for key, cloud in (("segmented", perception.segmented), ("experts", perception.experts)):
            if cloud is not None:
                recorder.write(key, msg_from_cloud(cloud, header=msg.header, msg_class="rosbags"), t_ns)
        recorder.write("info", recorder.message("pointmoe_ros/msg/SegmentationInfo", header=msg.header,
                                                **info_fields(perception.summary)), t_ns)
        recorder.write_plan(plan, msg.header, t_ns)


def segmentation_miou(confusion: np.ndarray) -> float | None:
    """mIoU over the classes present in the ground truth (None when nothing was scored)."""
    present = confusion.sum(1) > 0
    if not present.any():
        return None
    return float(np.mean(scores(confusion)["iou"][present]))


# ---- pictures -----------------------------------------------------------------------------------
def top_view_camera() -> CameraConfig:
    """LoHoRavens' top camera lifted far up, with a long lens: a near-orthographic view that frames
    the whole crop box at ``TOP_VIEW_PIXEL`` metres per pixel (image x along world -y)."""
    height_m = 5.0
    (x0, x1), (y0, y1), _ = CROP_BOUNDS
    height, width = round((x1 - x0) / TOP_VIEW_PIXEL), round((y1 - y0) / TOP_VIEW_PIXEL)
    focal = height_m / TOP_VIEW_PIXEL
    return dataclasses.replace(TOP, position=((x0 + x1) / 2, (y0 + y1) / 2, height_m), image_size=(height, width),
                               intrinsics=(focal, 0.0, width / 2, 0.0, focal, height / 2, 0.0, 0.0, 1.0))


def top_view(cloud: PointCloud, camera: CameraConfig, splat: int = 2) -> np.ndarray:
    """The cloud's camera colours seen from above, higher points drawn over lower ones."""
    height, width = camera.image_size
    image = np.full((height, width, 3), 255, np.uint8)
    order = np.argsort(cloud.xyz[:, 2])
    pixels = np.rint(project(cloud.xyz[order], camera)).astype(np.int64)
    colors = cloud.rgb[order]
    for dv in range(-splat, splat + 1):
        for du in range(-splat, splat + 1):
            u, v = pixels[:, 0] + du, pixels[:, 1] + dv
            inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
            image[v[inside], u[inside]] = colors[inside]
    return image


def save_task_pictures(frame: FrameOutput, stem: Path, render) -> dict[str, str]:
    """Predicted classes and experts (3D renders of the segmented clouds), and the plan's
    pick -> place arrows over a top view of the scene. ``render`` is ``render_cloud_png``."""
    pictures = {"classes_png": render(frame.perception.segmented, f"{stem}_classes.png")}
    if frame.perception.experts is not None:
        pictures["experts_png"] = render(frame.perception.experts, f"{stem}_experts.png")
    camera = top_view_camera()
    pictures["plan_png"] = save_png(annotate_steps(top_view(frame.cloud, camera), camera, frame.plan.steps),
                                    f"{stem}_plan.png")
    return {key: str(path) for key, path in pictures.items()}


# ---- the run ------------------------------------------------------------------------------------
def run_pipeline(args: Any) -> dict:
    """Every task of ``args.tasks`` for ``args.episodes`` episodes; prints progress and the table,
    writes the pictures and the bag under ``args.out``; returns the summary."""
    from pointmoe_core.plan.interface import load_planner
    from pointmoe_core.seg.segmenter import Segmenter
    from pointmoe_core.sim.objects import SEMANTIC_CLASSES
    from pointmoe_core.viz.render import render_cloud_png

    out: Path = args.out
    bag_path = new_bag_path(out, "run_bag")

    print(f"loading the segmenter {args.seg_checkpoint} and the planner {args.planner} on {args.device}", flush=True)
    segmenter = Segmenter.from_checkpoint(args.seg_checkpoint, device=args.device)
    planner = load_planner(args.planner, map_location=args.device, llm_dtype=args.llm_dtype,
                           cuda_graphs=args.cuda_graphs)
    planner.config.snap_radius = args.snap_radius
    vocabulary, sim_to_vocabulary = class_mapping(segmenter.config.class_names, SEMANTIC_CLASSES)
    scored = "sim ground truth mapped onto them by name" if (sim_to_vocabulary >= 0).any() else (
        "no sim class is in the checkpoint's class table, so no mIoU")
    print(f"segmenting with the classes {', '.join(vocabulary)}; {scored}", flush=True)

    tasks = {}
    with RunRecorder(bag_path) as recorder:
        agent = PerceivePlanAct(segmenter, planner, vocabulary, sim_to_vocabulary, args.expert_layer, recorder,
                                args.seed)
        for name in args.tasks:
            stats = agent.start_task()
            with open_env(args.env, name, args.split, args.image_size, args.assets_root, args.lohoravens_root,
                          args.repair_scoring) as env:
                bridge = RavensBridge(env, voxel_size=VOXEL_SIZE)
                episodes = []
                for index in range(args.episodes):
                    start = time.perf_counter()
                    episode = run_episode(bridge, args.seed + index, agent)
                    stats.seconds["execute"].extend(episode.execute_seconds)
                    episodes.append(episode)
                    print(f"  {name} episode {index + 1}/{args.episodes} (seed {episode.seed}): "
                          f"{'success' if episode.success else 'failure: ' + episode.failure}, "
                          f"score {episode.score:.2f}, {len(episode.steps)} steps"
                          f"{', refused: ' + episode.refused if episode.refused else ''} "
                          f"({time.perf_counter() - start:.1f} s)", flush=True)
                counts = env_counts(env)
            tasks[name] = {**summarize(episodes), **stats.summary(), **counts}
            if stats.first_frame is not None:
                tasks[name].update(save_task_pictures(stats.first_frame, out / name, render_cloud_png))
    _print_table(tasks)
    warnings = sorted(set().union(*(task["warnings"] for task in tasks.values())))
    for line in warnings:
        print(f"warning: {line}")
    pictures_ok = all({"classes_png", "experts_png", "plan_png"} <= set(task) for task in tasks.values())
    print(f"\npictures: {out}/<task>_{{classes,experts,plan}}.png  bag: {bag_path} "
          f"({sum(recorder.counts.values())} messages on {len(recorder.counts)} topics)")
    return {"ok": pictures_ok and bool(tasks), "mode": "pipeline", "env": args.env,
            "seg_checkpoint": str(args.seg_checkpoint),
            "planner": str(args.planner), "snap_radius": planner.config.snap_radius, "split": args.split,
            "seed": args.seed,
            "vocabulary": list(vocabulary), "expert_layer": args.expert_layer,
            "tasks": tasks, "bag": str(bag_path), "topics": dict(recorder.counts)}


def _print_table(tasks: dict[str, dict]) -> None:
    def cell(value: float | None, width: int, digits: int) -> str:
        return f"{'n/a':>{width}s}" if value is None else f"{value:{width}.{digits}f}"

    width = max([30, *map(len, tasks)])
    print(f"\n{'task':{width}s} {'eps':>3s} {'success':>7s} {'score':>5s} {'mIoU':>5s}   median ms: "
          + " ".join(f"{stage:>9s}" for stage in STAGES))
    for name, task in tasks.items():
        print(f"{name:{width}s} {task['episodes']:3d} {task['success_rate']:7.2f} {task['mean_score']:5.2f} "
              f"{cell(task['miou'], 5, 2)}              "
              + " ".join(cell(task["median_ms"][stage], 9, 1) for stage in STAGES))
    for name, task in tasks.items():
        if task["failures"]:
            print(f"{name} failures: " + ", ".join(f"{reason} {count}" for reason, count in task["failures"].items()))
        if note := unscorable_note(task):
            print(f"{name}: {note}")
