"""Dense→MoE conversion: exactness at conversion, top-k routing, load-balance loss, routing report."""
import copy
import logging

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from pointmoe_core.common import grouped_mm
from pointmoe_core.common.moe import dispatch_to_experts, grouped_dispatch_supported
from pointmoe_core.plan.llm_moe import (
    MoEMLP,
    convert_llama_to_moe,
    moe_aux_loss,
    moe_layers,
    reset_routing_stats,
    routing_report,
    set_modality_mask,
)
from pointmoe_core.plan.lora import LoRAConfig, apply_lora, merge_adapters


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def token_ids(batch: int = 2, length: int = 12) -> torch.Tensor:
    return torch.randint(0, 64, (batch, length), generator=torch.Generator().manual_seed(1))


def reference_moe(moe: MoEMLP, x: torch.Tensor) -> tuple[torch.Tensor, list[set[int]]]:
    """Per-token loop: softmax over experts, the k largest by a Python sort, renormalised mix."""
    outputs, chosen = [], []
    for token in x:
        probs = torch.softmax(moe.router(token), -1)
        top = sorted(range(moe.num_experts), key=lambda e: -float(probs[e]))[: moe.top_k]
        total = sum(float(probs[e]) for e in top)
        outputs.append(sum(float(probs[e]) / total * moe.experts[e](token) for e in top))
        chosen.append(set(top))
    return torch.stack(outputs), chosen


def hand_routed_moe(num_experts: int, top_k: int = 1) -> MoEMLP:
    """Inputs of width E whose router logits are the inputs themselves (identity router)."""
    moe = MoEMLP(nn.Linear(num_experts, num_experts, bias=False), num_experts, num_experts, top_k, 0.02)
    with torch.no_grad():
        moe.router.weight.copy_(torch.eye(num_experts))
    return moe


@pytest.mark.parametrize("num_experts", [2, 4])
@pytest.mark.parametrize("top_k", [1, 2])
def test_converted_logits_equal_dense(num_experts, top_k):
    dense = tiny_llama()
    ids = token_ids()
    with torch.no_grad():
        expected = dense(ids).logits
        moe = convert_llama_to_moe(copy.deepcopy(dense), num_experts, top_k)
        got = moe(ids).logits
    layers = moe_layers(moe)
    assert len(layers) == dense.config.num_hidden_layers
    assert all(len(layer.experts) == num_experts and layer.top_k == top_k for layer in layers)
    # the router is random (not all ties), yet the identical experts make the output exact
    assert all(layer.router.weight.abs().sum() > 0 for layer in layers)
    assert len(torch.unique(layers[0].last_topk_idx[:, 0])) > 1
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_conversion_refuses_a_moe_model():
    model = convert_llama_to_moe(tiny_llama(), 2, 1)
    with pytest.raises(ValueError, match="already"):
        convert_llama_to_moe(model, 2, 1)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_router_topk_and_weights_match_per_token_loop(top_k):
    torch.manual_seed(0)
    moe = MoEMLP(nn.Sequential(nn.Linear(8, 16), nn.SiLU(), nn.Linear(16, 8)), 8, 4, top_k, 1.0)
    for expert in moe.experts:  # distinct experts, so a wrong choice or weight shows up
        for param in expert.parameters():
            nn.init.normal_(param)
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        out = moe(x)
        expected, chosen = reference_moe(moe, x.reshape(-1, 8))
    torch.testing.assert_close(out.reshape(-1, 8), expected, atol=1e-5, rtol=1e-5)
    assert [set(row.tolist()) for row in moe.last_topk_idx] == chosen
    _, weights, _ = moe.route(x.reshape(-1, 8))
    torch.testing.assert_close(weights.sum(-1), torch.ones(15))


def test_llama_experts_run_as_grouped_gemms_unless_lora_adapters_are_unmerged(monkeypatch):
    """The same dispatch as Point-MoE's: LLaMA MLP copies are plain gated MLPs, so on CUDA in bfloat16
    they run as grouped GEMMs (here forced on the CPU: same logits as the expert loop); LoRA's wrapped
    layers keep the loop while they train, and are grouped again once merged for inference."""
    monkeypatch.setattr(grouped_mm, "capability_major", lambda device: 9)  # as on an H100
    model = convert_llama_to_moe(tiny_llama(), 4, 2)
    layer = moe_layers(model)[0]
    for expert in layer.experts:  # distinct experts, so a wrong slice shows up
        for param in expert.parameters():
            nn.init.normal_(param, std=0.2)
    x = torch.randn(30, 32)
    _, weights, experts = layer.route(x)
    with torch.no_grad():
        loop, counts = dispatch_to_experts(x, layer.experts, weights, experts, "loop")
        grouped, grouped_counts = dispatch_to_experts(x, layer.experts, weights, experts, "grouped")
    torch.testing.assert_close(grouped, loop, rtol=1e-5, atol=1e-5)
    assert torch.equal(grouped_counts, counts)
    with torch.no_grad():
        assert grouped_dispatch_supported(layer.experts, "cuda", torch.bfloat16) == hasattr(torch, "_grouped_mm")
        apply_lora(model, LoRAConfig(r=2, alpha=4, target_modules=("gate_proj", "up_proj", "down_proj")))
        assert not grouped_dispatch_supported(layer.experts, "cuda", torch.bfloat16)
        model.eval()  # the adapters' new dropout modules start in training mode
        for name, param in model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: make the merge change the weights
                nn.init.normal_(param, std=0.2)
        adapted, _ = dispatch_to_experts(x, layer.experts, weights, experts, "loop")
        assert not torch.allclose(adapted, loop, atol=1e-3)
        merge_adapters(model)
        assert grouped_dispatch_supported(layer.experts, "cuda", torch.bfloat16) == hasattr(torch, "_grouped_mm")
        merged, _ = dispatch_to_experts(x, layer.experts, weights, experts, "grouped")
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-4)


