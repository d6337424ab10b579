"""Instruction tokens from the offline MiniLM: word-piece states, the sentence vector, the bounded cache."""
import torch

from pointmoe_core.plan.instruction import MINILM_DIM, InstructionEncoder, pad_token_sets


def test_tokens_sentence_and_bounded_cache():
    tokens_encoder = InstructionEncoder("tokens", max_cached=2)
    texts = ["put the red block in the green bowl", "stack", "put the red block in the green bowl"]
    tokens, mask = tokens_encoder.encode(texts)
    assert tokens.shape[-1] == MINILM_DIM and mask.shape == tokens.shape[:2]
    # [CLS] + word pieces + [SEP]; the short one is padded with zeros
    assert mask[1].sum() == 3 and mask[0].sum() > 8 and not tokens[1, 3:].any()
    torch.testing.assert_close(tokens[0], tokens[2])
    sentence, sentence_mask = InstructionEncoder("sentence").encode(texts[:1])
    assert sentence.shape == (1, 1, MINILM_DIM) and sentence_mask.all()
    torch.testing.assert_close(sentence[0, 0], tokens[0][mask[0]].mean(0))
    # the least recently used instruction leaves the cache first
    tokens_encoder.encode(["pick the blue block"])
    assert list(tokens_encoder._cache) == ["put the red block in the green bowl", "pick the blue block"]


def test_pad_token_sets():
    tokens, mask = pad_token_sets([torch.ones(2, 3), torch.ones(4, 3)])
    assert tokens.shape == (2, 4, 3) and mask.sum(1).tolist() == [2, 4] and tokens[0, 2:].abs().sum() == 0
