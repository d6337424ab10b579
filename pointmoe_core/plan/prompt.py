"""LLM inputs with the scene's 3D tokens spliced in at a placeholder token.

3D-MoE (arXiv 2501.16698), like LEO and LLaVA, feeds the LLM one sequence of input embeddings in
which the projected object tokens ("3D tokens") stand where the prompt text says ``<scene>``.
The prompt is tokenized with ``<scene>`` as one added special token; its word embedding is then
replaced by the sample's real object tokens, as many as that scene has, so samples of one batch
grow by different amounts and are re-padded. ``modality_mask`` marks the 3D positions: the MoE
routing report splits expert load by it (3D tokens vs text tokens).

The prompt text is chat-style (``PromptTemplate``; the default turn markup is ChatML, which
SmolLM2-Instruct was tuned on) and says what is asked: a scene caption (stage 1), an answer to a
question (stage 2) or a plan for an instruction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..common.config import YamlConfig

SCENE_PLACEHOLDER = "<scene>"
IGNORE_INDEX = -100  # label of positions the loss skips (Hugging Face's convention)


class SplicedPrompt(NamedTuple):
    """Model inputs after splicing, all (B, L): embeds (B, L, H); attention_mask (long, 1 = real);
    modality_mask (bool, True = 3D token); position_ids (count real tokens, so left padding
    keeps positions); labels (IGNORE_INDEX on 3D tokens and padding), or None without labels."""

    embeds: torch.Tensor
    attention_mask: torch.Tensor
    modality_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None


def splice_scene_tokens(
    input_embeds: torch.Tensor,
    input_ids: torch.Tensor,
    placeholder_id: int,
    scene_tokens: torch.Tensor,
    scene_mask: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    padding_side: str = "right",
) -> SplicedPrompt:
    """Replace each prompt's one placeholder by that sample's real scene tokens.

    input_embeds (B, S, H) and input_ids (B, S) are the tokenized prompts, padded on either side
    (``attention_mask`` (B, S) tells which tokens are real; all are by default); scene_tokens
    (B, M, H) and scene_mask (B, M) the projected objects, True = real. ``labels`` (B, S), when
    given, move with their tokens. The result is padded on ``padding_side``: "right" for
    training, "left" for generation.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side is 'left' or 'right', not {padding_side!r}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    rows = []
    for b in range(len(input_ids)):
        real = attention_mask[b].bool()
        ids = input_ids[b][real]
        at = (ids == placeholder_id).nonzero().flatten()
        if len(at) != 1:
            raise ValueError(f"prompt {b} holds {len(at)} scene placeholders (id {placeholder_id}), expected 1")
        at = int(at)
        scene = scene_tokens[b][scene_mask[b]]
        m = len(scene)
        embeds = input_embeds[b][real]
        row_labels = None
        if labels is not None:
            text_labels = labels[b][real]
            row_labels = torch.cat([text_labels[:at], text_labels.new_full((m,), IGNORE_INDEX), text_labels[at + 1:]])
        modality = torch.zeros(len(ids) - 1 + m, dtype=torch.bool, device=input_ids.device)
        modality[at:at + m] = True
        rows.append((torch.cat([embeds[:at], scene.to(embeds.dtype), embeds[at + 1:]]), modality, row_labels))
    length = max(len(row[0]) for row in rows)
    embeds = input_embeds.new_zeros(len(rows), length, input_embeds.shape[-1])
    mask = torch.zeros(len(rows), length, dtype=torch.long, device=input_ids.device)
    modality = torch.zeros(len(rows), length, dtype=torch.bool, device=input_ids.device)
    out_labels = None if labels is None else labels.new_full((len(rows), length), IGNORE_INDEX)
    for b, (row, row_modality, row_labels) in enumerate(rows):
        span = slice(length - len(row), length) if padding_side == "left" else slice(0, len(row))
        embeds[b, span], mask[b, span], modality[b, span] = row, 1, row_modality
        if out_labels is not None:
            out_labels[b, span] = row_labels
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    return SplicedPrompt(embeds, mask, modality, position_ids, out_labels)


@dataclass
class PromptTemplate(YamlConfig):
    """Chat-style prompt text. ``turn`` formats one message (ChatML by default; LLaMA-3 would be
    ``"<|start_header_id|>{role}<|end_header_id|>\\n\\n{text}<|eot_id|>"``); ``end`` closes the
    assistant's answer, so a trained model learns to stop."""

    system: str = "You are a robot arm looking at a tabletop. The scene's objects are given as 3D tokens."
    turn: str = "<|im_start|>{role}\n{text}<|im_end|>\n"
    assistant_start: str = "<|im_start|>assistant\n"
    end: str = "<|im_end|>"
    caption_request: str = "Describe the scene."
    plan_request: str = "Task: {instruction}\nPlan the pick-and-place steps."

    def prompt(self, request: str) -> str:
        """System turn, then a user turn with the scene placeholder and ``request``, then the
        start of the assistant's turn (generation continues from there)."""
        return (self.turn.format(role="system", text=self.system)
                + self.turn.format(role="user", text=f"{SCENE_PLACEHOLDER}\n{request}")
                + self.assistant_start)

    def caption(self) -> str:
        return self.prompt(self.caption_request)

    def question(self, question: str) -> str:
        return self.prompt(question)

    def plan(self, instruction: str) -> str:
        return self.prompt(self.plan_request.format(instruction=instruction))

    def answer(self, text: str) -> str:
        """The training target that follows a prompt."""
        return text + self.end
