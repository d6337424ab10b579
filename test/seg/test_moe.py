"""SparseMoE: dispatch against a per-token loop, grouped GEMMs against the expert loop, routing weights,
aux loss, gradients, names."""
import math

import pytest
import torch

from pointmoe_core.common import grouped_mm
from pointmoe_core.common.moe import load_balance_loss
from pointmoe_core.seg.moe import ACTIVATIONS, SparseMoE


def per_token_reference(moe: SparseMoE, x: torch.Tensor) -> torch.Tensor:
    """The definition, one token at a time: softmax router, top-k, renormalise (k > 1), mix."""
    rows = []
    for token in x:
        probs = torch.softmax(token @ moe.gate.weight.T, -1)
        weights, experts = torch.sort(probs, descending=True)
        weights, experts = weights[: moe.top_k], experts[: moe.top_k]
        if moe.top_k > 1:
            weights = weights / weights.sum()
        rows.append(sum(w * moe.experts[int(e)](token) for w, e in zip(weights, experts)))
    return torch.stack(rows)


def make_moe(top_k: int, dim: int = 12, act: str = "relu", seed: int = 0) -> SparseMoE:
    torch.manual_seed(seed)
    moe = SparseMoE(dim, num_experts=8, top_k=top_k, act=act).double()
    with torch.no_grad():
        moe.gate.weight.normal_()  # sharper routing than the default init, so top-k is well separated
    return moe


