"""Segmentation heads on top of the backbone's per-point features.

* ``LanguageGuidedHead``: the head of PPT's ``PointPromptTraining`` ("PPT-v1m1", language-guided)
  that point_moe's ``PPTMoE-v0m0`` keeps: ``proj_head`` (Linear C -> D_text), L2-normalised point
  features against the L2-normalised class-name embeddings ``class_embedding`` (K, D_text),
  ``logits = exp(logit_scale) * f @ T^T``. ``logit_scale`` is CLIP's (log 100 after CLIP
  training), frozen as in the official code unless ``learnable_scale``.
* ``LinearHead``: Pointcept's ``DefaultSegmentorV2`` ``seg_head``, a closed-set Linear C -> K.

Both mask the logits to the classes valid for each sample: the official code slices the class
table per dataset; masking with ``MASKED_LOGIT`` gives the same softmax, loss and argmax while
keeping one (N, K) tensor for mixed-dataset batches. Official names map to ours in
:mod:`.convert` (``proj_head`` <-> ``head.proj``, ``seg_head`` <-> ``head.classifier``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Logits are cosine * scale, at most |100|: -1e4 is probability exp(-1e4) = 0, stays finite in
# fp16 and keeps cross-entropy with label smoothing finite (-inf would make it NaN).
MASKED_LOGIT = -1e4
CLIP_LOGIT_SCALE = 100.0


def mask_logits(logits: torch.Tensor, class_mask: torch.Tensor | None,
                batch: torch.Tensor | None = None) -> torch.Tensor:
    """Set logits of invalid classes to ``MASKED_LOGIT``.

    ``class_mask`` is (K,) for all points, or (B, K) per cloud with ``batch`` (N,) giving each
    point's cloud; True = valid. Every cloud must keep at least one class.
    """
    if class_mask is None:
        return logits
    class_mask = class_mask.to(device=logits.device, dtype=torch.bool)
    if class_mask.shape[-1] != logits.shape[-1]:
        raise ValueError(f"class mask has {class_mask.shape[-1]} classes, logits have {logits.shape[-1]}")
    if not class_mask.any(-1).all():
        raise ValueError("class mask leaves a sample without any valid class")
    if class_mask.ndim == 2:
        if batch is None:
            raise ValueError("a per-cloud (B, K) class mask needs the per-point batch index")
        class_mask = class_mask[batch]
    return logits.masked_fill(~class_mask, MASKED_LOGIT)


class LanguageGuidedHead(nn.Module):
    """Cosine classifier against class-name text embeddings (PPT's language-guided head)."""

    def __init__(self, in_channels: int, text_dim: int, num_classes: int,
                 logit_scale: float = CLIP_LOGIT_SCALE, learnable_scale: bool = False) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, text_dim)
        # Filled from a TextEncoder (or a checkpoint); saved so a model carries its class table.
        self.register_buffer("class_embedding", torch.zeros(num_classes, text_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale)), requires_grad=learnable_scale)

    @property
    def num_classes(self) -> int:
        return self.class_embedding.shape[0]

    def set_class_embedding(self, embedding: torch.Tensor) -> None:
        """Fill the class table (K, D) (stored L2-normalised); other vocabularies go to ``forward``."""
        if embedding.shape != self.class_embedding.shape:
            raise ValueError(f"class embedding must be {tuple(self.class_embedding.shape)}, "
                             f"got {tuple(embedding.shape)}")
        self.class_embedding = F.normalize(embedding.detach().float(), dim=-1).to(self.proj.weight.device)

    def forward(self, feat: torch.Tensor, class_mask: torch.Tensor | None = None,
                batch: torch.Tensor | None = None, text_embedding: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C) features -> (N, K) logits; ``text_embedding`` (K', D) replaces the class table."""
        table = self.class_embedding if text_embedding is None else text_embedding
        table = F.normalize(table.to(feat.dtype), dim=-1)
        if torch.is_grad_enabled():
            point = F.normalize(self.proj(feat), dim=-1)
            cosine = point @ table.T
        else:
            cosine = self._cosine_without_projection(feat, table)
        return mask_logits(self.logit_scale.exp() * cosine, class_mask, batch)

    def _cosine_without_projection(self, feat: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """The same cosine without the (N, D_text) projected features, for inference.

        With ``x' = [x, 1]`` and ``W' = [W, b]``: ``f . t = x' . (W'^T t)`` and
        ``|f|^2 = x'^T (W'^T W') x'``, so the work is N x (C+1) x (K + C+1) instead of
        N x C x D_text: the head was the slowest layer of a small model on a large cloud. The
        norm is summed in float64, as the Gram form subtracts large terms.
        """
        weight = torch.cat([self.proj.weight, self.proj.bias[:, None]], dim=1)  # (D, C+1)
        extended = torch.cat([feat, feat.new_ones(len(feat), 1)], dim=1)  # (N, C+1)
        gram = weight.T.double() @ weight.double()
        squared_norm = ((extended.double() @ gram) * extended.double()).sum(-1)
        norm = squared_norm.clamp_min(0).sqrt().clamp_min(1e-12)  # F.normalize's eps
        return (extended @ (weight.T @ table.T)) / norm.to(feat.dtype)[:, None]


class LinearHead(nn.Module):
    """Closed-set Linear classifier (Pointcept's ``seg_head``)."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(in_channels, num_classes)

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    def forward(self, feat: torch.Tensor, class_mask: torch.Tensor | None = None,
                batch: torch.Tensor | None = None) -> torch.Tensor:
        return mask_logits(self.classifier(feat), class_mask, batch)
