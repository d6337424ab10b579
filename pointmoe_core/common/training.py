"""What every training loop shares (segmentation, Pose-DiT, the 3D-MoE stages): the log it writes
into its output folder (``log.jsonl``, one JSON line per entry, and TensorBoard scalars under
``tensorboard/``) and the guard that keeps non-finite steps out of the weights. Checkpoint rotation
and resume are in :mod:`.checkpoint`."""
from __future__ import annotations

import json
import math
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


NONFINITE_PATIENCE = 20  # non-finite steps in a row before training gives up


class NonFiniteGuard:
    """Whether an optimiser step may go ahead: not when its loss or gradient norm is not finite
    (skipped, as GradScaler skips overflowing fp16 steps: NaN must not reach the weights), and
    FloatingPointError after ``patience`` such steps in a row, with ``advice`` on what to change."""

    def __init__(self, patience: int = NONFINITE_PATIENCE, advice: str = "lower lr") -> None:
        self.patience, self.advice = patience, advice
        self.bad_steps = 0

    def allows(self, loss: float, grad_norm: float, step: int) -> bool:
        """``step`` counts from 1, for the message."""
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.bad_steps = 0
            return True
        self.bad_steps += 1
        if self.bad_steps == self.patience:
            raise FloatingPointError(f"loss or gradients not finite for {self.bad_steps} steps in a row "
                                     f"(step {step}); {self.advice}")
        return False