@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("training", [False, True])
def test_equals_per_token_reference(top_k, training):
    moe = make_moe(top_k).train(training)
    x = torch.randn(200, 12, dtype=torch.float64)
    torch.testing.assert_close(moe(x), per_token_reference(moe, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_activations(act):
    moe = make_moe(2, act=act)
    x = torch.randn(50, 12, dtype=torch.float64)
    torch.testing.assert_close(moe(x), per_token_reference(moe, x), rtol=1e-12, atol=1e-12)


def test_gradients_equal_per_token_reference():
    moe = make_moe(2)
    x = torch.randn(64, 12, dtype=torch.float64, requires_grad=True)
    params = [x, *moe.parameters()]
    got = torch.autograd.grad(moe(x).square().sum(), params, allow_unused=True)
    want = torch.autograd.grad(per_token_reference(moe, x).square().sum(), params, allow_unused=True)
    for g, w in zip(got, want):
        if w is None:
            assert g is None or not g.any()
        else:
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_grouped_dispatch_equals_the_expert_loop(top_k):
    """CUDA's grouped-GEMM path (torch also runs it on a CPU, one GEMM per group) gives the loop's
    outputs and gradients, with an expert that gets no token among them."""
    torch.manual_seed(0)
    moe = SparseMoE(16, num_experts=8, top_k=top_k, aux_loss_alpha=0.01).train()
    with torch.no_grad():
        moe.gate.weight.normal_()
        moe.gate.weight[5] = -10.0  # far below the others for the non-negative tokens: never chosen
    x = torch.rand(300, 16)
    results = {}
    for method in ("loop", "grouped"):
        moe.dispatch = method
        inputs = x.clone().requires_grad_(True)
        out = moe(inputs)
        results[method] = (out, moe.last_stats.tokens_per_expert,
                           *torch.autograd.grad(out.square().sum() + moe.aux_loss, [inputs, *moe.parameters()],
                                               materialize_grads=True))
    assert results["loop"][1][5] == 0 and results["loop"][1].sum() == 300 * top_k
    for got, want in zip(results["grouped"], results["loop"]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_grouped_dispatch_runs_in_the_autocast_dtype():
    torch.manual_seed(1)
    moe = SparseMoE(16, num_experts=4, top_k=2).eval()
    x = torch.randn(200, 16)
    outputs = {}
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for method in ("loop", "grouped"):
            moe.dispatch = method
            outputs[method] = moe(x)
    assert outputs["grouped"].dtype == outputs["loop"].dtype
    torch.testing.assert_close(outputs["grouped"], outputs["loop"], rtol=0.02, atol=0.02)


def test_grouped_dispatch_is_chosen_only_where_a_fused_kernel_runs(monkeypatch):
    moe = SparseMoE(16, num_experts=4, top_k=2)
    fused = "grouped_mm" if hasattr(torch, "_grouped_mm") else "loop"
    monkeypatch.setattr(grouped_mm, "capability_major", lambda device: 9)  # an H100
    assert moe.kernel("cuda", torch.bfloat16) == "loop"  # training keeps the loop
    with torch.no_grad():
        assert moe.kernel("cuda", torch.bfloat16) == fused
        monkeypatch.setattr(grouped_mm, "capability_major", lambda device: 8)  # an A100: torch loops itself
        assert moe.kernel("cuda", torch.bfloat16) == "loop"
        monkeypatch.setattr(grouped_mm, "capability_major", lambda device: 9)
        assert moe.kernel("cuda", torch.float32) == "loop"
        assert moe.kernel("cpu", torch.bfloat16) == "loop"
        assert SparseMoE(12).kernel("cuda", torch.bfloat16) == "loop"  # 24-byte rows in bfloat16
        moe.dispatch = "loop"
        assert moe.kernel("cuda", torch.bfloat16) == "loop"
    moe.dispatch = "grouped"
    assert moe.kernel("cpu", torch.float32) == "grouped_mm"
    moe.dispatch = "fastest"
    with pytest.raises(ValueError, match="unknown MoE dispatch 'fastest'"):
        moe(torch.randn(4, 16))


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_routing_weights(top_k):
    moe = make_moe(top_k)
    x = torch.randn(100, 12, dtype=torch.float64)
    probs, weights, experts = moe.route(x)
    assert torch.equal(experts, probs.argsort(-1, descending=True)[:, :top_k])
    if top_k == 1:  # official behaviour: a lone expert is weighted by its raw probability
        torch.testing.assert_close(weights[:, 0], probs.max(-1).values)
    else:
        torch.testing.assert_close(weights.sum(-1), torch.ones(100, dtype=torch.float64))


def test_aux_loss_is_alpha_for_uniform_routing():
    alpha = 0.001
    moe = SparseMoE(16, num_experts=8, top_k=2, aux_loss_alpha=alpha).train()
    with torch.no_grad():
        moe.gate.weight.zero_()  # every token sees probability 1/E for every expert
    moe(torch.randn(40, 16))
    assert moe.aux_loss.item() == pytest.approx(alpha, rel=1e-6)

    # Balanced assignments with arbitrary probabilities also give exactly alpha...
    probs = torch.softmax(torch.randn(16, 8), -1)
    balanced = torch.arange(32).reshape(16, 2) % 8
    assert load_balance_loss(probs, balanced, 8, alpha).item() == pytest.approx(alpha, rel=1e-6)
    # ...while collapsing onto one expert with confident probabilities approaches alpha * E.
    collapsed_probs = torch.softmax(torch.tensor([[20.0] + [0.0] * 7]).repeat(16, 1), -1)
    collapsed = torch.zeros(16, 1, dtype=torch.long)
    assert load_balance_loss(collapsed_probs, collapsed, 8, alpha).item() == pytest.approx(alpha * 8, rel=1e-6)


def test_aux_loss_trains_the_router_and_is_zero_when_disabled():
    moe = SparseMoE(16, aux_loss_alpha=0.01).train()
    moe(torch.randn(30, 16))
    (grad,) = torch.autograd.grad(moe.aux_loss, moe.gate.weight)
    assert grad.abs().sum() > 0
    moe.eval()
    moe(torch.randn(30, 16))
    assert moe.aux_loss.item() == 0.0
    plain = SparseMoE(16).train()
    plain(torch.randn(30, 16))
    assert plain.aux_loss.item() == 0.0


def test_only_routed_experts_get_gradients():
    torch.manual_seed(0)
    moe = SparseMoE(8, num_experts=8, top_k=2)
    with torch.no_grad():  # positive tokens, experts 4..7 scored strongly negative: never chosen
        moe.gate.weight[:4].uniform_(0.5, 1.0)
        moe.gate.weight[4:] = -1.0
    moe(torch.rand(50, 8) + 0.1).sum().backward()
    routed = moe.last_stats.tokens_per_expert > 0
    assert routed[:4].any() and not routed[4:].any()
    for used, expert in zip(routed.tolist(), moe.experts):
        for p in expert.parameters():
            if used:
                assert p.grad is not None and p.grad.abs().sum() > 0
            else:
                assert p.grad is None or not p.grad.any()


def test_stats_and_token_counter():
    moe = SparseMoE(16, num_experts=8, top_k=2)
    x = torch.randn(60, 16)
    moe.eval()
    moe(x)
    stats = moe.last_stats
    assert stats.tokens_per_expert.sum() == 60 * 2
    assert torch.equal(stats.tokens_per_expert, torch.bincount(moe.last_topk_idx.flatten(), minlength=8))
    assert 0.0 < stats.entropy.item() <= math.log(8) + 1e-6
    assert not moe.expert_token_counter.any()  # eval leaves the counter alone
    moe.train()
    moe(x)
    moe(x)
    assert torch.equal(moe.expert_token_counter, 2 * stats.tokens_per_expert)

    with torch.no_grad():
        moe.gate.weight.zero_()
    moe(x)
    assert moe.last_stats.entropy.item() == pytest.approx(math.log(8), rel=1e-6)


def test_empty_input():
    moe = SparseMoE(16, aux_loss_alpha=0.01).train()
    out = moe(torch.zeros(0, 16))
    assert out.shape == (0, 16)
    assert moe.last_topk_idx.shape == (0, 2)
    assert moe.aux_loss.item() == 0.0 and moe.last_stats.entropy.item() == 0.0


def test_state_dict_matches_official_names(shared_data):
    """Same keys, shapes and dtypes as the official block's `attn.proj`, and its weights load strictly."""
    prefix = "enc.enc0.block0.attn.proj."
    state = torch.load(shared_data / "parity" / "pointmoe_tiny_official.pth", weights_only=True)
    official = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    assert len(official) == 27  # 8 experts x 3 projections, gate weight + buffer, token counter

    moe = SparseMoE(16, num_experts=8, top_k=2)
    ours = moe.state_dict()
    assert {k: (tuple(v.shape), v.dtype) for k, v in ours.items()} == {
        k: (tuple(v.shape), v.dtype) for k, v in official.items()
    }
    moe.load_state_dict(official, strict=True)
    assert torch.equal(moe.experts[3].up_proj.weight, official["experts.3.up_proj.weight"])


def test_state_dict_names_without_fixture():
    moe = SparseMoE(16, num_experts=2, hidden_ratio=2)
    shapes = {k: tuple(v.shape) for k, v in moe.state_dict().items()}
    assert shapes == {
        "gate.weight": (2, 16),
        "gate.score_accumulator": (2,),
        "experts.0.gate_proj.weight": (32, 16),
        "experts.0.up_proj.weight": (32, 16),
        "experts.0.down_proj.weight": (16, 32),
        "experts.1.gate_proj.weight": (32, 16),
        "experts.1.up_proj.weight": (32, 16),
        "experts.1.down_proj.weight": (16, 32),
        "expert_token_counter": (2,),
    }
    assert moe.gate.score_accumulator.dtype == torch.float32
    assert moe.expert_token_counter.dtype == torch.int64
