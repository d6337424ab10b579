"""Language-guided head (PPT): scaled cosine logits, per-sample class masks; Pointcept's linear head."""
import math

import pytest
import torch
import torch.nn.functional as F

from pointmoe_core.seg.head import MASKED_LOGIT, LanguageGuidedHead, LinearHead, mask_logits


def make_head(**kwargs) -> LanguageGuidedHead:
    torch.manual_seed(0)
    head = LanguageGuidedHead(8, 6, 4, **kwargs)
    head.set_class_embedding(torch.randn(4, 6) * 3)  # stored L2-normalised
    return head


def test_logits_are_clip_scaled_cosines():
    head = make_head()
    feat = torch.randn(10, 8)
    logits = head(feat)
    expected = 100.0 * F.normalize(head.proj(feat), dim=-1) @ F.normalize(head.class_embedding, dim=-1).T
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(head.class_embedding.norm(dim=1), torch.ones(4))
    assert logits.abs().max() <= 100.0 + 1e-4
    # the official head keeps CLIP's logit scale, log(100), frozen
    assert not head.logit_scale.requires_grad and math.isclose(head.logit_scale.exp().item(), 100.0, rel_tol=1e-6)


def test_inference_logits_skip_the_projection_but_match_it():
    # without autograd the head never forms the (N, D_text) features (Gram form of the norm)
    head = LanguageGuidedHead(32, 384, 5)
    head.set_class_embedding(torch.randn(5, 384))
    feat = torch.randn(2000, 32) * 4
    feat[:10] = 0.0  # the projection is then just the bias
    with torch.no_grad():
        fast = head(feat)
        reference = 100.0 * F.normalize(head.proj(feat), dim=-1) @ head.class_embedding.T
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(fast, head(feat).detach(), atol=1e-4, rtol=1e-5)


def test_per_cloud_class_mask_matches_official_slicing():
    head = make_head()
    feat, batch = torch.randn(7, 8), torch.tensor([0, 0, 0, 1, 1, 1, 1])
    valid = torch.tensor([[True, False, True, False], [False, True, True, True]])
    logits = head(feat, valid, batch)
    unmasked = head(feat)
    for row, cloud in enumerate(batch.tolist()):
        keep = valid[cloud]
        assert (logits[row, ~keep] == MASKED_LOGIT).all()
        torch.testing.assert_close(logits[row, keep], unmasked[row, keep])
        # PPT slices the class table per dataset: same log-probabilities over the valid classes
        torch.testing.assert_close(logits[row].log_softmax(-1)[keep], unmasked[row, keep].log_softmax(-1))
    target = torch.tensor([0, 2, 2, 1, 3, 2, 1])
    loss = F.cross_entropy(logits, target, label_smoothing=0.1)  # finite even with smoothing over masked classes
    assert torch.isfinite(loss)
    one_mask = head(feat, torch.tensor([False, True, True, False]))  # (K,) mask for all points
    assert (one_mask[:, [0, 3]] == MASKED_LOGIT).all()
    with pytest.raises(ValueError, match="without any valid class"):
        mask_logits(unmasked, torch.tensor([[True, False, False, False], [False] * 4]), batch)
    with pytest.raises(ValueError, match="batch index"):
        mask_logits(unmasked, valid)


def test_new_class_table_at_inference_and_gradients():
    head = make_head()
    feat = torch.randn(5, 8)
    other = torch.randn(3, 6)
    logits = head(feat, text_embedding=other)  # a different vocabulary without retraining
    assert logits.shape == (5, 3)
    torch.testing.assert_close(logits, 100.0 * F.normalize(head.proj(feat), dim=-1) @ F.normalize(other, dim=-1).T)

    F.cross_entropy(head(feat), torch.tensor([0, 1, 2, 3, 0])).backward()
    assert head.proj.weight.grad.abs().sum() > 0
    assert head.logit_scale.grad is None and "class_embedding" in dict(head.named_buffers())
    learnable = make_head(learnable_scale=True)
    F.cross_entropy(learnable(feat), torch.tensor([0, 1, 2, 3, 0])).backward()
    assert learnable.logit_scale.grad is not None and learnable.logit_scale.grad != 0
    with pytest.raises(ValueError, match=r"must be \(4, 6\)"):
        head.set_class_embedding(torch.randn(4, 5))


def test_linear_head_is_a_masked_linear_classifier():
    head = LinearHead(8, 3)
    feat = torch.randn(4, 8)
    torch.testing.assert_close(head(feat), head.classifier(feat))
    masked = head(feat, torch.tensor([True, False, True]))
    assert (masked[:, 1] == MASKED_LOGIT).all() and head.num_classes == 3