def test_router_learns_from_the_task_loss_at_top1():
    # renormalising a single weight gives the constant 1; the detached sum keeps a gradient
    model = convert_llama_to_moe(tiny_llama(), 2, 1)
    model(token_ids()).logits.square().mean().backward()
    assert all(layer.router.weight.grad.abs().sum() > 0 for layer in moe_layers(model))


def test_load_balance_loss_uniform_and_collapsed():
    num_experts = 4
    moe = hand_routed_moe(num_experts)
    # token i prefers expert i: every expert gets a quarter of the tokens and of the mean probability
    moe(10 * torch.eye(num_experts))
    torch.testing.assert_close(moe.aux_loss, torch.tensor(1.0))
    # every token prefers expert 0: f = (1, 0, 0, 0), P ~ (1, 0, 0, 0), loss ~ E
    collapsed = torch.zeros(8, num_experts)
    collapsed[:, 0] = 30
    moe(collapsed)
    torch.testing.assert_close(moe.aux_loss, torch.tensor(float(num_experts)))
    # moe_aux_loss sums over layers
    layers = nn.ModuleList([moe, hand_routed_moe(num_experts)])
    for layer in layers:
        layer(collapsed)
    torch.testing.assert_close(moe_aux_loss(layers), torch.tensor(2.0 * num_experts))


def test_routing_report_splits_by_modality(caplog):
    moe = hand_routed_moe(2)
    # 3 scene tokens go to expert 0, 5 text tokens to expert 1
    x = torch.tensor([[5.0, 0.0]] * 3 + [[0.0, 5.0]] * 5).unsqueeze(0)
    is_3d = torch.tensor([[True] * 3 + [False] * 5])
    set_modality_mask(moe, is_3d)
    with caplog.at_level(logging.WARNING):
        moe(x)
        report = routing_report(moe)
    layer = report["layers"][0]
    assert report["num_experts"] == 2 and report["top_k"] == 1
    assert layer["3d"] == {"tokens": 3, "load": [1.0, 0.0], "first_choice": [1.0, 0.0]}
    assert layer["text"] == {"tokens": 5, "load": [0.0, 1.0], "first_choice": [0.0, 1.0]}
    assert layer["top_share"] == pytest.approx(5 / 8) and not layer["collapsed"]
    assert not caplog.records

    with pytest.raises(ValueError, match="modality mask"):
        moe(x[:, :4])

    # padding (the last 2 text tokens here) is neither counted nor balanced
    reset_routing_stats(moe)
    real = torch.tensor([[True] * 6 + [False] * 2])
    set_modality_mask(moe, is_3d, real)
    moe(x)
    layer = routing_report(moe)["layers"][0]
    assert layer["3d"]["tokens"] == 3 and layer["text"]["tokens"] == 3
    unpadded = hand_routed_moe(2)
    unpadded(x[:, :6])
    torch.testing.assert_close(moe.aux_loss, unpadded.aux_loss)
    set_modality_mask(moe, None)
    reset_routing_stats(moe)
    assert routing_report(moe)["layers"][0]["text"]["tokens"] == 0


def test_collapse_warns_once_per_layer(caplog):
    model = nn.ModuleList([hand_routed_moe(2), hand_routed_moe(2)])
    x = torch.tensor([[5.0, 0.0]] * 19 + [[0.0, 5.0]])  # 95% of the tokens pick expert 0
    for layer in model:
        layer(x)
    with caplog.at_level(logging.WARNING, logger="pointmoe_core.plan.llm_moe"):
        report = routing_report(model, reset=True)
    assert [layer["collapsed"] for layer in report["layers"]] == [True, True]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all("expert 0" in w and "95.0%" in w for w in warnings)
    assert routing_report(model)["layers"][0]["text"]["tokens"] == 0  # reset=True cleared the counters


def test_modality_counts_through_a_converted_llama():
    model = convert_llama_to_moe(tiny_llama(), 4, 2)
    ids = token_ids(2, 10)
    is_3d = torch.zeros(2, 10, dtype=torch.bool)
    is_3d[:, 2:6] = True  # 4 scene tokens per sequence, as spliced in at the placeholder
    set_modality_mask(model, is_3d)
    with torch.no_grad():
        model(ids)
    for layer in routing_report(model)["layers"]:
        assert layer["3d"]["tokens"] == 8 and layer["text"]["tokens"] == 12
        assert sum(layer["3d"]["load"]) == pytest.approx(1.0)
