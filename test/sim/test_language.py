"""Simulator language: captions and QA on a hand-built scene, a live env, and demo-file metadata."""
from __future__ import annotations

import argparse
import re

import numpy as np
import pytest

from pointmoe_core.sim import Oracle, cli
from pointmoe_core.sim.language import (
    RELATIONS,
    ObjectFact,
    caption,
    demo_objects,
    next_step,
    next_step_qa,
    object_names,
    question_answers,
    relation_holds,
    scene_objects,
)


def _obj(kind, color, x, y, size=None, dims=(0.04, 0.04, 0.04)):
    if size is None:
        size = "smaller" if kind == "block" else ""
    return ObjectFact(kind, color, size, (x, y, 0.02), dims)


# x forward (away from the robot's base), y to the right as the instructions see it
SCENE = [
    _obj("block", "red", 0.5, -0.3),
    _obj("bowl", "green", 0.5, 0.2, dims=(0.12, 0.12, 0.035)),
    _obj("block", "blue", 0.3, 0.0),
    _obj("block", "blue", 0.7, 0.1),
    _obj("zone", "yellow", 0.65, -0.2, dims=(0.1, 0.1, 0.001)),
]
RELATION_PATTERN = "|".join(RELATIONS)


def _named(objects, name):
    return [o for o, n in zip(objects, object_names(objects)) if n == name]


def _check(objects, qa):
    """Recompute a QA pair's answer from the object list."""
    if qa.kind == "count":
        color, kind = re.fullmatch(r"how many (?:(\w+) )?(\w+)s are there\?", qa.question).groups()
        assert qa.answer == str(sum(o.kind == kind and color in (None, o.color) for o in objects))
    elif qa.kind == "color":
        match = re.fullmatch(rf"what color is the (\w+)(?: ({RELATION_PATTERN}) the (.+))?\?", qa.question)
        kind, relation, ref = match.groups()
        candidates = [o for o in objects if o.kind == kind]
        if relation:
            (ref,) = _named(objects, ref)
            candidates = [o for o in candidates if o is not ref and relation_holds(o, ref, relation)]
        assert [o.color for o in candidates] == [qa.answer]
    else:
        a, relation, b = re.fullmatch(rf"is the (.+) ({RELATION_PATTERN}) the (.+)\?", qa.question).groups()
        (a,), (b,) = _named(objects, a), _named(objects, b)
        assert qa.answer == {True: "yes", False: "no"}[relation_holds(a, b, relation)]


def test_relations_follow_the_workspace_axes():
    red, bowl, near_blue, far_blue, _ = SCENE
    assert relation_holds(red, bowl, "left of") and relation_holds(bowl, red, "right of")
    assert relation_holds(red, bowl, "right of") is False
    assert relation_holds(near_blue, red, "behind") and relation_holds(far_blue, red, "in front of")
    assert relation_holds(red, bowl, "behind") is None  # same x: too close to call
    assert relation_holds(_obj("block", "red", 0.5, 0.0), _obj("bowl", "red", 0.5, 0.03), "left of") is None


def test_caption_lists_the_objects_and_states_true_relations():
    text = caption(SCENE, np.random.default_rng(0), max_relations=4)
    inventory, *relations = text.split(". ")
    assert inventory.startswith("there is ") and inventory.count("a blue block") == 2
    assert all(name in inventory for name in ("a red block", "a green bowl", "a yellow zone"))
    assert len(relations) == 4
    for sentence in relations:
        a, relation, b = re.fullmatch(rf"an? (.+) is ({RELATION_PATTERN}) an? (.+?)\.?", sentence).groups()
        assert any(relation_holds(x, y, relation) for x in _named(SCENE, a) for y in _named(SCENE, b)), sentence
    assert caption(SCENE, np.random.default_rng(0)) == text  # deterministic given the generator
    assert caption([], np.random.default_rng(0)) == "the table is empty."


