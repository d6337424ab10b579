"""TextEncoder: the three sources of class-name embeddings for the language-guided head."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pointmoe_core.common.text_models import minilm_model_dir
from pointmoe_core.seg.text import TextConfig, TextEncoder


def unit_rows(x: torch.Tensor) -> bool:
    return torch.allclose(x.norm(dim=1), torch.ones(len(x)), atol=1e-5)


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    try:
        minilm_model_dir()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    return TextEncoder(TextConfig(source="minilm"))


def test_minilm_puts_similar_names_closer(minilm):
    names = ["chair", "armchair", "office chair", "road", "sky", "car", "truck"]
    emb = minilm.encode(names)
    assert emb.shape == (7, 384) and emb.dtype == torch.float32 and unit_rows(emb)
    sim = emb @ emb.T
    chair, armchair, office_chair, road, sky, car, truck = range(7)
    assert sim[chair, armchair] > sim[chair, road] and sim[chair, office_chair] > sim[chair, sky]
    assert sim[car, truck] > sim[car, armchair]
    assert minilm.encode(names) is emb  # cached per class list
    # batch composition does not change a name's embedding (padding is masked out of the mean)
    torch.testing.assert_close(minilm.encode(["office chair"])[0], emb[office_chair], atol=1e-5, rtol=0)
    assert minilm.dim == 384


def test_precomputed_real_clip_features(shared_data):
    folder = shared_data / "clip_text_features"
    table_path = folder / "scannet200_text_features.pth"
    names_path = folder / "class_names_INSTANCE_CAT_SCANNET_200.json"
    if not table_path.is_file() or not names_path.is_file():
        pytest.skip(f"CLIP text features not found in {folder}")
    encoder = TextEncoder(TextConfig(source="precomputed", embeddings=str(table_path), names=str(names_path)))
    table = torch.load(table_path, weights_only=True).float()
    names = json.loads(names_path.read_text())
    query = ["chair", "armchair", "bathtub", "toilet"]
    emb = encoder.encode(query)
    assert emb.shape == (4, 768) and emb.dtype == torch.float32 and unit_rows(emb) and encoder.dim == 768
    torch.testing.assert_close(emb, F.normalize(table[[names.index(q) for q in query]], dim=-1))
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] and sim[2, 3] > sim[2, 1]  # real CLIP: chair~armchair, bathtub~toilet
    with pytest.raises(KeyError, match="'wall'"):  # ScanNet200 minus wall and floor: no entry
        encoder.encode(["chair", "wall"])


def test_precomputed_npy_with_names_file_or_list(tmp_path):
    table = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0], [1.0, 1.0, 1.0]], np.float32)  # not normalised
    np.save(tmp_path / "t.npy", table)
    (tmp_path / "names.txt").write_text("red block\nblue bowl\n\nzone\n")
    by_file = TextEncoder(TextConfig(source="precomputed", embeddings=str(tmp_path / "t.npy"),
                                     names=str(tmp_path / "names.txt")))
    by_list = TextEncoder(TextConfig(source="precomputed", embeddings=str(tmp_path / "t.npy"),
                                     names=["red block", "blue bowl", "zone"]))
    emb = by_file.encode(["zone", "red block"])  # request order, not file order
    torch.testing.assert_close(emb, torch.tensor([[1, 1, 1], [0.6, 0.8, 0.0]]) / torch.tensor([[3**0.5], [1.0]]))
    torch.testing.assert_close(by_list.encode(["zone", "red block"]), emb)
    (tmp_path / "short.txt").write_text("red block\n")
    with pytest.raises(ValueError, match="1 class names"):
        TextEncoder(TextConfig(source="precomputed", embeddings=str(tmp_path / "t.npy"),
                               names=str(tmp_path / "short.txt"))).encode(["red block"])
    with pytest.raises(ValueError, match="text source"):
        TextConfig(source="clip")


def test_open_clip_from_local_weights_only(tmp_path):
    open_clip = pytest.importorskip("open_clip")
    # a tiny registered architecture stands in for ViT-B/16 (same code path, no large weights)
    arch = dict(embed_dim=16, vision_cfg=dict(image_size=32, layers=1, width=32, head_width=16, patch_size=16),
                text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1))
    (tmp_path / "pointmoe-test-clip.json").write_text(json.dumps(arch))
    open_clip.add_model_config(tmp_path / "pointmoe-test-clip.json")
    torch.manual_seed(0)
    reference = open_clip.create_model("pointmoe-test-clip").eval()
    torch.save(reference.state_dict(), tmp_path / "weights.pt")

    encoder = TextEncoder(TextConfig(source="open_clip", model="pointmoe-test-clip",
                                     weights=str(tmp_path / "weights.pt"), template="a photo of a {}"))
    emb = encoder.encode(["chair", "table"])
    tokens = open_clip.get_tokenizer("pointmoe-test-clip")(["a photo of a chair", "a photo of a table"])
    with torch.no_grad():
        expected = F.normalize(reference.encode_text(tokens), dim=-1)
    assert emb.shape == (2, 16) and unit_rows(emb)
    torch.testing.assert_close(emb, expected)

    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        TextEncoder(TextConfig(source="open_clip", model="ViT-B-16", weights="openai")).encode(["chair"])
