import numpy as np
import pytest
import torch

from pointmoe_core.seg.head import mask_logits
from pointmoe_core.train.losses import LossConfig, lovasz_softmax, segmentation_loss


def jaccard_loss(errors: set[int], foreground: set[int]) -> float:
    """Berman et al.'s set function: |M| / |fg ∪ M| for the mispredicted set M."""
    return len(errors) / len(foreground | errors) if errors else 0.0


def lovasz_extension_by_thresholds(m: np.ndarray, foreground: set[int]) -> float:
    """The Lovász extension as the integral over t of the set function at {i : m_i >= t}.

    This is the definition, evaluated piece by piece between the distinct error values; it shares
    nothing with the sort-and-cumsum gradient the loss uses.
    """
    levels = sorted(set(m.tolist()) | {0.0}, reverse=True)
    total = 0.0
    for high, low in zip(levels[:-1], levels[1:]):
        above = {i for i, v in enumerate(m) if v >= high}
        total += (high - low) * jaccard_loss(above, foreground)
    return total


def brute_force_lovasz_softmax(probs: np.ndarray, target: np.ndarray) -> float:
    keep = target >= 0
    probs, target = probs[keep], target[keep]
    losses = []
    for c in sorted(set(target.tolist())):
        fg = (target == c).astype(float)
        losses.append(lovasz_extension_by_thresholds(np.abs(fg - probs[:, c]), set(np.flatnonzero(fg).tolist())))
    return float(np.mean(losses))


@pytest.mark.parametrize("seed", range(5))
def test_lovasz_softmax_matches_the_extension_by_definition(seed):
    rng = np.random.default_rng(seed)
    n, c = 9, 4
    probs = torch.softmax(torch.from_numpy(rng.normal(size=(n, c)) * 2), -1)
    target = torch.from_numpy(rng.integers(-1, c - 1, n))  # class 3 never present, some ignored
    expected = brute_force_lovasz_softmax(probs.numpy(), target.numpy())
    assert lovasz_softmax(probs, target).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_lovasz_is_zero_for_a_confident_correct_prediction_and_grows_with_errors():
    target = torch.tensor([0, 1, 2, 1])
    perfect = torch.nn.functional.one_hot(target, 3).double()
    assert lovasz_softmax(perfect, target).item() == 0.0
    wrong = perfect.roll(1, dims=1)
    assert lovasz_softmax(wrong, target).item() == pytest.approx(1.0)  # every class's IoU is 0


def test_invalid_classes_take_no_probability_and_ignored_points_no_loss():
    torch.manual_seed(0)
    logits = torch.randn(6, 5, requires_grad=True)
    target = torch.tensor([0, 2, 2, -1, 0, 2])
    valid = torch.tensor([True, False, True, False, False])
    masked = segmentation_loss(mask_logits(logits, valid), target)
    # the same as scoring against the dataset's own columns only, relabelled 0 -> 0, 2 -> 1
    sub = segmentation_loss(logits[:, [0, 2]], torch.tensor([0, 1, 1, -1, 0, 1]))
    assert masked["loss"].item() == pytest.approx(sub["loss"].item(), rel=1e-6)
    masked["loss"].backward()
    assert torch.all(logits.grad[:, [1, 3, 4]] == 0) and torch.all(logits.grad[3] == 0)


def test_loss_weights_and_all_ignored_batch():
    logits = torch.randn(4, 3, requires_grad=True)
    target = torch.tensor([0, 1, 2, 0])
    parts = segmentation_loss(logits, target, config=LossConfig(ce_weight=2.0, lovasz_weight=0.5))
    assert parts["loss"].item() == pytest.approx(2.0 * parts["ce"].item() + 0.5 * parts["lovasz"].item())
    empty = segmentation_loss(logits, torch.full((4,), -1))
    empty["loss"].backward()  # still differentiable, so DDP ranks without labels keep in step
    assert empty["loss"].item() == 0.0 and torch.all(logits.grad == 0)