def test_question_answers_are_correct_and_deterministic():
    kinds = set()
    for seed in range(20):
        pairs = question_answers(SCENE, np.random.default_rng(seed), count=4)
        assert len(pairs) == 4 and len({qa.question for qa in pairs}) == 4
        assert pairs == question_answers(SCENE, np.random.default_rng(seed), count=4)
        for qa in pairs:
            _check(SCENE, qa)
            kinds.add(qa.kind)
    assert kinds == {"count", "color", "relation"}


def test_block_sizes_are_named_only_when_they_differ():
    assert object_names(SCENE)[0] == "red block"
    mixed = [*SCENE, _obj("block", "red", 0.3, 0.4, size="bigger", dims=(0.06, 0.06, 0.06))]
    assert object_names(mixed)[0] == "smaller red block" and object_names(mixed)[-1] == "bigger red block"
    assert object_names(mixed)[1] == "green bowl"


def test_next_step_names_the_picked_block_and_the_place():
    pick = [0.5, -0.3, 0.04]  # the red block's top face
    assert next_step(SCENE, pick, [0.51, 0.21, 0.03]) == "pick up the red block and place it in the green bowl."
    assert next_step(SCENE, pick, [0.3, 0.0, 0.08]) == "pick up the red block and place it on the blue block."
    assert next_step(SCENE, pick, [0.66, -0.18, 0.02]) == "pick up the red block and place it on the yellow zone."
    assert next_step(SCENE, pick, [0.3, 0.4, 0.02]) == "pick up the red block and place it in the top right area."
    qa = next_step_qa(SCENE, "put the blocks in the bowls with matching colors.", pick, [0.5, 0.2, 0.03])
    assert qa.question == "put the blocks in the bowls with matching colors. what is the next step?"
    assert qa.answer.endswith("in the green bowl.") and qa.kind == "next step"


def test_language_from_a_live_scene(make_env):
    env = make_env("put-block-into-matching-bowl")
    env.reset(3)
    objects = scene_objects(env)
    assert sorted(o.kind for o in objects) == sorted(o.kind for o in env.objects.values()
                                                     if o.kind in ("block", "bowl"))
    for fact in objects:
        assert env.objects[fact.body_id].color == fact.color
        assert np.allclose(fact.centre, env.object_pose(fact.body_id)[0])
    for qa in question_answers(objects, np.random.default_rng(0), count=6):
        _check(objects, qa)
    step = Oracle(env).plan()[0]
    color = re.fullmatch(r"pick up the (\w+) block and place it in the (\w+) bowl\.",
                         next_step(objects, step.pick_xyz, step.place_xyz)).groups()
    assert color[0] == color[1]  # matching bowls


def test_demo_files_carry_object_metadata(tmp_path):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    cli.run(parser.parse_args(["demos", "--task", "put-block-into-matching-bowl", "--episodes", "1",
                               "--image-size", "24x32", "--out", str(tmp_path)]))
    (path,) = tmp_path.glob("*/*.npz")
    with np.load(path) as demo:
        steps, bodies = len(demo["pick_xyz"]), demo["object_body_ids"]
        assert demo["object_centres"].shape == (steps + 1, len(bodies), 3)
        assert set(demo["object_kinds"]) == {"block", "bowl"} and set(demo["object_sizes"]) == {"smaller", ""}
        assert set(bodies) <= set(np.unique(demo["object_id"]))  # the cloud's ids name the same bodies
        for k in range(steps):  # every oracle step, in words from that frame's objects: a matching bowl
            answer = next_step(demo_objects(demo, k), demo["pick_xyz"][k], demo["place_xyz"][k])
            first, second = re.fullmatch(r"pick up the (\w+) block and place it in the (\w+) bowl\.", answer).groups()
            assert first == second
        final = demo_objects(demo, steps)
        old = {key: demo[key] for key in demo.files if not key.startswith("object_") or key == "object_id"}
    bowls = {o.color: o.centre for o in final if o.kind == "bowl"}
    for block in (o for o in final if o.kind == "block"):  # after the last step each block sits in its bowl
        assert np.linalg.norm(np.subtract(block.centre[:2], bowls[block.color][:2])) < 0.05
    with pytest.raises(KeyError, match="write the demos again"):
        demo_objects(old, 0)
