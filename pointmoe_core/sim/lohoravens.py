"""A user's LoHoRavens (or Google Ravens) checkout as an environment the bridge can drive.

LoHoRavens (the public LoHo-Ravens repository, a CLIPort fork, package ``cliport``) and Google
Ravens (package ``ravens``, e.g. ``ravens==0.1`` from PyPI) are read from where the user put
them, never copied. Their package ``__init__`` imports agents and models (TensorFlow for Ravens,
CLIP and torch models for CLIPort), so the package is registered as a bare module over its
folder and only ``environments.environment`` and ``tasks`` are imported; what those need
(pybullet, gym, opencv, meshcat, transforms3d and, for LoHoRavens, kornia and omegaconf) must be
installed: ``pip install -e .[lohoravens]``.

``RavensTaskEnv`` holds their ``Environment`` with one task and resets it the way their own
evaluation does: a new task object per episode in the requested mode (``train``/``val``/``test``,
which picks the colour split), and the seed applied to what the layouts are really drawn from,
Python's ``random`` and NumPy's global generator, as well as to ``env.seed()`` (camera noise).
Every ``step`` adds what the episode loop reads to ``info``, computed from their own task:

* ``success``: the task's own ``done()`` (all goals met, or reward >= 0.98);
* ``score``: the episode's total reward (their ``total_reward``);
* ``timeout``: the arm timed out (their ``step`` returns ``done`` early with reward 0 and the task
  not done: a motion failure, not a planning one);
* ``step_limit``: the task's ``max_steps`` actions were used up (their eval loop's bound).

Two things in LoHoRavens at 3d5a909 are coped with here, without editing the checkout, and logged:

* its tasks call ``random.sample`` on a ``set``, which Python >= 3.11 refuses; their ``random``
  is given a ``sample`` that sorts a set first (so a layout depends only on the seed; on older
  Pythons it also depended on string hashing, i.e. on the process);
* some resets raise inside the task's own layout code (``stack-blocks-of-same-color`` tests
  ``c not in None`` when it draws no distractor zone); the layout is then drawn again from the
  same seeded stream, and ``layout_redraws`` counts how often.

One more is reported, not hidden: some layouts score a goal against another zone than the one it
targets (``put-even-blocks-in-same-color-zone`` with 8 blocks of 3 colours, the third colour even:
its goal targets the third zone but counts the blocks inside the first, of another colour), so no
plan that follows the instruction, their own oracle's included, can succeed there. After each
reset ``unscorable`` says why such a layout cannot be scored ("" for the others) and the episode
loop counts it apart; with ``repair_scoring`` the goal is scored against its own target zone
instead (``scoring_repairs`` counts those), for seeing what a planner does on those layouts.

Poses: Ravens' pick-place primitive approaches both poses along their own z axis and its oracle
sends a level gripper (yaw only). The bridge therefore sends yaw-only quaternions to these
environments (``RavensBridge(upright=True)``); see ``pointmoe_core.sim.bridge``.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import os
import random
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .objects import BLOCK_SIZES, COLORS, SceneObject
from .poses import quat_matrix

__all__ = ["ROOT_ENV_VAR", "Checkout", "CheckoutError", "RavensTaskEnv", "find_checkout", "make_env",
           "misscored_zone_goals", "scored_against_target", "task_names"]

log = logging.getLogger(__name__)

ROOT_ENV_VAR = "LOHORAVENS_ROOT"  # a LoHoRavens (or Ravens) checkout, when not given by argument
TASK_ENV_VAR = "LOHORAVENS_TASK"
MODE_ENV_VAR = "LOHORAVENS_MODE"
REPAIR_ENV_VAR = "LOHORAVENS_REPAIR_SCORING"  # "1": score a goal against its own target zone
ASSETS_ENV_VAR = "RAVENS_ASSETS"  # Google Ravens' URDF folder (its PyPI wheel ships none)
# the LoHoRavens tasks whose success we measure (README): stack-block-in-absolute-area is left out,
# as its own oracle cannot score it (goal heights 0.08-0.16 m against blocks resting at 0.02-0.03 m)
LOHORAVENS_TASKS = ("pick-and-place-primitive", "put-block-into-matching-bowl", "put-even-blocks-in-same-color-zone",
                    "stack-blocks-of-same-color")
MODES = ("train", "val", "test")
MAX_LAYOUT_DRAWS = 10
# extents of the bowl.urdf and zone.urdf meshes at their URDF scales: a 11.4 cm bowl 3.5 cm tall
# (its mesh lies off the link origin, by about 2.5 cm), and a 12 cm square outline 6 mm wide,
# whatever zone size the task asked for
MESH_DIMS = {"bowl": (0.114, 0.114, 0.035), "zone": (0.12, 0.12, 0.001)}
# the <robot name> of the Ravens/LoHoRavens URDFs -> our object kinds (sim.objects.KINDS)
URDF_KINDS = {"box.urdf": "block", "bowl.urdf": "bowl", "zone.urdf": "zone", "workspace.urdf": "table",
              "plane": "table", "ur5": "robot", "suction-base.urdf": "robot", "suction-head.urdf": "robot"}
# LoHoRavens' reset reads ``record_cfg['blender_render']``: it must be a dict, even when not recording
_NO_RECORDING = {"save_video": False, "blender_render": False}


class CheckoutError(RuntimeError):
    """The path holds no Ravens-family checkout, or one that cannot be used as it is."""


@dataclass(frozen=True)
class Checkout:
    """Where a Ravens-family package lives: its name (``cliport`` for LoHoRavens, ``ravens``), its
    folder, and the assets folder its ``Environment`` loads URDFs from."""

    package: str
    package_dir: Path
    assets_root: Path

    @property
    def is_lohoravens(self) -> bool:
        return self.package == "cliport"


def find_checkout(root: str | os.PathLike | None = None, assets_root: str | os.PathLike | None = None) -> Checkout:
    """The checkout at ``root`` (default: ``$LOHORAVENS_ROOT``): a folder holding ``cliport/`` or
    ``ravens/``, or that package folder itself. Google Ravens needs ``assets_root`` (default
    ``$RAVENS_ASSETS``): its wheel has no URDFs."""
    root = root or os.environ.get(ROOT_ENV_VAR)
    if not root:
        raise CheckoutError(f"no LoHoRavens checkout given: pass its path (--lohoravens-root) or set ${ROOT_ENV_VAR}")
    root = Path(root).expanduser().resolve()
    candidates = [root / name for name in ("cliport", "ravens")] + [root]
    for package_dir in candidates:
        if (package_dir / "environments" / "environment.py").is_file() and (package_dir / "tasks").is_dir():
            break
    else:
        raise CheckoutError(f"{root} holds no LoHoRavens or Ravens checkout "
                            "(looked for cliport/environments/environment.py and ravens/environments/environment.py)")
    package = package_dir.name
    if package == "cliport":
        assets = Path(assets_root) if assets_root else package_dir / "environments" / "assets"
    else:
        assets_root = assets_root or os.environ.get(ASSETS_ENV_VAR)
        if not assets_root:
            raise CheckoutError(f"Ravens at {package_dir} ships no URDFs: give its assets folder "
                                f"(assets_root or ${ASSETS_ENV_VAR})")
        assets = _ravens_assets_alias(Path(assets_root).expanduser().resolve())
    if not (assets / "ur5" / "ur5.urdf").is_file():
        raise CheckoutError(f"{assets} is not a Ravens assets folder (no ur5/ur5.urdf)")
    return Checkout(package, package_dir, assets)


def _ravens_assets_alias(assets: Path) -> Path:
    """A folder with every asset folder of ``assets`` and an ``assets`` alias to them: Ravens 0.1
    joins some URDF paths as ``assets/<kind>/...`` and others as ``<kind>/...``, both against
    one root."""
    if not (assets / "ur5" / "ur5.urdf").is_file():
        raise CheckoutError(f"{assets} is not a Ravens assets folder (no ur5/ur5.urdf)")
    # named by a digest of the path (str hashes differ per process): one folder per assets folder,
    # shared by every process, which may be building it at the same time
    digest = hashlib.sha1(str(assets).encode()).hexdigest()[:16]
    alias = Path(tempfile.gettempdir()) / f"pointmoe-ravens-assets-{digest}"
    alias.mkdir(exist_ok=True)
    for entry in [*assets.iterdir(), assets]:
        link = alias / ("assets" if entry == assets else entry.name)
        if not link.exists():
            try:
                link.symlink_to(entry, target_is_directory=entry.is_dir())
            except FileExistsError:  # made meanwhile by another process
                pass
    return alias


def import_module(checkout: Checkout, name: str) -> types.ModuleType:
    """``<package>.<name>`` from the checkout, without running the package's own ``__init__``."""
    existing = sys.modules.get(checkout.package)
    if existing is None:
        bare = types.ModuleType(checkout.package, f"{checkout.package} from {checkout.package_dir} (bare)")
        bare.__path__ = [str(checkout.package_dir)]
        sys.modules[checkout.package] = bare
    elif Path(list(existing.__path__)[0]).resolve() != checkout.package_dir:
        raise CheckoutError(f"a {checkout.package!r} package from {list(existing.__path__)[0]} is already "
                            f"imported; cannot also load {checkout.package_dir} in this process")
    try:
        module = importlib.import_module(f"{checkout.package}.{name}")
    except ImportError as error:
        raise CheckoutError(f"cannot import {checkout.package}.{name} from {checkout.package_dir}: {error} "
                            "(LoHoRavens' dependencies: pip install -e .[lohoravens])") from error
    if name == "tasks":
        _sample_sets_sorted(checkout)
    return module


