"""Simulator-generated language for training the 3D-MoE planner (arXiv 2501.16698).

3D-MoE's stage I aligns the projector on 3D captions ("3D-language alignment") and stage II
instruction-tunes on 3D question answering and planning. Here both come for free from the
simulator's true object list (kind, colour, block size, position): scene captions for stage 1
("a red block is left of a green bowl."), and for stage 2 question-answer pairs about counting,
colours and spatial relations, plus the next step of a task from the oracle's plan. Answers are
short and exact-match checkable ("2", "red", "yes", "pick up the red block and place it in the
red bowl."). Everything is deterministic given the ``numpy.random.Generator`` passed in.

Spatial convention, in Ravens' workspace axes (x in [0.25, 0.75] pointing away from the robot's
base, y in [-0.5, 0.5]): the scene is described as LoHoRavens' task instructions describe it,
whose "top left area" is x < 0.5, y < 0: seen from the front camera, across the table from the
robot. So "A is left of B" means A has the smaller y, "right of" the larger y; "A is behind B"
means A has the smaller x (nearer the robot's base, the top of LoHoRavens' areas) and "in front
of" the larger x. A relation is only stated when the two positions differ by more than
``RELATION_MARGIN`` along its axis; closer than that it is too close to call.

Demo files keep the object list per frame (``object_metadata`` / ``demo_objects``) so training
stages can generate this language offline.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from typing import Mapping, Sequence

import numpy as np

from .objects import COLORS
from .tasks import AREAS

LANGUAGE_KINDS = ("block", "bowl", "zone")
RELATION_MARGIN = 0.05  # metres; about one block and a gap
# relation -> (axis, sign): "A <relation> B" holds when sign * (A[axis] - B[axis]) > RELATION_MARGIN
RELATIONS: dict[str, tuple[int, float]] = {
    "left of": (1, -1.0), "right of": (1, 1.0), "behind": (0, -1.0), "in front of": (0, 1.0),
}
OPPOSITE = {"left of": "right of", "right of": "left of", "behind": "in front of", "in front of": "behind"}
METADATA_KEYS = ("object_body_ids", "object_kinds", "object_colors", "object_sizes", "object_dims",
                 "object_centres")


@dataclass(frozen=True)
class ObjectFact:
    """One object as language sees it. ``size`` is "smaller" or "bigger" for blocks, "" otherwise;
    ``centre`` is the body's position (the centre of a block or zone, the floor centre of a bowl);
    ``dims`` its extent (x, y, z); ``body_id`` the PyBullet body, the cloud's ``object_id``."""

    kind: str
    color: str
    size: str
    centre: tuple[float, float, float]
    dims: tuple[float, float, float]
    body_id: int = -1


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    kind: str  # "count", "color", "relation" or "next step"


# the object list: from a live scene, into and out of demo files ----------------------------------
def scene_objects(env) -> list[ObjectFact]:
    """The blocks, bowls and zones of a live ``TabletopEnv`` (any ``tasks.Scene``), where they are now."""
    return [ObjectFact(obj.kind, obj.color, obj.size or "", tuple(float(v) for v in env.object_pose(body)[0]),
                       tuple(float(v) for v in obj.dims), int(body))
            for body, obj in env.objects.items() if obj.kind in LANGUAGE_KINDS]


def object_metadata(frames: Sequence[Sequence[ObjectFact]]) -> dict[str, np.ndarray]:
    """Arrays for a demo file from the object list of every frame (the same objects throughout):
    per object its body id, kind, colour, size and dims (K, ...), and centres per frame (F, K, 3)."""
    first = frames[0]
    return {
        "object_body_ids": np.array([o.body_id for o in first], dtype=np.int64),
        "object_kinds": np.array([o.kind for o in first], dtype=str),
        "object_colors": np.array([o.color for o in first], dtype=str),
        "object_sizes": np.array([o.size for o in first], dtype=str),
        "object_dims": np.array([o.dims for o in first], dtype=np.float64).reshape(-1, 3),
        "object_centres": np.array([[o.centre for o in frame] for frame in frames],
                                   dtype=np.float64).reshape(len(frames), len(first), 3),
    }


