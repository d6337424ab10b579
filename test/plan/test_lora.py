"""LoRA on the MoE LLM: exactly the intended parameters train, and adapters round-trip."""
import json

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from pointmoe_core.plan.llm_moe import convert_llama_to_moe, moe_aux_loss
from pointmoe_core.plan.lora import LoRAConfig, apply_lora, load_adapters, save_adapters, trainable_parameter_report

HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, VOCAB = 32, 48, 2, 4, 2, 64
EXPERTS, TOP_K = 3, 2
LORA = LoRAConfig(r=4, alpha=8, dropout=0.0)


def tiny_dense() -> LlamaForCausalLM:
    """The same "pretrained" base on every call."""
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def tiny_moe() -> LlamaForCausalLM:
    return convert_llama_to_moe(tiny_dense(), EXPERTS, TOP_K)


def expected_counts(r: int) -> tuple[int, int]:
    """(LoRA, router) parameters: r * (in + out) per adapted linear, E * H per router."""
    kv = HIDDEN // HEADS * KV_HEADS
    attention = r * (HIDDEN + HIDDEN) + 2 * r * (HIDDEN + kv) + r * (HIDDEN + HIDDEN)  # q, k and v, o
    experts = EXPERTS * (2 * r * (HIDDEN + INTERMEDIATE) + r * (INTERMEDIATE + HIDDEN))  # gate and up, down
    return LAYERS * (attention + experts), LAYERS * EXPERTS * HIDDEN


def batch() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(3))


def train_step(model, optimizer) -> None:
    ids = batch()
    logits = model(ids).logits
    loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1)) + 0.01 * moe_aux_loss(model)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_defaults_are_the_papers():
    config = LoRAConfig()
    assert (config.r, config.alpha) == (128, 256)
    assert set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert config.trainable_modules == ("router",)


def test_trainable_parameters_are_exactly_lora_and_routers():
    model = tiny_moe()
    base = sum(p.numel() for p in model.parameters())
    apply_lora(model, LORA)
    lora, routers = expected_counts(LORA.r)
    report = trainable_parameter_report(model)
    assert report == {
        "total": base + lora, "trainable": lora + routers, "lora": lora, "full": routers, "frozen": base - routers,
    }
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in name or ".router." in name for name in trainable)
    assert not any("lora_" in name for name in trainable if ".experts." not in name and "self_attn" not in name)


def test_extra_modules_train_in_full():
    model = apply_lora(tiny_moe(), LoRAConfig(r=4, alpha=8, trainable_modules=("router", "lm_head")))
    _, routers = expected_counts(4)
    assert trainable_parameter_report(model)["full"] == routers + VOCAB * HIDDEN


def test_optimizer_steps_change_only_trainable_parameters():
    model = apply_lora(tiny_moe(), LORA).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    # two steps: LoRA B starts at zero, so A only receives a gradient once B has moved
    train_step(model, optimizer)
    train_step(model, optimizer)
    for name, param in model.named_parameters():
        changed = not torch.equal(param, before[name])
        assert changed == param.requires_grad, name
        assert (param.grad is not None) == param.requires_grad, name


def test_save_load_reproduces_logits(tmp_path):
    model = apply_lora(tiny_moe(), LORA).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    train_step(model, optimizer)
    save_adapters(model, tmp_path)
    meta = json.loads((tmp_path / "adapters.json").read_text())
    assert meta["moe"] == {"num_experts": EXPERTS, "top_k": TOP_K} and meta["lora"]["r"] == LORA.r

    # the same pretrained base, converted again: other random routers, no adapters
    base = tiny_dense()
    torch.manual_seed(123)
    fresh = convert_llama_to_moe(base, EXPERTS, TOP_K)
    assert not torch.equal(fresh.model.layers[0].mlp.router.weight, model.model.layers[0].mlp.router.weight)
    load_adapters(fresh, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(batch()).logits, model.eval()(batch()).logits, atol=0, rtol=0)


def test_load_refuses_a_different_moe_shape(tmp_path):
    save_adapters(apply_lora(tiny_moe(), LORA), tmp_path)
    dense = tiny_dense()
    with pytest.raises(ValueError, match="MoE shape"):
        load_adapters(dense, tmp_path)
    with pytest.raises(FileNotFoundError, match="adapters.json"):
        load_adapters(dense, tmp_path / "missing")
