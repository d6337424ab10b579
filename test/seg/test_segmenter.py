"""Segmenter.predict: one label per input row, voxelisation, NaN rows, max_points, new class names."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from pointmoe_core.common.text_models import minilm_model_dir
from pointmoe_core.data.preprocess import center_shift, estimate_normals, grid_sample
from pointmoe_core.seg import OUTDOOR_INPUT, Segmenter, load_config
from pointmoe_core.seg.model import TINY_CLASSES, PointMoESegmentor
from pointmoe_core.seg.sparse_conv import available_backends
from pointmoe_core.seg.text import TextConfig, TextEncoder


@pytest.fixture(scope="module")
def segmenter(offline_tiny_config) -> Segmenter:
    return Segmenter.from_config(offline_tiny_config)


def test_predict_labels_every_row_including_duplicates_and_nan(segmenter, make_room):
    room = make_room(3000, 0)
    coord = np.concatenate([room["coord"], room["coord"][:200]])  # 200 exact duplicates
    color = np.concatenate([room["color"], room["color"][:200]]).astype(np.float32)
    normal = np.concatenate([room["normal"], room["normal"][:200]])
    coord[[5, 1500]] = np.nan
    coord[7, 2] = np.inf
    color[9] = np.nan  # a bad attribute drops the row too
    result = segmenter.predict(coord, color, normal)

    n = len(coord)
    assert len(result) == n and result.labels.shape == result.scores.shape == result.valid.shape == (n,)
    assert result.labels.dtype == np.int64 and result.scores.dtype == np.float32
    bad = [5, 7, 9, 1500]
    assert not result.valid[bad].any() and result.valid.sum() == n - 4
    assert (result.labels[bad] == -1).all() and (result.scores[bad] == 0).all()
    good = result.valid
    assert ((result.labels[good] >= 0) & (result.labels[good] < len(TINY_CLASSES))).all()
    assert ((result.scores[good] > 0) & (result.scores[good] <= 1)).all()
    duplicates = np.arange(3000, n)
    originals = np.arange(200)
    ok = good[duplicates] & good[originals]
    assert (result.labels[duplicates][ok] == result.labels[originals][ok]).all()
    assert result.class_names == TINY_CLASSES and result.experts is None
    assert any("dropped 4 of 3200" in w for w in result.warnings)
    assert result.num_voxels < n - 4  # duplicates share voxels

    # repeatable: the backbone's order shuffles use a seeded generator
    again = segmenter.predict(coord, color, normal)
    assert np.array_equal(again.labels, result.labels) and np.array_equal(again.scores, result.scores)
    # with one fragment every point of a voxel carries its voxel's prediction
    voxel = grid_sample(center_shift(coord[good]), 0.02)  # the voxels predict sees (indoor input is centred)
    labels, scores = result.labels[good], result.scores[good]
    for v in np.flatnonzero(voxel.count > 1)[:50]:
        members = voxel.order[voxel.start[v]:voxel.start[v] + voxel.count[v]]
        assert len(set(labels[members])) == 1 and len(set(scores[members])) == 1


def test_empty_and_all_invalid_input(segmenter):
    empty = segmenter.predict(np.zeros((0, 3)))
    assert len(empty) == 0 and empty.labels.shape == (0,) and empty.num_voxels == 0
    nothing_valid = segmenter.predict(np.full((4, 3), np.nan), return_experts=True)
    assert (nothing_valid.labels == -1).all() and not nothing_valid.valid.any() and nothing_valid.experts == {}
    with pytest.raises(ValueError, match=r"coord must have shape \(N, 3\)"):
        segmenter.predict(np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"color must have shape \(5, 3\)"):
        segmenter.predict(np.zeros((5, 3)), color=np.zeros((4, 3)))


def test_the_result_names_the_kernels_that_ran(offline_tiny_config, make_room):
    room = make_room(1500, 0)
    config = load_config(offline_tiny_config)
    for backend in ("auto", "torch"):
        model = PointMoESegmentor(replace(config, backbone=replace(config.backbone, conv_backend=backend)))
        result = Segmenter(model).predict(room["coord"], room["color"], room["normal"])
        # auto: spconv where it imports, else our pure-torch convolution; on a CPU never flash-attn
        expected = available_backends()[-1] if backend == "auto" else "torch"
        assert result.kernels == {"sparse_conv": expected, "attention": "sdpa", "moe_dispatch": "loop"}


def test_reduced_precision_keeps_nearly_every_label(segmenter, make_room):
    room = make_room(3000, 2)
    full = segmenter.predict(room["coord"], room["color"], room["normal"])
    half = Segmenter(segmenter.model, dtype="bfloat16", text_encoder=segmenter.text_encoder)
    reduced = half.predict(room["coord"], room["color"], room["normal"])
    assert reduced.scores.dtype == np.float32 and (reduced.labels == full.labels).mean() > 0.95
    with pytest.raises(ValueError, match="dtype must be one of"):
        Segmenter(segmenter.model, dtype="int8", text_encoder=segmenter.text_encoder)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_casts_its_own_copy_once_and_predicts_as_autocast_does(offline_tiny_config, make_room,
                                                                                 dtype):
    """The weights autocast would cast in every forward are cast once, in a copy of the model:
    the same predictions as autocast over the float32 weights, and the caller's model stays float32."""
    room = make_room(2000, 3)
    config = load_config(offline_tiny_config)
    model = PointMoESegmentor(replace(config, backbone=replace(config.backbone, conv_backend="torch")))
    model.head.set_class_embedding(torch.randn(len(config.class_names), config.head.text_dim))
    reduced = Segmenter(model, dtype=dtype)
    target = getattr(torch, dtype)
    backbone = reduced.model.backbone
    assert {p.dtype for p in backbone.enc.parameters() if p.ndim >= 2} == {target}  # linears, convs, routers
    assert {p.dtype for m in backbone.modules() if isinstance(m, torch.nn.LayerNorm | torch.nn.BatchNorm1d)
            for p in m.parameters()} == {torch.float32}
    assert reduced.model.head.proj.weight.dtype == torch.float32
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # the caller's model

    predicted = reduced.predict(room["coord"], room["color"], room["normal"])
    plain = Segmenter(model)
    with torch.autocast("cpu", dtype=target):  # what the cast replaces: autocast over float32 weights
        reference = plain.predict(room["coord"], room["color"], room["normal"])
    np.testing.assert_array_equal(predicted.labels, reference.labels)
    np.testing.assert_array_equal(predicted.scores, reference.scores)
    assert not np.array_equal(plain.predict(room["coord"], room["color"], room["normal"]).scores, predicted.scores)