def demo_objects(demo: Mapping[str, np.ndarray], frame: int) -> list[ObjectFact]:
    """The object list at ``frame`` of a demo file (``np.load`` of a ``pointmoe sim demos`` npz)."""
    missing = [key for key in METADATA_KEYS if key not in demo]
    if missing:
        raise KeyError(f"this demo file has no object metadata ({', '.join(missing)}): it was written before "
                       "`pointmoe sim demos` recorded it; write the demos again to generate language from them")
    columns = [demo[key] for key in METADATA_KEYS[:-1]] + [demo["object_centres"][frame]]
    return [ObjectFact(str(kind), str(color), str(size), tuple(float(v) for v in centre),
                       tuple(float(v) for v in dims), int(body))
            for body, kind, color, size, dims, centre in zip(*columns)]


# words for objects and relations -----------------------------------------------------------------
def object_names(objects: Sequence[ObjectFact]) -> list[str]:
    """Each object's noun phrase: "red block", or "bigger red block" when the scene has blocks
    of both sizes (otherwise the size tells nothing)."""
    with_size = len({o.size for o in objects if o.kind == "block"}) > 1
    return [" ".join(part for part in (o.size if with_size else "", o.color, o.kind) if part) for o in objects]


def relation_holds(a: ObjectFact, b: ObjectFact, relation: str) -> bool | None:
    """Whether "a <relation> b"; None when the two are too close along that axis to say."""
    axis, sign = RELATIONS[relation]
    delta = sign * (a.centre[axis] - b.centre[axis])
    return None if abs(delta) <= RELATION_MARGIN else bool(delta > 0)


def clearest_relation(a: ObjectFact, b: ObjectFact) -> str | None:
    """The true relation of a to b along the axis where they are farthest apart, if any is clear."""
    axis = int(np.argmax(np.abs(np.subtract(a.centre[:2], b.centre[:2]))))
    return next((r for r, (ax, _) in RELATIONS.items() if ax == axis and relation_holds(a, b, r)), None)


def _indefinite(name: str) -> str:
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _listing(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}"


# stage 1: captions -------------------------------------------------------------------------------
def caption(objects: Sequence[ObjectFact], rng: np.random.Generator, max_relations: int = 4) -> str:
    """What is on the table, then up to ``max_relations`` clear relations between random pairs:
    "there is a red block, a green bowl and a blue zone. a red block is left of a green bowl. ..." """
    if not objects:
        return "the table is empty."
    names = object_names(objects)
    sentences = [f"there is {_listing([_indefinite(names[i]) for i in rng.permutation(len(objects))])}."]
    pairs = list(permutations(range(len(objects)), 2))
    for index in rng.permutation(len(pairs)):
        if len(sentences) > max_relations:
            break
        i, j = pairs[index]
        relation = clearest_relation(objects[i], objects[j])
        if relation and names[i] != names[j]:  # "a red block is left of a red block" says little
            sentences.append(f"{_indefinite(names[i])} is {relation} {_indefinite(names[j])}.")
    return " ".join(sentences)


# stage 2: questions and answers ------------------------------------------------------------------
def count_question(objects: Sequence[ObjectFact], rng: np.random.Generator) -> QA:
    """ "how many blue blocks are there?" over a kind present, any colour (absent ones count 0)
    or a present one, or no colour at all."""
    kind = str(rng.choice(sorted({o.kind for o in objects})))
    choice = rng.integers(3)
    present = sorted({o.color for o in objects if o.kind == kind})
    color = "" if choice == 0 else str(rng.choice(present if choice == 1 else list(COLORS)))
    count = sum(o.kind == kind and color in ("", o.color) for o in objects)
    return QA(f"how many {f'{color} ' if color else ''}{kind}s are there?", str(count), "count")


