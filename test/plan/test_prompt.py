"""Splicing 3D tokens into prompts at the placeholder: positions, masks, labels, padding sides."""
import pytest
import torch

from pointmoe_core.plan.prompt import IGNORE_INDEX, SCENE_PLACEHOLDER, PromptTemplate, splice_scene_tokens

PAD, SCENE, H = 0, 99, 4


def _batch():
    """Two prompts, right-padded: [5 SCENE 6 7] and [8 9 SCENE 3 PAD PAD]; embedding = the id."""
    ids = torch.tensor([[5, SCENE, 6, 7, PAD, PAD], [8, 9, SCENE, 3, 4, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    embeds = ids[..., None].float().expand(-1, -1, H).clone()
    # scene 0 has 3 objects, scene 1 has 1 (then padding); tokens are negative so they stand out
    scene = -torch.arange(1, 7, dtype=torch.float).view(2, 3, 1).expand(-1, -1, H).clone()
    scene_mask = torch.tensor([[True, True, True], [True, False, False]])
    return embeds, ids, mask, scene, scene_mask


@pytest.mark.parametrize("side", ["right", "left"])
def test_scene_tokens_land_at_the_placeholder(side):
    embeds, ids, mask, scene, scene_mask = _batch()
    out = splice_scene_tokens(embeds, ids, SCENE, scene, scene_mask, mask, padding_side=side)
    # 4 real tokens - 1 + 3 objects and 6 - 1 + 1: both rows come out 6 long, so no padding is left
    expected = [[5, -1, -2, -3, 6, 7], [8, 9, -4, 3, 4, 2]]
    assert out.embeds.shape == (2, 6, H)
    assert out.embeds[..., 0].tolist() == expected
    assert out.attention_mask.tolist() == [[1] * 6, [1] * 6]
    assert out.modality_mask.tolist() == [[False, True, True, True, False, False],
                                          [False, False, True, False, False, False]]
    assert out.labels is None


@pytest.mark.parametrize("side", ["right", "left"])
def test_different_object_counts_are_re_padded(side):
    embeds, ids, mask, scene, scene_mask = _batch()
    ids, mask, embeds = ids[:, :4], torch.ones(2, 4, dtype=torch.long), embeds[:, :4]  # no input padding
    out = splice_scene_tokens(embeds, ids, SCENE, scene, scene_mask, mask, padding_side=side)
    rows = [[5, -1, -2, -3, 6, 7], [8, 9, -4, 3]]  # 6 and 4 tokens
    real = out.attention_mask.bool()
    assert out.embeds.shape == (2, 6, H) and real.sum(1).tolist() == [6, 4]
    assert out.embeds[1][real[1]][:, 0].tolist() == rows[1]
    pad = slice(0, 2) if side == "left" else slice(4, 6)
    assert (out.attention_mask[1, pad] == 0).all() and (out.embeds[1, pad] == 0).all()
    assert not out.modality_mask[1, pad].any()
    assert out.modality_mask[1][real[1]].tolist() == [False, False, True, False]
    # positions count real tokens only, so the left-padded row starts at 0 where its text starts
    assert out.position_ids[1][real[1]].tolist() == [0, 1, 2, 3]


def test_labels_move_with_their_tokens_and_ignore_scene_and_padding():
    embeds, ids, mask, scene, scene_mask = _batch()
    labels = torch.where(mask.bool(), ids + 100, torch.full_like(ids, IGNORE_INDEX))
    labels[:, 0] = IGNORE_INDEX  # a prompt token the loss skips
    out = splice_scene_tokens(embeds, ids, SCENE, scene, scene_mask, mask, labels=labels)
    x = IGNORE_INDEX
    assert out.labels.tolist() == [[x, x, x, x, 106, 107], [x, 109, x, 103, 104, 102]]


def test_gradients_reach_the_scene_tokens_and_the_text():
    embeds, ids, mask, scene, scene_mask = _batch()
    embeds.requires_grad_(True)
    scene.requires_grad_(True)
    splice_scene_tokens(embeds, ids, SCENE, scene, scene_mask, mask).embeds.sum().backward()
    assert scene.grad[scene_mask].eq(1).all() and scene.grad[~scene_mask].eq(0).all()
    assert embeds.grad[0, 1].eq(0).all() and embeds.grad[0, 0].eq(1).all()  # the placeholder is replaced


def test_each_prompt_needs_exactly_one_placeholder():
    embeds, ids, mask, scene, scene_mask = _batch()
    ids[0, 2] = SCENE
    with pytest.raises(ValueError, match="prompt 0 holds 2 scene placeholders"):
        splice_scene_tokens(embeds, ids, SCENE, scene, scene_mask, mask)


def test_template_puts_the_placeholder_in_the_user_turn():
    template = PromptTemplate()
    prompt = template.question("how many red blocks are there?")
    assert prompt.count(SCENE_PLACEHOLDER) == 1
    user = prompt.split("<|im_start|>user\n")[1]
    assert user.startswith(SCENE_PLACEHOLDER) and "how many red blocks are there?<|im_end|>" in user
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "put the blocks in the bowls" in template.plan("put the blocks in the bowls with matching colors.")
    assert template.caption().count(SCENE_PLACEHOLDER) == 1
    assert template.answer("2") == "2<|im_end|>"