def test_max_points_subsamples_voxels_and_labels_the_rest(offline_tiny_config, make_room):
    room = make_room(3000, 1)
    capped = Segmenter.from_config(offline_tiny_config, max_points=400)
    result = capped.predict(room["coord"], room["color"], room["normal"])
    assert result.num_voxels > 400
    assert any("max_points=400" in w for w in result.warnings)
    assert result.valid.all() and (result.labels >= 0).all() and (result.scores > 0).all()
    # points of voxels that did not run copy a neighbour that did: few distinct (label, score) pairs
    assert len(set(zip(result.labels, result.scores))) <= 400


def test_new_class_names_and_expert_ids(segmenter, make_room, tmp_path):
    room = make_room(2000, 2)
    names = ["table", "sofa", "floor", "lamp"]  # "sofa" and "lamp" are not in the model's table
    result = segmenter.predict(room["coord"], room["color"], room["normal"], class_names=names, return_experts=True)
    assert result.class_names == tuple(names)
    assert ((result.labels >= 0) & (result.labels < 4)).all()
    experts = result.experts
    assert len(experts) == 5 + 4  # tiny: one MoE W_o per block, 5 encoder + 4 decoder blocks
    voxel = grid_sample(center_shift(room["coord"]), 0.02)
    first = voxel.order[voxel.start[voxel.voxel]]  # each point's voxel representative
    for layer, ids in experts.items():
        assert ids.shape == (2000,) and ((ids >= 0) & (ids < 4)).all(), layer
        assert (ids == ids[first]).all(), layer  # one forward per voxel: voxel mates share experts
    # the stored rows of known names are used as is: the same logits as the default vocabulary
    default = segmenter.predict(room["coord"], room["color"], room["normal"])
    known = segmenter.predict(room["coord"], room["color"], room["normal"], class_names=list(TINY_CLASSES))
    assert np.array_equal(known.labels, default.labels) and np.array_equal(known.scores, default.scores)
    with pytest.raises(KeyError, match="bookcase"):  # the precomputed text source cannot encode new names
        segmenter.predict(room["coord"][:10], class_names=["bookcase"])
    np.save(tmp_path / "small.npy", np.ones((1, 3), np.float32))  # a 3-d text model cannot extend a 384-d table
    small = TextEncoder(TextConfig(source="precomputed", embeddings=str(tmp_path / "small.npy"), names=["sofa"]))
    with pytest.raises(ValueError, match="3-d embeddings but the head expects 384-d"):
        Segmenter(segmenter.model, text_encoder=small).predict(room["coord"][:10], class_names=["floor", "sofa"])