class _RandomSortingSets(types.ModuleType):
    """Python's ``random`` for task modules written for Python < 3.11, whose ``random.sample``
    still took a set: the set is sorted first. Everything else is the real module, so seeding
    ``random`` seeds this too."""

    def __init__(self) -> None:
        super().__init__("random")

    def __getattr__(self, name: str) -> Any:
        return getattr(random, name)

    @staticmethod
    def sample(population, k, **kwargs):
        if isinstance(population, (set, frozenset)):
            population = sorted(population)
        return random.sample(population, k, **kwargs)


def _sample_sets_sorted(checkout: Checkout) -> None:
    if sys.version_info < (3, 11):
        return
    prefix = f"{checkout.package}.tasks."
    patched = [name for name, module in list(sys.modules.items())
               if name.startswith(prefix) and getattr(module, "random", None) is random]
    for name in patched:
        sys.modules[name].random = _RandomSortingSets()
    if patched:
        log.info("%s: its tasks call random.sample on sets, which Python %d.%d refuses; they get a "
                 "random.sample that sorts a set first (%d task modules)", checkout.package_dir,
                 *sys.version_info[:2], len(patched))


def task_names(checkout: Checkout) -> list[str]:
    """The task names the checkout registers (its ``tasks.names``)."""
    return sorted(import_module(checkout, "tasks").names)


