"""Datasets as train and eval configs name them: a kind, its constructor options, a loop factor.

In YAML an entry is one flat mapping, ``{kind: ScanNet, root: data/scannet, split: train, loop: 2}``
or ``{kind: synthetic, domain: indoor, num_scenes: 64, split: train}``; on a command line the same
entry is ``KIND[:key=value,...]`` (``synthetic:domain=tabletop,split=val``), values read as YAML
scalars. ``kind`` is a key of ``pointmoe_core.data.datasets.DATASET_TYPES``, every other key but
``loop`` goes to that dataset's constructor.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from pointmoe_core.data.datasets import DATASET_TYPES, build_dataset
from pointmoe_core.data.sample import SegDataset
from pointmoe_core.data.sim_demos import SimDemoDataset
from pointmoe_core.data.transforms import Compose, PipelineConfig, SphereCrop, default_pipeline

# clouds written by `pointmoe sim demos` (pointmoe_core.data.sim_demos), one sample per frame
DATASET_TYPES.setdefault("sim_demos", SimDemoDataset)


@dataclass
class DatasetEntry:
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    loop: float = 1.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DatasetEntry":
        if "kind" not in data:
            raise ValueError(f"a dataset entry needs a 'kind', got {dict(data)}")
        options = {key: value for key, value in data.items() if key not in ("kind", "loop")}
        return cls(str(data["kind"]), options, float(data.get("loop", 1.0)))

    @classmethod
    def from_spec(cls, spec: str) -> "DatasetEntry":
        """``KIND[:key=value,...]``; values are YAML scalars (``num_scenes=8``, ``root=/data/s3dis``)."""
        kind, _, rest = spec.partition(":")
        data: dict[str, Any] = {"kind": kind}
        for item in filter(None, rest.split(",")):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"dataset spec {spec!r}: expected key=value, got {item!r}")
            data[key.strip()] = yaml.safe_load(value)
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.options, "loop": self.loop}

    def build(self, train: bool, pipeline: PipelineConfig | None = None, point_max: int | None = None) -> SegDataset:
        """The dataset with the default pipeline of its input kind (train or eval).

        ``point_max`` crops every training cloud to that many points around a random centre; the
        fork's pipeline crops only indoor clouds, but on a CPU budget LiDAR sweeps need it too.
        """
        dataset = build_dataset(self.kind, **self.options)
        transform = default_pipeline(dataset.input_spec, train=train, config=pipeline)
        if train and point_max is not None:
            transform = Compose([transform, SphereCrop(point_max=point_max)])
        dataset.transform = transform
        return dataset


def parse_entries(items: Any) -> list[DatasetEntry]:
    """Entries from a YAML list of mappings or spec strings (or DatasetEntry objects)."""
    entries = []
    for item in items or ():
        if isinstance(item, DatasetEntry):
            entries.append(item)
        elif isinstance(item, str):
            entries.append(DatasetEntry.from_spec(item))
        else:
            entries.append(DatasetEntry.from_dict(item))
    return entries
