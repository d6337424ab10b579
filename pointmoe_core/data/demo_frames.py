"""Planner training frames from the demo folders ``pointmoe sim demos`` writes.

Each demo episode holds the fused cloud before every step and the steps the oracle executed.
Because the planners re-plan after every executed step (closed loop), every frame is a sample:
the cloud at frame k, the instruction, and the steps k..end still to do. Objects come from the
per-point PyBullet body ids, with the table and the robot left out as background
(``object_instances``, which the sim bridge node and ``sim eval`` use on live clouds too).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..common.pose_sequence import PoseSequence

BACKGROUND_CLASSES = ("table", "robot")


@dataclass
class DemoFrame:
    """One training sample: a scene cloud, its instruction and the steps left to do from it."""

    xyz: np.ndarray  # (N, 3) float32, metres
    rgb: np.ndarray  # (N, 3) uint8
    instance_ids: np.ndarray  # (N,) body id, -1 for background
    instruction: str
    remaining: PoseSequence
    task: str = ""
    # (K, pick|place, xyz) metres: every step that could come first, the demo's among them
    # (``sim.oracle.first_step_options``); None where the demo did not record them
    first_steps: np.ndarray | None = None


def object_instances(label: np.ndarray, object_id: np.ndarray, class_names: Sequence[str],
                     background: Sequence[str] = BACKGROUND_CLASSES) -> np.ndarray:
    """Per-point instance ids for the scene encoder: the body id, or -1 on background classes
    and unlabelled points."""
    background_ids = [i for i, name in enumerate(class_names) if name in background]
    return np.where((label >= 0) & ~np.isin(label, background_ids), object_id, -1)


def iter_demo_frames(demo_dir: str | Path, background: Sequence[str] = BACKGROUND_CLASSES
                     ) -> Iterator[tuple[dict[str, Any], Any, int, DemoFrame]]:
    """``(index entry, open npz, frame index, DemoFrame)`` for every frame that still has steps to
    do, episode by episode as ``index.json`` lists them; the npz is open while its frames are yielded,
    for readers that want more of it (the 3D-MoE trainer reads the object metadata)."""
    demo_dir = Path(demo_dir)
    index = json.loads((demo_dir / "index.json").read_text())
    for entry in index["episodes"]:
        with np.load(demo_dir / entry["file"]) as demo:
            class_names = [str(name) for name in demo["class_names"]]
            instance_ids = object_instances(demo["label"], demo["object_id"], class_names, background)
            steps = [(demo["pick_xyz"][i], demo["pick_quat"][i], demo["place_xyz"][i], demo["place_quat"][i])
                     for i in range(len(demo["pick_xyz"]))]
            offsets = demo["frame_offsets"]
            options = demo["option_xyz"] if "option_xyz" in demo else None
            option_offsets = demo["option_offsets"] if options is not None else None
            for k in range(len(steps)):
                points = slice(offsets[k], offsets[k + 1])
                remaining = PoseSequence.from_ravens_actions(
                    [{"pose0": s[:2], "pose1": s[2:]} for s in steps[k:]], instruction=str(demo["instruction"]),
                    planner="oracle")
                first_steps = None if options is None else options[option_offsets[k]:option_offsets[k + 1]]
                yield entry, demo, k, DemoFrame(demo["xyz"][points], demo["rgb"][points], instance_ids[points],
                                                str(demo["instruction"]), remaining, str(demo["task"]), first_steps)


def load_demo_frames(demo_dir: str | Path, background: Sequence[str] = BACKGROUND_CLASSES) -> list[DemoFrame]:
    """Every frame that still has steps to do, from the episodes listed in ``index.json``."""
    return [frame for *_, frame in iter_demo_frames(demo_dir, background)]
