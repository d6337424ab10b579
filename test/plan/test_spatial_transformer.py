"""Spatial transformer over object tokens: distance-biased attention, padding, shapes."""
import pytest
import torch

from pointmoe_core.plan.pointnet2 import PointNet2Config
from pointmoe_core.plan.scene_encoder import ConditionEncoderConfig
from pointmoe_core.plan.spatial_transformer import (
    DistanceBasis,
    DistanceBiasedAttention,
    SceneTokenizer,
    SceneTokenizerConfig,
    SpatialTransformer,
    SpatialTransformerConfig,
    pairwise_distances,
)

SMALL = SpatialTransformerConfig(hidden_size=32, num_layers=2, num_heads=4, ffn_size=64)


def _locations(centres: torch.Tensor) -> torch.Tensor:
    return torch.cat([centres, torch.full_like(centres, 0.04)], dim=-1)


def test_nearer_objects_get_more_attention_when_the_bias_says_so():
    torch.manual_seed(0)
    attention = DistanceBiasedAttention(32, 4, num_basis=16, dropout=0.0)
    basis = DistanceBasis(16, 1.2)
    # object 0 at the origin, then 0.1, 0.4 and 0.8 m away along y
    centres = torch.tensor([[[0.5, 0.0, 0.0], [0.5, 0.1, 0.0], [0.5, 0.4, 0.0], [0.5, 0.8, 0.0]]])
    features = basis(pairwise_distances(centres))
    x, mask = torch.randn(1, 4, 32), torch.ones(1, 4, dtype=torch.bool)
    # a fresh layer's bias is zero: attention is by content alone
    before = attention.weights(x, features, mask)
    with torch.no_grad():
        attention.qkv.weight[:64].zero_()  # no content logits: only the distance bias is left
        attention.qkv.bias[:64].zero_()
    assert torch.allclose(attention.weights(x, features, mask), torch.full((1, 4, 4, 4), 0.25))
    with torch.no_grad():  # every head: the bias falls with distance
        attention.distance_bias.weight.copy_(-5 * basis.centres.expand(4, -1))
    weights = attention.weights(x, features, mask)[0, :, 0]  # what object 0 attends to, per head
    assert (weights[:, :-1] > weights[:, 1:]).all()  # strictly decreasing with distance
    assert not torch.allclose(before, attention.weights(x, features, mask))


def test_padding_objects_do_not_change_real_outputs():
    torch.manual_seed(0)
    model = SpatialTransformer(SMALL).eval()
    with torch.no_grad():
        for layer in model.layers:  # a non-zero distance bias, so it takes part in the check
            layer.attention.distance_bias.weight.normal_()
    tokens, centres = torch.randn(1, 3, 32), torch.rand(1, 3, 3)
    alone = model(tokens, _locations(centres), torch.ones(1, 3, dtype=torch.bool))
    # the same scene padded with 4 junk objects (random tokens, far away or on top of real ones)
    padded_tokens = torch.cat([tokens, 100 * torch.randn(1, 4, 32)], dim=1)
    padded_centres = torch.cat([centres, torch.cat([centres[:, :2], 5 * torch.rand(1, 2, 3)], dim=1)], dim=1)
    mask = torch.tensor([[True] * 3 + [False] * 4])
    padded = model(padded_tokens, _locations(padded_centres), mask)
    assert padded.shape == (1, 7, 32)
    assert torch.allclose(padded[:, :3], alone, atol=1e-5)
    assert (padded[:, 3:] == 0).all()


def test_locations_and_distances_change_outputs():
    torch.manual_seed(0)
    model = SpatialTransformer(SMALL).eval()
    tokens, centres = torch.randn(2, 3, 32), torch.rand(2, 3, 3)
    mask = torch.ones(2, 3, dtype=torch.bool)
    moved = centres.clone()
    moved[:, 0, 1] += 0.3
    assert not torch.allclose(model(tokens, _locations(centres), mask), model(tokens, _locations(moved), mask))


def test_a_scene_without_objects_gives_zeros_not_nan():
    model = SpatialTransformer(SMALL).eval()
    mask = torch.tensor([[True, True], [False, False]])
    out = model(torch.randn(2, 2, 32), _locations(torch.rand(2, 2, 3)), mask)
    assert torch.isfinite(out).all() and (out[1] == 0).all()


def test_scene_tokenizer_maps_objects_to_llm_width():
    torch.manual_seed(0)
    pointnet = PointNet2Config(sa_centres=(8, 4), sa_neighbors=(8, 8), sa_mlps=((16,), (16,)), global_mlp=(32,),
                               out_dim=32)
    config = SceneTokenizerConfig(
        encoder=ConditionEncoderConfig(hidden_size=32, points_per_object=32, pointnet=pointnet),
        spatial=SMALL, llm_width=48)
    tokenizer = SceneTokenizer(config).eval()
    points, locations = torch.randn(2, 3, 32, 6), _locations(torch.rand(2, 3, 3))
    mask = torch.tensor([[True, True, True], [True, False, False]])
    out = tokenizer(points, locations, mask)
    assert out.shape == (2, 3, 48) and (out[1, 1:] == 0).all() and (out[0] != 0).any()
    assert tokenizer.projector.weight.shape == (48, 32)


def test_defaults_are_leo_settings_and_widths_must_agree():
    config = SceneTokenizerConfig()
    assert (config.spatial.hidden_size, config.spatial.num_layers, config.spatial.num_heads) == (256, 3, 8)
    with pytest.raises(ValueError, match="hidden_size"):
        SceneTokenizerConfig.from_dict({"spatial": {"hidden_size": 128}})