def color_question(objects: Sequence[ObjectFact], rng: np.random.Generator) -> QA | None:
    """ "what color is the bowl?" when there is one bowl; else "what color is the bowl left of the
    red block?" for a reference object named uniquely and exactly one bowl clearly in that
    relation (and none too close to call). None when no such question exists."""
    names = object_names(objects)
    kind = str(rng.choice(sorted({o.kind for o in objects})))
    candidates = [i for i, o in enumerate(objects) if o.kind == kind]
    if len(candidates) == 1:
        return QA(f"what color is the {kind}?", objects[candidates[0]].color, "color")
    unique = [i for i, name in enumerate(names) if names.count(name) == 1]
    for ref in rng.permutation(unique):
        for relation in rng.permutation(list(RELATIONS)):
            holds = [relation_holds(objects[i], objects[ref], relation) for i in candidates if i != ref]
            if holds.count(True) == 1 and None not in holds:
                target = [i for i in candidates if i != ref][holds.index(True)]
                return QA(f"what color is the {kind} {relation} the {names[ref]}?", objects[target].color, "color")
    return None


def relation_question(objects: Sequence[ObjectFact], rng: np.random.Generator) -> QA | None:
    """ "is the red block left of the green bowl?" -> "yes" / "no", for two uniquely named objects
    and a relation that is clear between them. None when no pair qualifies."""
    names = object_names(objects)
    unique = [i for i, name in enumerate(names) if names.count(name) == 1]
    pairs = list(permutations(unique, 2))
    for index in rng.permutation(len(pairs)):
        a, b = pairs[index]
        relation = str(rng.choice(list(RELATIONS)))
        holds = relation_holds(objects[a], objects[b], relation)
        if holds is not None:
            return QA(f"is the {names[a]} {relation} the {names[b]}?", "yes" if holds else "no", "relation")
    return None


QUESTION_MAKERS = {"count": count_question, "color": color_question, "relation": relation_question}


def question_answers(objects: Sequence[ObjectFact], rng: np.random.Generator, count: int = 4) -> list[QA]:
    """Up to ``count`` distinct questions about the scene, their kinds drawn at random."""
    if not objects:
        return []
    found: dict[str, QA] = {}
    for _ in range(4 * count):  # some draws give no question or a repeated one
        if len(found) == count:
            break
        qa = QUESTION_MAKERS[str(rng.choice(list(QUESTION_MAKERS)))](objects, rng)
        if qa is not None:
            found.setdefault(qa.question, qa)
    return list(found.values())


def next_step(objects: Sequence[ObjectFact], pick_xyz: Sequence[float], place_xyz: Sequence[float]) -> str:
    """A pick-place step in words: "pick up the red block and place it in the red bowl."

    The picked object is the block nearest the pick point (in xy); the place is the topmost other
    object whose footprint holds the place point (in a bowl, on a block or zone), else the
    LoHoRavens area holding it.
    """
    names = object_names(objects)
    blocks = [i for i, o in enumerate(objects) if o.kind == "block"]
    if not blocks:
        raise ValueError("no block to pick in this scene")
    centres = np.array([o.centre[:2] for o in objects])
    picked = min(blocks, key=lambda i: np.linalg.norm(centres[i] - np.asarray(pick_xyz[:2])))
    place_distances = np.linalg.norm(centres - np.asarray(place_xyz[:2]), axis=1)
    under = [i for i, o in enumerate(objects) if i != picked and place_distances[i] <= max(o.dims[:2]) / 2]
    if under:
        target = max(under, key=lambda i: objects[i].centre[2])
        place = f"{'in' if objects[target].kind == 'bowl' else 'on'} the {names[target]}"
    else:
        area = next((name for name, ((x0, x1), (y0, y1)) in AREAS.items()
                     if x0 <= place_xyz[0] <= x1 and y0 <= place_xyz[1] <= y1), None)
        if area is None:
            raise ValueError(f"place point {tuple(place_xyz)} is outside the workspace")
        place = f"in the {area}"
    return f"pick up the {names[picked]} and place it {place}."


def next_step_qa(objects: Sequence[ObjectFact], instruction: str, pick_xyz: Sequence[float],
                 place_xyz: Sequence[float]) -> QA:
    """The task's instruction with "what is the next step?", answered by the oracle's next step."""
    return QA(f"{instruction} what is the next step?", next_step(objects, pick_xyz, place_xyz), "next step")