class RavensTaskEnv:
    """A Ravens-family ``Environment`` with one named task, seeded and scored as in their eval.

    Attributes not defined here (``agent_cams``, ``render_camera``, ``task``, ``info``, ...) are
    the wrapped environment's, so their own oracle (``env.task.oracle(env)``) works through it.
    """

    def __init__(self, checkout: Checkout, task: str, mode: str = "test", repair_scoring: bool = False):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        registry = import_module(checkout, "tasks").names
        if task not in registry:
            raise ValueError(f"{checkout.package_dir} has no task {task!r}; it has: {', '.join(sorted(registry))}")
        environment = import_module(checkout, "environments.environment").Environment
        import pybullet

        if pybullet.isConnected(0):
            # Ravens sends every PyBullet call to the default connection: it would drive that world
            raise CheckoutError("PyBullet's default connection is already in use in this process (another "
                                "Ravens env, or a TabletopEnv): close it before making a Ravens env")
        self.checkout, self.task_name, self.mode = checkout, task, mode
        self.task_class = registry[task]
        kwargs = {"record_cfg": dict(_NO_RECORDING)} if checkout.is_lohoravens else {}
        self.env = environment(str(checkout.assets_root), disp=False, **kwargs)
        self._seed: int | None = None
        self.layout_redraws = 0
        self.repair_scoring, self.scoring_repairs, self.unscorable = repair_scoring, 0, ""
        self.steps, self.total_reward = 0, 0.0
        self._segm: dict[int, np.ndarray] = {}
        self._objects: dict[int, SceneObject] | None = None  # per episode, from the first use
        self._render = self.env.render_camera
        self.env.render_camera = self._render_keeping_segmentation

    def _render_keeping_segmentation(self, config: dict, *args, **kwargs):
        """Their renderer, noting the segmentation image it already makes (and their observations
        drop) for each agent camera, so observations can carry ``segm`` as ours do."""
        color, depth, segm = self._render(config, *args, **kwargs)
        self._segm[id(config)] = segm
        return color, depth, segm

    def _with_segmentation(self, obs: dict) -> dict:
        if not obs or not len(obs.get("color", ())):
            return obs  # Ravens' step after an arm timeout returns no images
        segms = [self._segm.get(id(config)) for config in self.env.agent_cams]
        if any(segm is None for segm in segms):
            return obs
        # LoHoRavens keeps the low byte of the body id: 255 is "no body"
        segms = tuple(np.where(np.asarray(segm) == 255, -1, np.asarray(segm)).astype(np.int32) for segm in segms)
        return {**obs, "segm": segms}

    @property
    def objects(self) -> dict[int, SceneObject]:
        """Every body as one of our ``SceneObject`` s (kind, colour, block size, extent), from its
        URDF name, colour and box size, as ``TabletopEnv.objects``: the ground truth of the fused
        cloud's labels and of the demos' object lists. Bodies of other URDFs are left out. Read once
        per episode: what a body is does not change, only where it is (``object_pose``)."""
        if self._objects is None:
            self._objects = self._read_objects()
        return self._objects

    @staticmethod
    def _read_objects() -> dict[int, SceneObject]:
        import pybullet

        palette = np.array(list(COLORS.values()))
        objects = {}
        for index in range(pybullet.getNumBodies()):
            body = pybullet.getBodyUniqueId(index)
            kind = URDF_KINDS.get(pybullet.getBodyInfo(body)[1].decode())
            if kind is None:
                continue
            shape = pybullet.getVisualShapeData(body)[0]
            dims = MESH_DIMS.get(kind) or tuple(float(v) for v in shape[3])  # a block's box size
            color = size = None
            if kind in ("block", "bowl", "zone"):
                rgb = np.array(shape[7][:3])
                color = list(COLORS)[int(np.argmin(np.linalg.norm(palette - rgb, axis=1)))]
            if kind == "block":
                size = min(BLOCK_SIZES, key=lambda name: abs(BLOCK_SIZES[name] - min(dims)))
            objects[body] = SceneObject(body, kind, dims, color, size)
        return objects

    @property
    def class_ids(self) -> dict[int, int]:
        """Body id -> class id of ``sim.objects.SEMANTIC_CLASSES``."""
        return {body: obj.class_id for body, obj in self.objects.items()}

    def object_pose(self, body: int) -> tuple[np.ndarray, np.ndarray]:
        """The pose of the body's link frame, where the task placed it (PyBullet reports the
        centre of mass, which Ravens' bowl and zone URDFs put 2 cm above and 1 cm beside it)."""
        import pybullet

        position, orientation = pybullet.getBasePositionAndOrientation(body)
        offset = pybullet.getDynamicsInfo(body, -1)[3]
        position = np.array(position) - quat_matrix(orientation) @ np.array(offset)
        return position, np.array(orientation)

    def __getattr__(self, name: str) -> Any:
        if name == "env":  # not set yet: construction failed part-way
            raise AttributeError(name)
        return getattr(self.env, name)

    def seed(self, seed: int | None = None) -> int | None:
        """Seed the next ``reset``: its layout, colours and camera noise."""
        self._seed = seed
        return seed

    def reset(self) -> dict:
        """A new task object in ``mode``, then their ``Environment.reset``; redraws a layout whose
        own code raised (at most ``MAX_LAYOUT_DRAWS`` times, from the same seeded stream)."""
        if self._seed is not None:
            random.seed(self._seed)
            np.random.seed(self._seed)
            self.env.seed(self._seed)
        for draw in range(MAX_LAYOUT_DRAWS):
            task = self.task_class()
            task.mode = self.mode
            self.env.set_task(task)
            try:
                obs = self.env.reset()
            except Exception as error:  # their layout code; anything it raises means "draw again"
                self.layout_redraws += 1
                log.warning("%s (seed %s): its reset raised %s: %s; drawing the layout again",
                            self.task_name, self._seed, type(error).__name__, error)
                continue
            self.steps, self.total_reward, self._objects = 0, 0.0, None
            self._check_scoring()
            return self._with_segmentation(obs)
        raise RuntimeError(f"{self.task_name}: {MAX_LAYOUT_DRAWS} layouts in a row raised in the task's own reset")

    def _check_scoring(self) -> None:
        """Find goals scored against another zone than their target; repair or report them."""
        zones = {body: (self.object_pose(body)[0][:2], obj.color) for body, obj in self.objects.items()
                 if obj.kind == "zone"}
        problems = misscored_zone_goals(self.env.task.goals, zones)
        why = "; ".join(f"goal {index} {what}" for index, what in problems)
        self.unscorable = "" if self.repair_scoring else why
        if why and self.repair_scoring:
            goals = self.env.task.goals
            for index, _ in problems:
                goals[index] = scored_against_target(goals[index])
            self.scoring_repairs += 1
            log.warning("%s (seed %s): %s; scoring it against its target zone (repair_scoring)",
                        self.task_name, self._seed, why)
        elif why:
            log.warning("%s (seed %s): %s: no plan that follows the instruction can succeed on this layout, "
                        "counted as unscorable", self.task_name, self._seed, why)

    @property
    def max_steps(self) -> int:
        return int(self.env.task.max_steps)

    def get_lang_goal(self) -> str:
        getter = getattr(self.env, "get_lang_goal", None)  # LoHoRavens; Google Ravens has no language
        return str(getter()) if callable(getter) else ""

    def step(self, action: dict | None = None) -> tuple[dict, float, bool, dict]:
        before = self._rigid_positions()
        wanted = self._goal_objects()
        obs, reward, done, info = self.env.step(action)
        info = dict(info)
        if action is not None:
            self.steps += 1
            self.total_reward += float(reward)
            moved = self._moved_object(before)
            info.update(picked=moved is not None, picked_object=moved,
                        picked_goal_object=moved in wanted if moved is not None else None)
        task_done = bool(self.env.task.done())
        step_limit = not done and action is not None and self.steps >= self.max_steps
        info.update(success=task_done, score=self.total_reward, timeout=bool(done and not task_done),
                    step_limit=step_limit, lang_goal=self.get_lang_goal())
        return self._with_segmentation(obs), float(reward), bool(done or step_limit), info

    def _rigid_positions(self) -> dict[int, np.ndarray]:
        import pybullet

        return {body: np.array(pybullet.getBasePositionAndOrientation(body)[0])
                for body in self.env.obj_ids.get("rigid", ())}

    def _goal_objects(self) -> set[int]:
        """Bodies the task's current goal is about (Ravens' goals: ``(objects, matches, ...)``)."""
        goals = getattr(self.env.task, "goals", None) or []
        return {int(entry[0]) for entry in goals[0][0]} if goals else set()

    def _moved_object(self, before: dict[int, np.ndarray]) -> int | None:
        """The rigid body the step carried furthest (more than 2 cm), i.e. the one it picked."""
        after = self._rigid_positions()
        moved = {body: float(np.linalg.norm(after[body] - xyz)) for body, xyz in before.items() if body in after}
        body = max(moved, key=moved.get, default=None)
        return body if body is not None and moved[body] > 0.02 else None

    def close(self) -> None:
        import pybullet

        if pybullet.isConnected():
            pybullet.disconnect()

    def __enter__(self) -> RavensTaskEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


