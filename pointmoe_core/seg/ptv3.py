"""Point-MoE backbone: Point Transformer V3 whose attention output projection is a sparse MoE.

Paper: "Point-MoE: Large-Scale Multi-Dataset Training with Mixture-of-Experts for 3D Semantic
Segmentation" (arXiv 2505.23926). Official code: ``UVA-Computer-Vision-Lab/point_moe``, class
``PointTransformerMoE`` (registered as "PTMoE-v0m0"), a fork of Pointcept's PTv3
(``point_transformer_v3m1_base.py``). This file is a plain-PyTorch re-implementation that runs on
CPU and GPU; module names match the official ones so its state dicts (and released checkpoints)
load with ``strict=True``.

Layout, top to bottom:

* ``BackboneConfig``: the constructor arguments (``from_official_kwargs`` maps the official ones).
* Building blocks: ``DropPath``, ``MLP``, ``attention_windows``, ``SerializedAttention``
  (patch attention, W_o = ``proj``), ``Block`` (xCPE + attention + MLP), ``SerializedPooling``,
  ``SerializedUnpooling``, ``Embedding``.
* ``PointTransformerMoE``: the U-Net of stages ``enc.enc{s}`` / ``dec.dec{s}``.

Two behaviours of the official code are reproduced on purpose because trained weights depend on
them (each has a config switch): pooling re-shuffles its serialization orders with the global RNG
even in eval (``pool_shuffle_orders``), and the first decoder block after unpooling feeds only the
skip branch to its xCPE convolution (``fix_unpool_cpe``; PointTransformerV3 issues #65, #149).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..common.config import YamlConfig
from .moe import SparseMoE
from .serialization import ORDERS, inverse_permutation
from .sparse_conv import SubMConv3d
from .structure import Point, batch2offset

try:  # optional GPU kernel; everything works without it
    import flash_attn
except ImportError:  # pragma: no cover - depends on the environment
    flash_attn = None

MOE_PLACEMENTS = ("proj", "mlp", "both", "none")


# =============================================================================================
# Configuration
# =============================================================================================
@dataclass
class BackboneConfig(YamlConfig):
    """Hyper-parameters of the Point-MoE backbone (defaults: the official indoor Point-MoE).

    Names follow the official constructor, except: ``moe_placement`` replaces
    ``use_moe``/``use_moe_proj``/``use_moe_mlp``; ``top_k`` = ``topk``; ``moe_hidden_ratio`` =
    ``n_intermediate_size``; ``moe_act`` = ``act_fn``; ``moe_in_encoder``/``moe_in_decoder`` =
    ``enable_enc``/``enable_dec``; ``use_layer_norm`` = ``use_ln``.
    """

    in_channels: int = 6
    order: tuple[str, ...] = ORDERS
    stride: tuple[int, ...] = (2, 2, 2, 2)
    enc_depths: tuple[int, ...] = (2, 2, 2, 6, 2)
    enc_channels: tuple[int, ...] = (32, 64, 128, 256, 512)
    enc_num_head: tuple[int, ...] = (2, 4, 8, 16, 32)
    enc_patch_size: tuple[int, ...] = (1024, 1024, 1024, 1024, 1024)
    dec_depths: tuple[int, ...] = (2, 2, 2, 2)
    dec_channels: tuple[int, ...] = (64, 64, 128, 256)
    dec_num_head: tuple[int, ...] = (4, 4, 8, 16)
    dec_patch_size: tuple[int, ...] = (1024, 1024, 1024, 1024)
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    attn_drop: float = 0.0
    proj_drop: float = 0.0
    drop_path: float = 0.3
    pre_norm: bool = True
    shuffle_orders: bool = True
    enable_flash: bool = True
    upcast_attention: bool = False
    upcast_softmax: bool = False
    cls_mode: bool = False
    # Mixture of experts
    moe_placement: str = "proj"
    moe_layers: tuple[int, ...] | None = None
    moe_in_encoder: bool = True
    moe_in_decoder: bool = True
    num_experts: int = 8
    top_k: int = 2
    moe_hidden_ratio: float = 2.0
    moe_act: str = "relu"
    aux_loss_alpha: float = 0.0
    # Norms, sparse convolution, official quirks
    stem_kernel: int = 5  # PTv3's stem convolution; 3 costs a fifth on a large cloud (the edge config)
    use_layer_norm: bool = False
    conv_backend: str = "auto"
    pool_shuffle_orders: bool = True
    fix_unpool_cpe: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.order, str):
            self.order = (self.order,)
        n = len(self.enc_depths)
        for name in ("enc_channels", "enc_num_head", "enc_patch_size"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} needs {n} entries (one per stage)")
        if len(self.stride) != n - 1:
            raise ValueError(f"stride needs {n - 1} entries")
        if not self.cls_mode:
            for name in ("dec_depths", "dec_channels", "dec_num_head", "dec_patch_size"):
                if len(getattr(self, name)) != n - 1:
                    raise ValueError(f"{name} needs {n - 1} entries")
        for o in self.order:
            if o not in ORDERS:
                raise ValueError(f"unknown order {o!r}; expected one of {ORDERS}")
        if self.moe_placement not in MOE_PLACEMENTS:
            raise ValueError(f"moe_placement must be one of {MOE_PLACEMENTS}")
        for s in self.stride:
            if s < 2 or s & (s - 1):
                raise ValueError(f"pooling stride must be a power of two >= 2, got {s}")

    def to_dict(self) -> dict:
        return asdict(self)

    # ---- official kwargs ------------------------------------------------------------------
    @classmethod
    def from_official_kwargs(cls, kwargs: Mapping[str, Any], **overrides: Any) -> "BackboneConfig":
        """Map the official ``PointTransformerMoE(**kwargs)`` arguments to a config.

        Missing keys take the official constructor's defaults (not ours). Options this
        implementation does not support raise ``ValueError``; ``overrides`` set our own
        fields (e.g. ``conv_backend``).
        """
        kw = dict(OFFICIAL_DEFAULTS)
        unknown = set(kwargs) - set(OFFICIAL_DEFAULTS) - {"type"}
        if unknown:
            raise ValueError(f"unknown Point-MoE backbone kwargs: {sorted(unknown)}")
        if kwargs.get("type", "PTMoE-v0m0") != "PTMoE-v0m0":
            raise ValueError(f"expected backbone type 'PTMoE-v0m0', got {kwargs['type']!r}")
        kw.update({k: v for k, v in kwargs.items() if k != "type"})

        unsupported = {
            "enable_rpe": "relative position encoding (enable_rpe=True)",
            "use_RMS": "RMSNorm blocks (use_RMS=True)",
            "use_moe_attn": "MoE query projection (use_moe_attn=True)",
            "moe_use_residual": "shared expert (moe_use_residual=True)",
            "domain_guided": "domain-guided router (domain_guided=True)",
            "pdnorm_bn": "PDNorm (pdnorm_bn=True)",
            "pdnorm_ln": "PDNorm (pdnorm_ln=True)",
        }
        for key, what in unsupported.items():
            if kw.get(key):
                raise ValueError(f"unsupported Point-MoE option: {what}")
        if kw["act_fn_params"]:
            raise ValueError("unsupported Point-MoE option: act_fn_params (custom activation parameters)")
        use_moe = bool(kw["use_moe"])
        moe_proj = use_moe and bool(kw["use_moe_proj"])
        moe_mlp = use_moe and bool(kw["use_moe_mlp"])
        if float(kw["proj_ratio"]) != 1.0 and not moe_proj:
            raise ValueError("unsupported Point-MoE option: proj_ratio != 1 (expanded dense W_o)")
        placement = {(True, True): "both", (True, False): "proj",
                     (False, True): "mlp", (False, False): "none"}[(moe_proj, moe_mlp)]
        order = kw["order"]
        cfg = dict(
            in_channels=kw["in_channels"],
            order=(order,) if isinstance(order, str) else tuple(order),
            stride=tuple(kw["stride"]),
            enc_depths=tuple(kw["enc_depths"]),
            enc_channels=tuple(kw["enc_channels"]),
            enc_num_head=tuple(kw["enc_num_head"]),
            enc_patch_size=tuple(kw["enc_patch_size"]),
            dec_depths=tuple(kw["dec_depths"]),
            dec_channels=tuple(kw["dec_channels"]),
            dec_num_head=tuple(kw["dec_num_head"]),
            dec_patch_size=tuple(kw["dec_patch_size"]),
            mlp_ratio=kw["mlp_ratio"],
            qkv_bias=kw["qkv_bias"],
            qk_scale=kw["qk_scale"],
            attn_drop=kw["attn_drop"],
            proj_drop=kw["proj_drop"],
            drop_path=kw["drop_path"],
            pre_norm=kw["pre_norm"],
            shuffle_orders=kw["shuffle_orders"],
            enable_flash=kw["enable_flash"],
            upcast_attention=kw["upcast_attention"],
            upcast_softmax=kw["upcast_softmax"],
            cls_mode=kw["cls_mode"],
            moe_placement=placement,
            moe_layers=None if kw["moe_layers"] is None else tuple(kw["moe_layers"]),
            moe_in_encoder=kw["enable_enc"],
            moe_in_decoder=kw["enable_dec"],
            num_experts=kw["num_experts"],
            top_k=kw["topk"],
            moe_hidden_ratio=kw["n_intermediate_size"],
            moe_act=kw["act_fn"],
            aux_loss_alpha=kw["aux_loss_alpha"],
            use_layer_norm=kw["use_ln"],
        )
        cfg.update(overrides)
        return cls(**cfg)


# Defaults of the official constructor (point_moe @ d3226f7; the pdnorm_* keys come from the
# later revision fff524f, which accepts them "for config compatibility").
OFFICIAL_DEFAULTS: dict[str, Any] = dict(
    in_channels=6, order=("z", "z-trans"), stride=(2, 2, 2, 2),
    enc_depths=(2, 2, 2, 6, 2), enc_channels=(32, 64, 128, 256, 512),
    enc_num_head=(2, 4, 8, 16, 32), enc_patch_size=(48, 48, 48, 48, 48),
    dec_depths=(2, 2, 2, 2), dec_channels=(64, 64, 128, 256), dec_num_head=(4, 4, 8, 16),
    dec_patch_size=(48, 48, 48, 48), mlp_ratio=4, proj_ratio=1.0, qkv_bias=True, qk_scale=None,
    attn_drop=0.0, proj_drop=0.0, drop_path=0.3, pre_norm=True, shuffle_orders=True,
    enable_rpe=False, enable_flash=True, upcast_attention=False, upcast_softmax=False,
    cls_mode=False, use_moe=False, use_moe_mlp=True, use_moe_proj=False, num_experts=4, topk=1,
    moe_use_residual=False, moe_layers=None, use_ln=False, use_RMS=False, rms_norm_partial=-1.0,
    rms_norm_eps=1e-8, rms_norm_bias=False, enable_enc=True, enable_dec=True, aux_loss_alpha=0,
    n_intermediate_size=1, act_fn="relu", act_fn_params=None, use_moe_attn=False,
    domain_guided=False, context_channels=16, pdnorm_bn=False, pdnorm_ln=False,
    pdnorm_decouple=True, pdnorm_adaptive=False, pdnorm_affine=True, pdnorm_conditions=None,
)


# =============================================================================================
# Building blocks
# =============================================================================================
def batch_norm(channels: int) -> nn.Module:
    """Pointcept's BatchNorm for the stem, pooling and unpooling (eps 1e-3, momentum 0.01)."""
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


