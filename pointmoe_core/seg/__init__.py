"""Point-MoE semantic segmentation: PTv3 backbone with a sparse Mixture-of-Experts attention projection.

Inference: ``Segmenter.from_checkpoint(path)`` / ``Segmenter.from_config("tiny")`` and
``segmenter.predict(coord, color=..., class_names=[...]) -> SegResult``.
"""
from .model import (
    INDOOR_INPUT,
    OUTDOOR_INPUT,
    HeadConfig,
    InputConfig,
    PointMoESegmentor,
    SegmentorConfig,
    count_parameters,
    load_config,
)
from .ptv3 import BackboneConfig, PointTransformerMoE
from .segmenter import Segmenter, SegResult
from .text import TextConfig, TextEncoder

__all__ = [
    "BackboneConfig", "HeadConfig", "INDOOR_INPUT", "InputConfig", "OUTDOOR_INPUT", "PointMoESegmentor",
    "PointTransformerMoE", "SegResult", "Segmenter", "SegmentorConfig", "TextConfig", "TextEncoder",
    "count_parameters", "load_config",
]
