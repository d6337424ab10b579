"""PoseSequence <-> Ravens actions (lossless) and <-> the network's (T, 2, 9) tensor form."""
import numpy as np
import pytest
import torch

from pointmoe_core.common.pose_sequence import (
    WORKSPACE_BOUNDS,
    PickPlace,
    PoseSequence,
    decode_steps,
    encode_steps,
    normalize_xyz,
    unnormalize_xyz,
)

LOW = np.array([b[0] for b in WORKSPACE_BOUNDS])
HIGH = np.array([b[1] for b in WORKSPACE_BOUNDS])


def random_sequence(n: int, seed: int = 0) -> PoseSequence:
    rng = np.random.default_rng(seed)

    def quat():
        q = rng.normal(size=4)
        return q / np.linalg.norm(q)

    steps = [
        PickPlace(rng.uniform(LOW, HIGH), quat(), rng.uniform(LOW, HIGH), quat(), rng.uniform())
        for _ in range(n)
    ]
    return PoseSequence(steps, instruction="put the red block in the green bowl", planner="oracle", planning_time=0.25)


def test_ravens_round_trip_is_lossless():
    seq = random_sequence(5)
    actions = seq.to_ravens_actions()
    back = PoseSequence.from_ravens_actions(
        actions, seq.scores, seq.instruction, seq.planner, seq.planning_time
    )
    assert back == seq


def test_ravens_action_format():
    seq = random_sequence(3)
    actions = seq.to_ravens_actions()
    assert len(actions) == 3
    for act, step in zip(actions, seq.steps):
        assert set(act) == {"pose0", "pose1"}
        (p0, q0), (p1, q1) = act["pose0"], act["pose1"]
        assert p0.shape == (3,) and q0.shape == (4,) and p1.shape == (3,) and q1.shape == (4,)
        assert tuple(p0) == step.pick_xyz and tuple(q1) == step.place_quat


def test_from_ravens_accepts_plain_tuples_and_defaults_scores_to_one():
    act = {"pose0": ((0.5, 0.1, 0.02), (0, 0, 0, 1)), "pose1": ([0.6, -0.2, 0.05], [0, 0, 1, 0])}
    seq = PoseSequence.from_ravens_actions([act], planner="oracle")
    assert seq.scores == [1.0]
    assert seq.steps[0].place_quat == (0.0, 0.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        PoseSequence.from_ravens_actions([act], scores=[0.5, 0.5])


def test_step_rejects_wrong_lengths():
    with pytest.raises(ValueError):
        PickPlace((0.5, 0.0), (0, 0, 0, 1), (0.5, 0.0, 0.0), (0, 0, 0, 1))


def test_xyz_normalisation_maps_the_workspace_to_unit_cube():
    corners = torch.from_numpy(np.stack([LOW, HIGH]))
    torch.testing.assert_close(normalize_xyz(corners), torch.tensor([[-1.0] * 3, [1.0] * 3], dtype=torch.float64))
    torch.testing.assert_close(unnormalize_xyz(normalize_xyz(corners)), corners)


def test_tensor_round_trip():
    seq = random_sequence(4, seed=1)
    poses = encode_steps(seq)
    assert poses.shape == (4, 2, 9) and poses.dtype == torch.float32
    assert poses.abs().max() <= 1 + 1e-6  # the network sees [-1, 1] throughout
    back = decode_steps(poses, seq.scores, instruction=seq.instruction, planner="pose-dit")
    assert back.instruction == seq.instruction and back.planner == "pose-dit" and back.scores == seq.scores
    for got, want in zip(back.steps, seq.steps):
        np.testing.assert_allclose(got.pick_xyz, want.pick_xyz, atol=1e-6)
        np.testing.assert_allclose(got.place_xyz, want.place_xyz, atol=1e-6)
        for q_got, q_want in ((got.pick_quat, want.pick_quat), (got.place_quat, want.place_quat)):
            assert abs(abs(np.dot(q_got, q_want)) - 1) < 1e-6  # same rotation (q ~ -q)


def test_decoding_clips_to_the_workspace_and_never_returns_nan():
    poses = torch.tensor(
        [
            [[5.0, -5.0, 0.0, 1, 0, 0, 0, 1, 0], [float("nan"), 0.0, 0.0, 0, 0, 0, 0, 0, 0]],
            [[0.0, 0.0, float("inf"), float("nan"), 0, 0, 0, 1, 0], [-3.0, 3.0, -3.0, 1, 0, 0, 2, 0, 0]],
        ]
    )
    seq = decode_steps(poses)
    xyz = np.array([[s.pick_xyz, s.place_xyz] for s in seq.steps]).reshape(-1, 3)
    quat = np.array([[s.pick_quat, s.place_quat] for s in seq.steps]).reshape(-1, 4)
    assert np.isfinite(xyz).all() and np.isfinite(quat).all()
    assert (xyz >= LOW).all() and (xyz <= HIGH).all()
    np.testing.assert_allclose(xyz[0], [0.75, -0.5, 0.14])
    np.testing.assert_allclose(xyz[1], [0.5, 0.0, 0.14])  # NaN -> centre
    np.testing.assert_allclose(np.linalg.norm(quat, axis=1), 1.0)
    np.testing.assert_allclose(quat[1], [0, 0, 0, 1])  # all-zero 6D -> identity