class DropPath(nn.Module):
    """Stochastic depth per point (timm's ``DropPath`` on an ``(N, C)`` tensor)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or for p = 0 (every Point-MoE config) ``nn.Identity``: the same outputs
    without a call of ``F.dropout`` per use (66 per Point-MoE-L forward, host time on a GPU)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


class MLP(nn.Module):
    """The block's feed-forward network: fc1 -> GELU -> fc2."""

    def __init__(self, channels: int, hidden_channels: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden_channels)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_channels, channels)
        self.drop = dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def attention_windows(point: Point, patch_size: int) -> dict[str, Any]:
    """Pad/unpad indices that cut every cloud's serialized sequence into windows of ``patch_size``.

    A cloud of ``n > K`` points is padded to a multiple of ``K``: the last, partial window
    (``r = n mod K`` new points) is filled with the ``K - r`` points just before it, which are
    duplicates whose outputs are discarded. A cloud of ``n <= K`` points is one window of ``n``.

    Returns (cached on ``point.cache`` per patch size, so the decoder at stage ``s`` reuses the
    encoder's; the official code caches without the size, which only matters if a stage's
    encoder and decoder patch sizes differ):
      ``pad`` (N_pad,): padded slot -> sequence position; ``unpad`` (N,): sequence position ->
      padded slot; ``cu_seqlens`` (W + 1,) int32 window starts; ``window``: the longest window
      (K, or the points of a cloud that is one window); ``full``: every window has ``window``
      points, so attention needs no mask.
    ``pad`` and ``unpad`` are ``None`` where they are the identity (one cloud: unpad always, pad
    unless the cloud has a partial window).
    """
    key = ("attention_windows", patch_size)
    if key not in point.cache:
        num_points = len(point.batch)
        if len(point.offset) == 1 and num_points:
            point.cache[key] = _one_cloud_windows(num_points, patch_size, point.offset.device)
        else:
            point.cache[key] = _batch_windows(point.bincount, patch_size)
    return point.cache[key]