def test_missing_features_are_estimated_or_filled(segmenter, make_room):
    pytest.importorskip("open3d")
    room = make_room(2000, 3)
    result = segmenter.predict(room["coord"], room["color"])
    assert any("normals" in w and "open3d" in w for w in result.warnings) and (result.labels >= 0).all()
    no_color = segmenter.predict(room["coord"], normal=room["normal"])
    assert any("colour" in w for w in no_color.warnings)
    # open3d normals of the floor point up, towards a viewpoint above it
    floor = room["coord"][:500]
    normals = estimate_normals(floor, radius=0.2, viewpoint=np.array([1.5, 1.2, 2.0]))
    assert np.allclose(normals[:, 2], 1.0, atol=1e-3)


def test_more_fragments_predict_points_individually(offline_tiny_config, make_room):
    room = make_room(1500, 4)
    coord = np.concatenate([room["coord"], room["coord"] + 0.004])  # two points in most voxels
    color = np.concatenate([room["color"], 255 - room["color"]])
    one = Segmenter.from_config(offline_tiny_config).predict(coord, color, np.tile(room["normal"], (2, 1)))
    many = Segmenter.from_config(offline_tiny_config, max_fragments=2).predict(
        coord, color, np.tile(room["normal"], (2, 1)))
    voxel = grid_sample(center_shift(coord), 0.02)
    shared = np.flatnonzero(voxel.count[voxel.voxel] > 1)
    # one fragment: voxel mates agree; several: each point has its own softmax
    assert (one.scores[shared] == one.scores[voxel.order[voxel.start[voxel.voxel[shared]]]]).all()
    assert not (many.scores[shared] == many.scores[voxel.order[voxel.start[voxel.voxel[shared]]]]).all()
    assert many.valid.all() and (many.labels >= 0).all()


def test_checkpoint_round_trip_keeps_predictions(segmenter, make_room, tmp_path):
    room = make_room(1500, 5)
    expected = segmenter.predict(room["coord"], room["color"], room["normal"])
    for name in ("model.pth", "model.safetensors"):
        loaded = Segmenter.from_checkpoint(segmenter.save(tmp_path / name))
        assert loaded.config == segmenter.config
        got = loaded.predict(room["coord"], room["color"], room["normal"])
        assert np.array_equal(got.labels, expected.labels) and np.array_equal(got.scores, expected.scores)


def test_default_tiny_uses_the_offline_text_model(make_room):
    try:
        minilm_model_dir()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    segmenter = Segmenter.from_config("tiny")  # minilm: class table encoded at construction
    assert isinstance(segmenter.text_encoder, TextEncoder) and segmenter.config.text.source == "minilm"
    table = segmenter.model.head.class_embedding
    assert table.shape == (8, 384) and torch.allclose(table.norm(dim=1), torch.ones(8))
    room = make_room(1000, 6)
    result = segmenter.predict(room["coord"], room["color"], room["normal"], class_names=["floor", "television"])
    assert result.class_names == ("floor", "television") and set(np.unique(result.labels)) <= {0, 1}


def test_lidar_input_on_a_real_semantickitti_scan(offline_tiny_config, shared_data):
    scan = np.fromfile(shared_data / "semantickitti/sequences/00/velodyne/000000.bin", np.float32).reshape(-1, 4)
    scan = scan[np.random.default_rng(0).choice(len(scan), 12000, replace=False)]
    model = PointMoESegmentor(replace(offline_tiny_config, input=OUTDOOR_INPUT))
    segmenter = Segmenter(model)
    model.head.set_class_embedding(segmenter.text_encoder.encode(model.config.class_names))
    result = segmenter.predict(scan[:, :3], strength=scan[:, 3])
    assert len(result) == 12000 and result.valid.all() and (result.labels >= 0).all()
    assert not result.warnings  # LiDAR input needs neither colour nor normals
    # the indoor preset fed the same scan reports what it had to make up
    indoor = Segmenter.from_config(offline_tiny_config).predict(scan[:2000, :3])
    assert len(indoor.warnings) == 2 and load_config("tiny").input.feat_keys == ("color", "normal")
