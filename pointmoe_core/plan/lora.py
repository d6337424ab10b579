"""LoRA fine-tuning of the (MoE) LLM: 3D-MoE's stage II adapters, through peft.

Ma et al., "3D-MoE" (arXiv 2501.16698) fine-tune the converted Mixture-of-Experts LLM with LoRA
(rank 128, alpha 256) on every Transformer layer. Here the adapters sit on the attention
projections (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``) and on each expert's ``gate_proj``,
``up_proj`` and ``down_proj`` (so E experts get E independent adapters and can drift apart from
their common copy); the modules named in ``trainable_modules`` (the MoE routers, and the
planner's projector when it is part of the model) are trained in full; everything else, the
pretrained base, stays frozen.

``apply_lora(model, config)`` injects the adapters in place (the model keeps its class, so
:mod:`.llm_moe` helpers and ``generate`` work unchanged). ``save_adapters`` writes only the
trained weights (``adapters.safetensors``) plus ``adapters.json`` with the LoRA and MoE settings,
separately from the frozen base, and ``load_adapters`` puts them back onto a freshly loaded (and
converted) base.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file, save_file
from torch import nn

from ..common.config import YamlConfig
from .llm_moe import moe_layers

WEIGHTS_NAME = "adapters.safetensors"
CONFIG_NAME = "adapters.json"
CONFIG_ATTR = "pointmoe_lora_config"  # where apply_lora leaves its config on the model
ADAPTER_PARAM_PREFIX = "lora_"  # peft's names: ...q_proj.lora_A.default.weight


@dataclass
class LoRAConfig(YamlConfig):
    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    # peft matches a module whose name is, or ends with "." + , one of these
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    # modules trained in full, matched against any component of the dotted module name
    trainable_modules: tuple[str, ...] = ("router",)


def _fully_trained(name: str, modules: tuple[str, ...]) -> bool:
    return bool(set(name.split(".")[:-1]) & set(modules))


def apply_lora(model: nn.Module, config: LoRAConfig) -> nn.Module:
    """Add LoRA adapters in place and freeze everything but adapters and ``trainable_modules``."""
    if getattr(model, CONFIG_ATTR, None) is not None:
        raise ValueError("model already has LoRA adapters")
    peft_config = LoraConfig(
        r=config.r, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=list(config.target_modules)
    )
    inject_adapter_in_model(peft_config, model)
    for name, param in model.named_parameters():
        param.requires_grad = ADAPTER_PARAM_PREFIX in name or _fully_trained(name, config.trainable_modules)
    setattr(model, CONFIG_ATTR, config)
    return model


def merge_adapters(model: nn.Module) -> int:
    """Fold every LoRA adapter into its base weight (peft's ``merge``), for inference: the same
    outputs without each projection's two extra rank-r matmuls. The adapters' weights stay, so
    ``save_adapters`` still writes them. Returns how many projections were merged."""
    layers = [module for module in model.modules() if isinstance(module, LoraLayer) and not module.merged]
    for layer in layers:
        layer.merge()
    return len(layers)


def trainable_parameter_report(model: nn.Module) -> dict[str, int]:
    """Parameter counts: ``total``, ``trainable`` = ``lora`` + ``full`` (whole trained modules), ``frozen``."""
    counts = {"total": 0, "trainable": 0, "lora": 0, "full": 0, "frozen": 0}
    for name, param in model.named_parameters():
        n = param.numel()
        counts["total"] += n
        if not param.requires_grad:
            counts["frozen"] += n
            continue
        counts["trainable"] += n
        counts["lora" if ADAPTER_PARAM_PREFIX in name else "full"] += n
    return counts


def _moe_shape(model: nn.Module) -> dict[str, int] | None:
    layers = moe_layers(model)
    return {"num_experts": layers[0].num_experts, "top_k": layers[0].top_k} if layers else None


def save_adapters(model: nn.Module, path: str | Path) -> Path:
    """Write the trained weights (adapters + fully trained modules) and their config into folder ``path``."""
    config = getattr(model, CONFIG_ATTR, None)
    if config is None:
        raise ValueError("model has no LoRA adapters: call apply_lora first")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    save_file(tensors, path / WEIGHTS_NAME)
    meta = {"lora": config.to_dict(), "moe": _moe_shape(model)}
    (path / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_adapters(model: nn.Module, path: str | Path) -> nn.Module:
    """Load what :func:`save_adapters` wrote onto a fresh base (converted to the same MoE shape first).

    Adds the adapters if the model has none yet; every trained weight must be in the file and
    every tensor in the file must belong to the model.
    """
    path = Path(path)
    if not (path / CONFIG_NAME).is_file() or not (path / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"no adapters in {path}: expected {CONFIG_NAME} and {WEIGHTS_NAME}")
    meta = json.loads((path / CONFIG_NAME).read_text())
    if meta["moe"] != _moe_shape(model):
        raise ValueError(
            f"adapters were trained on MoE shape {meta['moe']} but the model has {_moe_shape(model)}; "
            "convert the base with convert_llama_to_moe to the same num_experts/top_k first"
        )
    if getattr(model, CONFIG_ATTR, None) is None:
        apply_lora(model, LoRAConfig.from_dict(meta["lora"]))
    tensors = load_file(path / WEIGHTS_NAME)
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise ValueError(f"adapter weights do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[name])
    return model