def _one_cloud_windows(num_points: int, K: int, device: torch.device) -> dict[str, Any]:
    """``attention_windows`` of one cloud: every size follows from its number of points."""
    padded = (num_points + K - 1) // K * K if num_points > K else num_points
    pad = None
    if padded > num_points:
        slot = torch.arange(padded, device=device)
        pad = torch.where(slot < num_points, slot, slot - K)  # tail slots repeat earlier points
    window = min(K, num_points)
    cu_seqlens = torch.arange(0, padded + 1, window, dtype=torch.int32, device=device)
    return dict(pad=pad, unpad=None, cu_seqlens=cu_seqlens, window=window, full=True)


def _batch_windows(counts: torch.Tensor, K: int) -> dict[str, Any]:
    """``attention_windows`` of a batch of clouds of ``counts`` points each."""
    device = counts.device
    sizes = counts.tolist()  # the one read from the device: every size the tensors need follows here
    padded_sizes = [(c + K - 1) // K * K if c > K else c for c in sizes]
    window_sizes = [(p + K - 1) // K for p in padded_sizes]
    padded = torch.where(counts > K, (counts + K - 1) // K * K, counts)
    start = torch.cumsum(counts, 0) - counts
    start_pad = torch.cumsum(padded, 0) - padded
    num_clouds = len(counts)

    unpad = torch.arange(sum(sizes), device=device)
    unpad = unpad + torch.repeat_interleave(start_pad - start, counts, output_size=sum(sizes))

    cloud = torch.repeat_interleave(torch.arange(num_clouds, device=device), padded, output_size=sum(padded_sizes))
    local = torch.arange(sum(padded_sizes), device=device) - start_pad[cloud]
    local = torch.where(local < counts[cloud], local, local - K)  # tail slots repeat earlier points
    pad = local + start[cloud]

    windows = (padded + K - 1) // K
    w_cloud = torch.repeat_interleave(torch.arange(num_clouds, device=device), windows, output_size=sum(window_sizes))
    w_local = torch.arange(sum(window_sizes), device=device) - (torch.cumsum(windows, 0) - windows)[w_cloud]
    cu_seqlens = torch.cat([start_pad[w_cloud] + w_local * K, padded.sum().view(1)]).int()
    return dict(pad=pad, unpad=unpad, cu_seqlens=cu_seqlens, window=K, full=all(c >= K for c in sizes))


class SerializedAttention(nn.Module):
    """PTv3 serialized (patch) attention; ``proj`` is W_o, a ``SparseMoE`` in Point-MoE.

    Points are sorted along curve ``order_index`` and attention runs inside consecutive windows
    of ``patch_size`` points, scale ``(C/H)^-0.5``. Without ``enable_flash`` the window is
    ``min(patch_size, points in the smallest cloud)`` (no masking needed); with it, windows are
    ``patch_size`` and a smaller cloud forms one shorter window (flash-attn's varlen layout). The
    kernel is flash-attn's varlen function when it imports and tensors are on CUDA (fp16, like
    the official code); otherwise ``F.scaled_dot_product_attention`` in the input dtype.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int,
        patch_size: int,
        proj: nn.Module,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        order_index: int = 0,
        enable_flash: bool = True,
        upcast: bool = False,
    ):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.channels = channels
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.scale = qk_scale or (channels // num_heads) ** -0.5
        self.order_index = order_index
        self.enable_flash = enable_flash
        self.upcast = upcast
        self.attn_drop = attn_drop
        self.proj = proj
        self.proj_drop = dropout(proj_drop)
        self.qkv = nn.Linear(channels, channels * 3, bias=qkv_bias)

    def window_size(self, point: Point) -> int:
        if self.enable_flash:
            return self.patch_size
        return min(int(point.bincount.min()), self.patch_size)

    def forward(self, feat: torch.Tensor, point: Point) -> torch.Tensor:
        K = self.window_size(point)
        win = attention_windows(point, K)
        order = point.serialized_order[self.order_index]
        inverse = point.serialized_inverse[self.order_index]
        if win["pad"] is not None:
            order = order[win["pad"]]
        if win["unpad"] is not None:
            inverse = win["unpad"][inverse]

        qkv = self.qkv(feat)[order]  # (N_pad, 3C) in serialized, padded order
        out = self.attend(qkv, win["window"], win["cu_seqlens"], win["full"])
        return self.proj_drop(self.proj(out[inverse]))

    def attend(self, qkv: torch.Tensor, K: int, cu_seqlens: torch.Tensor, full: bool) -> torch.Tensor:
        """Attention inside each window: ``(N_pad, 3C) -> (N_pad, C)``."""
        H, C = self.num_heads, self.channels
        D = C // H
        dropout = self.attn_drop if self.training else 0.0
        if self.enable_flash and flash_attn is not None and qkv.is_cuda:
            out = flash_attn.flash_attn_varlen_qkvpacked_func(
                qkv.half().reshape(-1, 3, H, D), cu_seqlens, max_seqlen=K,
                dropout_p=dropout, softmax_scale=self.scale,
            )
            return out.reshape(-1, C).to(qkv.dtype)

        dtype = qkv.dtype
        if self.upcast:
            qkv = qkv.float()
        if full:  # every window has exactly K points
            q, k, v = qkv.reshape(-1, K, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)  # (W, H, K, D)
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=self.scale)
            return out.transpose(1, 2).reshape(-1, C).to(dtype)
        # Variable-length windows: gather into (W, K) slots and mask the missing keys.
        starts, lengths = cu_seqlens[:-1].long(), torch.diff(cu_seqlens).long()
        slot = torch.arange(K, device=qkv.device)
        valid = slot < lengths[:, None]
        index = torch.where(valid, starts[:, None] + slot, starts[:, None])
        q, k, v = qkv[index].reshape(-1, K, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=valid[:, None, None, :], dropout_p=dropout, scale=self.scale
        )
        return out.transpose(1, 2).reshape(-1, K, C)[valid].to(dtype)


class Block(nn.Module):
    """PTv3 block: xCPE (sparse conv -> Linear -> LayerNorm, residual), then pre-norm
    serialized attention and MLP, each residual with stochastic depth."""

    def __init__(
        self,
        channels: int,
        num_heads: int,
        patch_size: int,
        config: BackboneConfig,
        drop_path: float = 0.0,
        order_index: int = 0,
        moe_proj: bool = False,
        moe_mlp: bool = False,
    ):
        super().__init__()
        c = config
        self.pre_norm = c.pre_norm
        self.cpe = nn.ModuleList([
            SubMConv3d(channels, channels, 3, bias=True, backend=c.conv_backend),
            nn.Linear(channels, channels),
            nn.LayerNorm(channels),
        ])
        self.norm1 = nn.Sequential(nn.LayerNorm(channels))
        proj = make_moe(channels, c) if moe_proj else nn.Linear(channels, channels)
        self.attn = SerializedAttention(
            channels, num_heads, patch_size, proj,
            qkv_bias=c.qkv_bias, qk_scale=c.qk_scale, attn_drop=c.attn_drop,
            proj_drop=c.proj_drop, order_index=order_index, enable_flash=c.enable_flash,
            upcast=c.upcast_attention or c.upcast_softmax,
        )
        self.norm2 = nn.Sequential(nn.LayerNorm(channels))
        if moe_mlp:
            self.mlp = nn.Sequential(make_moe(channels, c))
        else:
            self.mlp = nn.Sequential(MLP(channels, int(channels * c.mlp_ratio), drop=c.proj_drop))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, point: Point) -> Point:
        feat = point.feat
        conv, linear, norm = self.cpe
        conv_in = feat if point.conv_feat is None else point.conv_feat
        feat = feat + norm(linear(conv(conv_in, point.grid_coord, point.batch, point.cache)))

        shortcut = feat
        if self.pre_norm:
            feat = self.norm1(feat)
        feat = shortcut + self.drop_path(self.attn(feat, point))
        if not self.pre_norm:
            feat = self.norm1(feat)

        shortcut = feat
        if self.pre_norm:
            feat = self.norm2(feat)
        feat = shortcut + self.drop_path(self.mlp(feat))
        if not self.pre_norm:
            feat = self.norm2(feat)

        point.feat = feat
        point.conv_feat = None
        return point


def make_moe(channels: int, config: BackboneConfig) -> SparseMoE:
    """The Point-MoE expert layer: softmax top-k router over gated-MLP experts."""
    return SparseMoE(
        channels,
        num_experts=config.num_experts,
        top_k=config.top_k,
        hidden_ratio=config.moe_hidden_ratio,
        act=config.moe_act,
        aux_loss_alpha=config.aux_loss_alpha,
    )


class SerializedPooling(nn.Module):
    """PTv3 grid pooling: merge each ``stride^3`` cell of the serialization grid into one point.

    Clusters are points sharing ``code >> 3*log2(stride)`` of the first curve; features go
    through ``proj`` and are max-reduced, coordinates averaged, then BN (or LN) + GELU. The
    pooled point keeps ``pooling_parent`` and ``pooling_inverse`` for unpooling and inherits the
    parent's codes shifted right (not re-encoded).

    Official quirk: the pooled list of curves is permuted with ``torch.randperm`` on the global
    RNG *even in eval* (the backbone never passes its ``shuffle_orders`` down). Pass ``perm`` (or
    a ``generator``) to make it reproducible; ``shuffle_orders=False`` disables it.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2,
                 norm_layer=batch_norm, shuffle_orders: bool = True):
        super().__init__()
        self.stride = stride
        self.shuffle_orders = shuffle_orders
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = nn.Sequential(norm_layer(out_channels))
        self.act = nn.Sequential(nn.GELU())

    def forward(self, point: Point, perm: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> Point:
        depth = int(math.log2(self.stride))
        if depth > point.serialized_depth:
            depth = 0
        code = point.serialized_code >> (depth * 3)
        _, cluster, counts = torch.unique(code[0], sorted=True, return_inverse=True, return_counts=True)
        indices = torch.sort(cluster, stable=True).indices  # points grouped by cluster
        ptr = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
        head = indices[ptr[:-1]]  # one representative per cluster

        code = code[:, head]
        order = torch.argsort(code, dim=-1, stable=True)
        inverse = inverse_permutation(order)
        if self.shuffle_orders:
            if perm is None:
                perm = torch.randperm(code.shape[0], generator=generator)
            perm = perm.to(code.device)
            code, order, inverse = code[perm], order[perm], inverse[perm]

        feat = torch.segment_reduce(self.proj(point.feat)[indices], "max", offsets=ptr)
        coord = torch.segment_reduce(point.coord[indices], "mean", offsets=ptr)
        batch = point.batch[head]  # ascending: the first code's top bits are the cloud
        pooled = Point(
            feat=self.act(self.norm(feat)),
            coord=coord,
            grid_coord=point.grid_coord[head] >> depth,
            batch=batch,
            offset=batch2offset(batch, len(point.offset)),
            grid_size=None if point.grid_size is None else point.grid_size * self.stride,
            serialized_depth=point.serialized_depth - depth,
            serialized_code=code,
            serialized_order=order,
            serialized_inverse=inverse,
            pooling_parent=point,
            pooling_inverse=cluster,
        )
        return pooled


class SerializedUnpooling(nn.Module):
    """PTv3 unpooling: ``proj(coarse)[inverse] + proj_skip(parent)``, each Linear + BN + GELU.

    Official quirk (kept unless ``fix_cpe_input``): the parent's sparse-conv tensor is refreshed
    by ``proj_skip`` but not after the addition, so the next block's xCPE convolution sees only
    the skip branch; we record it as ``parent.conv_feat``.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int,
                 norm_layer=batch_norm, fix_cpe_input: bool = False):
        super().__init__()
        self.proj = nn.Sequential(
            nn.Linear(in_channels, out_channels), norm_layer(out_channels), nn.GELU())
        self.proj_skip = nn.Sequential(
            nn.Linear(skip_channels, out_channels), norm_layer(out_channels), nn.GELU())
        self.fix_cpe_input = fix_cpe_input

    def forward(self, point: Point) -> Point:
        parent, inverse = point.pooling_parent, point.pooling_inverse
        if parent is None or inverse is None:
            raise ValueError("unpooling needs a Point produced by SerializedPooling")
        coarse = self.proj(point.feat)
        skip = self.proj_skip(parent.feat)
        parent.feat = skip + coarse[inverse]
        parent.conv_feat = None if self.fix_cpe_input else skip
        return parent


class Embedding(nn.Module):
    """Stem: SubMConv3d(k=5 in PTv3, no bias) -> BatchNorm (or LayerNorm) -> GELU."""

    def __init__(self, in_channels: int, embed_channels: int, norm_layer=batch_norm,
                 conv_backend: str = "auto", kernel_size: int = 5):
        super().__init__()
        self.stem = nn.ModuleDict(dict(
            conv=SubMConv3d(in_channels, embed_channels, kernel_size, bias=False, backend=conv_backend),
            norm=norm_layer(embed_channels),
            act=nn.GELU(),
        ))

    def forward(self, point: Point) -> Point:
        feat = self.stem["conv"](point.feat, point.grid_coord, point.batch, point.cache)
        point.feat = self.stem["act"](self.stem["norm"](feat))
        return point


class EncoderStage(nn.Module):
    """``enc{s}``: optional ``down`` (SerializedPooling) then ``block0..``."""

    def __init__(self, down: SerializedPooling | None, blocks: Sequence[Block]):
        super().__init__()
        if down is not None:
            self.down = down
        for i, block in enumerate(blocks):
            self.add_module(f"block{i}", block)
        self.num_blocks = len(blocks)

    def forward(self, point: Point, perm: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> Point:
        if hasattr(self, "down"):
            point = self.down(point, perm=perm, generator=generator)
        for i in range(self.num_blocks):
            point = getattr(self, f"block{i}")(point)
        return point


class DecoderStage(nn.Module):
    """``dec{s}``: ``up`` (SerializedUnpooling) then ``block0..``."""

    def __init__(self, up: SerializedUnpooling, blocks: Sequence[Block]):
        super().__init__()
        self.up = up
        for i, block in enumerate(blocks):
            self.add_module(f"block{i}", block)
        self.num_blocks = len(blocks)

    def forward(self, point: Point) -> Point:
        point = self.up(point)
        for i in range(self.num_blocks):
            point = getattr(self, f"block{i}")(point)
        return point


# =============================================================================================
# Backbone
# =============================================================================================
class PointTransformerMoE(nn.Module):
    """Point-MoE backbone (official "PTMoE-v0m0"): PTv3 U-Net with MoE attention projections.

    ``forward(data)`` takes a ``Point`` or a Pointcept-style dict (``coord``, ``grid_coord`` or
    ``grid_size``, ``feat``, ``offset`` or ``batch``) and returns the ``Point`` of the finest
    stage whose ``feat`` (N, dec_channels[0]) is in input order (``enc_channels[-1]`` at the
    coarsest stage in ``cls_mode``).
    """

    def __init__(self, config: BackboneConfig | None = None, **kwargs: Any):
        super().__init__()
        if config is None:
            config = BackboneConfig(**kwargs)
        elif kwargs:
            raise TypeError("pass either a BackboneConfig or keyword arguments, not both")
        self.config = c = config
        norm_layer = nn.LayerNorm if c.use_layer_norm else batch_norm
        placement = c.moe_placement
        use_proj_moe = placement in ("proj", "both")
        use_mlp_moe = placement in ("mlp", "both")

        def moe_here(layer_idx: int, in_part: bool) -> tuple[bool, bool]:
            apply = placement != "none" and in_part and (
                c.moe_layers is None or layer_idx in c.moe_layers)
            return apply and use_proj_moe, apply and use_mlp_moe

        self.embedding = Embedding(c.in_channels, c.enc_channels[0], norm_layer, c.conv_backend, c.stem_kernel)

        num_stages = len(c.enc_depths)
        enc_dp = torch.linspace(0, c.drop_path, sum(c.enc_depths)).tolist()
        self.enc = nn.ModuleDict()
        layer_idx = 0
        for s in range(num_stages):
            down = None
            if s > 0:
                down = SerializedPooling(c.enc_channels[s - 1], c.enc_channels[s], c.stride[s - 1],
                                         norm_layer, shuffle_orders=c.pool_shuffle_orders)
            blocks = []
            for i in range(c.enc_depths[s]):
                moe_proj, moe_mlp = moe_here(layer_idx, c.moe_in_encoder)
                blocks.append(Block(
                    c.enc_channels[s], c.enc_num_head[s], c.enc_patch_size[s], c,
                    drop_path=enc_dp[sum(c.enc_depths[:s]) + i], order_index=i % len(c.order),
                    moe_proj=moe_proj, moe_mlp=moe_mlp,
                ))
                layer_idx += 1
            self.enc[f"enc{s}"] = EncoderStage(down, blocks)

        if not c.cls_mode:
            dec_dp = torch.linspace(0, c.drop_path, sum(c.dec_depths)).tolist()
            dec_channels = list(c.dec_channels) + [c.enc_channels[-1]]
            self.dec = nn.ModuleDict()
            layer_idx = 0
            for s in reversed(range(num_stages - 1)):
                stage_dp = dec_dp[sum(c.dec_depths[:s]): sum(c.dec_depths[: s + 1])][::-1]
                up = SerializedUnpooling(dec_channels[s + 1], c.enc_channels[s], dec_channels[s],
                                         norm_layer, fix_cpe_input=c.fix_unpool_cpe)
                blocks = []
                for i in range(c.dec_depths[s]):
                    moe_proj, moe_mlp = moe_here(layer_idx, c.moe_in_decoder)
                    blocks.append(Block(
                        dec_channels[s], c.dec_num_head[s], c.dec_patch_size[s], c,
                        drop_path=stage_dp[i], order_index=i % len(c.order),
                        moe_proj=moe_proj, moe_mlp=moe_mlp,
                    ))
                    layer_idx += 1
                self.dec[f"dec{s}"] = DecoderStage(up, blocks)
        # each MoE layer's stage: its rows are that stage's points (the decoder's dec{s} works on
        # the points of the encoder's enc{s})
        stages = [(f"enc.enc{s}", s) for s in range(num_stages)]
        stages += [] if c.cls_mode else [(f"dec.dec{s}", s) for s in range(num_stages - 1)]
        self.moe_stage = {f"{prefix}.{name}": s for prefix, s in stages
                          for name, m in self.get_submodule(prefix).named_modules() if isinstance(m, SparseMoE)}

    @classmethod
    def from_official_kwargs(cls, kwargs: Mapping[str, Any], **overrides: Any) -> "PointTransformerMoE":
        """Build from the official constructor kwargs (see ``BackboneConfig.from_official_kwargs``)."""
        return cls(BackboneConfig.from_official_kwargs(kwargs, **overrides))

    def kernels(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> dict[str, str]:
        """The kernels a forward on ``device`` in ``dtype`` (autocast's, else float32) runs:
        ``sparse_conv`` ("spconv", "torch" or "grouped_mm", joined by "+" where layers differ),
        ``attention`` ("flash_attn_varlen" or "sdpa") and
        ``moe_dispatch`` ("grouped_mm", "loop", or "none" without MoE layers), so a user sees which
        fall-back was taken."""
        conv = sorted({m.kernel(device, dtype) for m in self.modules() if isinstance(m, SubMConv3d)})
        flash = self.config.enable_flash and flash_attn is not None and torch.device(device).type == "cuda"
        dispatch = sorted({m.kernel(device, dtype) for m in self.modules() if isinstance(m, SparseMoE)})
        return {"sparse_conv": "+".join(conv), "attention": "flash_attn_varlen" if flash else "sdpa",
                "moe_dispatch": "+".join(dispatch) or "none"}

    @property
    def out_channels(self) -> int:
        c = self.config
        return c.enc_channels[-1] if c.cls_mode else c.dec_channels[0]

    def forward(
        self,
        data: Point | Mapping[str, Any],
        pool_order_perms: Sequence[torch.Tensor] | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Point:
        """Run the backbone.

        ``pool_order_perms[s - 1]`` (length ``len(order)``) replaces the random permutation
        drawn by the pooling into stage ``s``; ``generator`` feeds every random order shuffle
        (default: the global RNG, as in the official code).
        """
        c = self.config
        point = data if isinstance(data, Point) else Point.from_dict(data)
        point.serialization(c.order, shuffle_orders=c.shuffle_orders, generator=generator)
        point = self.embedding(point)
        stage_rows = [torch.arange(len(point.feat), device=point.feat.device)]
        for s, stage in enumerate(self.enc.values()):
            perm = None
            if s > 0 and pool_order_perms is not None:
                perm = torch.as_tensor(pool_order_perms[s - 1], dtype=torch.long)
            point = stage(point, perm=perm, generator=generator)
            if s > 0:  # an input point is where the token it was pooled into is
                stage_rows.append(point.pooling_inverse[stage_rows[-1]])
        if not c.cls_mode:
            for stage in self.dec.values():
                point = stage(point)
        point.stage_rows = stage_rows
        return point

    # ---- MoE introspection ------------------------------------------------------------------
    def moe_layers(self) -> dict[str, SparseMoE]:
        """Every MoE layer by module name, e.g. ``"enc.enc0.block0.attn.proj"``."""
        return {name: m for name, m in self.named_modules() if isinstance(m, SparseMoE)}

    def routing(self) -> dict[str, torch.Tensor]:
        """Top-k expert ids ``(N_stage, k)`` of each MoE layer from the last forward.

        Rows follow that stage's point storage order (input order at stage 0).
        """
        return {name: m.last_topk_idx for name, m in self.moe_layers().items()
                if getattr(m, "last_topk_idx", None) is not None}

    def point_routing(self, point: Point) -> dict[str, torch.Tensor]:
        """Top-k expert ids ``(N, k)`` of each MoE layer for every input point, in input order, from
        the forward that returned ``point``: a point at a pooled stage takes the routing of the
        token it was pooled into."""
        return {name: topk[point.stage_rows[self.moe_stage[name]]] for name, topk in self.routing().items()}

    def aux_loss(self) -> torch.Tensor | None:
        """Sum of the MoE load-balancing losses of the last forward (``None`` when there are none)."""
        losses = [m.aux_loss for m in self.moe_layers().values() if getattr(m, "aux_loss", None) is not None]
        return torch.stack([torch.as_tensor(l) for l in losses]).sum() if losses else None