ZONE_METRICS = ("zone", "zone_with_z_match")


def misscored_zone_goals(goals: list[tuple], zones: dict[int, tuple[np.ndarray, str]],
                         tolerance: float = 0.005) -> list[tuple[int, str]]:
    """The Ravens goals ``(objects, matches, targets, replace, rotations, metric, params,
    max_reward)`` whose zone scorer (``params = (object points, [(zone pose, zone size)])``)
    counts their objects inside another zone body than the one their target pose is on:
    ``(index, what)`` each. ``zones``: zone body -> (x, y of its link frame, colour). A goal
    whose target or scored zone is no zone body (an area named in words) is left alone."""
    def zone_at(position) -> int | None:
        xy = np.asarray(position, float)[:2]
        return next((body for body, (at, _) in zones.items() if np.linalg.norm(at - xy) < tolerance), None)

    problems = []
    for index, goal in enumerate(goals):
        if len(goal) != 8 or goal[5] not in ZONE_METRICS or len(goal[2]) != 1 or len(goal[6][1]) != 1:
            continue
        target_zone, scored_zone = zone_at(goal[2][0][0]), zone_at(goal[6][1][0][0][0])
        if None not in (target_zone, scored_zone) and target_zone != scored_zone:
            problems.append((index, f"targets the {zones[target_zone][1]} zone but counts its blocks inside the "
                                    f"{zones[scored_zone][1]} zone"))
    return problems


