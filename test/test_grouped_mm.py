"""common.grouped_mm: layers that keep their grouped-GEMM operands between inference forwards give
the outputs of layers that build them every time, and build them again when their weights change."""
import pytest
import torch

from pointmoe_core.common.grouped_mm import keep_operands
from pointmoe_core.seg.moe import SparseMoE
from pointmoe_core.seg.sparse_conv import SubMConv3d


def moe_layer() -> tuple[torch.nn.Module, callable]:
    moe = SparseMoE(16, num_experts=4, top_k=2).eval()
    moe.dispatch = "grouped"  # as on an H100 in bfloat16 (torch also runs it on a CPU)
    x = torch.randn(50, 16, generator=torch.Generator().manual_seed(1))
    return moe, lambda: moe(x)


def conv_layer() -> tuple[torch.nn.Module, callable]:
    conv = SubMConv3d(6, 16, 3, backend="torch")  # 6 input channels: a padded operand
    conv.offset_products = "grouped"
    generator = torch.Generator().manual_seed(1)
    grid_coord = torch.randint(0, 5, (60, 3), generator=generator).unique(dim=0)
    batch = torch.zeros(len(grid_coord), dtype=torch.long)
    feat = torch.randn(len(grid_coord), 6, generator=generator)
    return conv, lambda: conv(feat, grid_coord, batch)


@pytest.mark.parametrize("make_layer", [moe_layer, conv_layer], ids=["moe", "conv"])
def test_kept_operands_are_built_once_and_again_after_a_weight_change(make_layer):
    torch.manual_seed(0)
    layer, forward = make_layer()
    with torch.no_grad():
        built_each_time = forward()
        keep_operands(layer)
        first, kept = forward(), dict(layer.kept_operands)
        again = forward()
        assert kept and all(layer.kept_operands[key][-1] is entry[-1] for key, entry in kept.items())
        torch.testing.assert_close(first, built_each_time, rtol=0, atol=0)
        torch.testing.assert_close(again, built_each_time, rtol=0, atol=0)

        for param in layer.parameters():  # an in-place update: the version counter moves
            param.mul_(0.5)
        updated = forward()
        layer.kept_operands = None
        torch.testing.assert_close(updated, forward(), rtol=0, atol=0)
        assert not torch.allclose(updated, built_each_time)

        keep_operands(layer)
        forward()
        for param in layer.parameters():  # replaced by other tensors (as .to() does)
            param.data = param.data * 2
        replaced = forward()
        layer.kept_operands = None
        torch.testing.assert_close(replaced, forward(), rtol=0, atol=0)

    keep_operands(layer)
    forward()  # autograd on (training): nothing is kept, gradients reach the weights
    assert layer.kept_operands == {}
