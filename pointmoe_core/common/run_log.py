"""The log every training run writes into its output folder: ``log.jsonl`` (one JSON line per
entry) and TensorBoard scalars under ``tensorboard/``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping


class RunLog:
    """``record`` appends a ``log.jsonl`` line, ``scalars`` writes TensorBoard scalars at a step. A
    disabled log (every DDP rank but the first) writes nothing."""

    def __init__(self, output_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        if enabled:
            from torch.utils.tensorboard import SummaryWriter  # tensorboard loads slowly: only for a run

            self.writer = SummaryWriter(str(output_dir / "tensorboard"))
            self.jsonl = open(output_dir / "log.jsonl", "a")

    def record(self, entry: Mapping[str, Any], flush: bool = True) -> None:
        """One line; ``flush=False`` leaves it buffered until the next ``flush`` (a line per step)."""
        if self.enabled:
            self.jsonl.write(json.dumps(entry) + "\n")
            if flush:
                self.jsonl.flush()

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        if self.enabled:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        if self.enabled:
            self.jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self.writer.close()
            self.jsonl.close()