def scored_against_target(goal: tuple) -> tuple:
    """A one-zone goal whose scorer counts its objects inside its own target pose's zone."""
    objects, matches, targets, replace, rotations, metric, (points, [(_, zone_size)]), max_reward = goal
    return objects, matches, targets, replace, rotations, metric, (points, [(targets[0], zone_size)]), max_reward


@functools.lru_cache(maxsize=None)
def _checkout(root: str | None, assets_root: str | None) -> Checkout:
    return find_checkout(root, assets_root)


def make_env(task: str | None = None, mode: str | None = None, root: str | None = None,
             assets_root: str | None = None, repair_scoring: bool | None = None) -> RavensTaskEnv:
    """The env for ``env_factory`` (``pointmoe_core.sim.lohoravens:make_env``): arguments left out
    come from ``$LOHORAVENS_TASK`` (default pick-and-place-primitive), ``$LOHORAVENS_MODE``
    (default test), ``$LOHORAVENS_ROOT``, ``$RAVENS_ASSETS`` and ``$LOHORAVENS_REPAIR_SCORING``
    ("1": score goals against their own target zones; default: as the checkout scores them)."""
    task = task or os.environ.get(TASK_ENV_VAR, "pick-and-place-primitive")
    mode = mode or os.environ.get(MODE_ENV_VAR, "test")
    if repair_scoring is None:
        repair_scoring = os.environ.get(REPAIR_ENV_VAR, "0") == "1"
    return RavensTaskEnv(_checkout(root, assets_root), task, mode, repair_scoring)
