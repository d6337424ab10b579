import json
import os
import subprocess
import sys

import torch
import torch.distributed as dist

from pointmoe_core.common.checkpoint import load_checkpoint
from pointmoe_core.train.distributed import all_reduce_mean, init_distributed

from .conftest import REPO


def test_without_torchrun_the_process_runs_alone(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    context = init_distributed("cpu")
    assert (context.rank, context.world_size, context.is_main, context.distributed) == (0, 1, True, False)
    assert not dist.is_initialized()
    value = torch.tensor(3.0)
    assert all_reduce_mean(value) is value


def test_two_process_gloo_ddp_run(write_config, tmp_path):
    config = write_config("ddp", max_steps=2, batch_size=1)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "pointmoe_core.cli", "train", "seg", "--config", str(config)],
        # the rendezvous is on localhost (--standalone); gloo's own sockets must stay on loopback too
        env={**os.environ, "GLOO_SOCKET_IFNAME": "lo"}, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]  # torchrun fails if either rank does
    payload = load_checkpoint(tmp_path / "ddp" / "checkpoints")
    assert payload["step"] == 2 and payload["train_config"]["batch_size"] == 1
    assert len(payload["rng"]) == 2  # each rank's generators, for an exact resume
    assert not torch.equal(payload["rng"][0]["torch"], payload["rng"][1]["torch"])
    log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2]  # rank 0 logs the mean over ranks
    assert all(entry["points"] == 2 * 600 for entry in log)  # two ranks x one cloud cropped to 600 points
