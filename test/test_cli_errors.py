"""Bad `pointmoe` command lines: each gives one line `error: ...` on stderr and a non-zero exit status,
2 for usage errors and 1 for failures while running; `--debug` shows the traceback instead."""
from pathlib import Path

import pytest
import torch

from pointmoe_core import cli
from pointmoe_core.seg.convert import read_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints" / "seg_default.safetensors"
USAGE, FAILURE = 2, 1


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A small bag, and broken versions of the shipped checkpoint and of other inputs."""
    root = tmp_path_factory.mktemp("bad_inputs")
    bag = root / "clouds_bag"
    assert cli.main(["bag", "write", str(bag), "synthetic", "--topic", "/points"]) == 0
    data = SHIPPED.read_bytes()
    (root / "truncated.safetensors").write_bytes(data[: len(data) // 3])
    flipped = bytearray(data)
    flipped[-100] ^= 0xFF  # one weight byte: the file still parses, its recorded hash no longer fits
    (root / "flipped.safetensors").write_bytes(bytes(flipped))
    (root / "flipped.safetensors.sha256").write_text((REPO / "checkpoints/seg_default.safetensors.sha256").read_text())
    checkpoint = read_checkpoint(SHIPPED)
    name = next(key for key, value in checkpoint.state_dict.items() if value.is_floating_point())
    checkpoint.state_dict[name] = torch.full_like(checkpoint.state_dict[name], float("nan"))
    save_checkpoint(root / "nan.safetensors", checkpoint.state_dict, checkpoint.config)
    (root / "text.pth").write_text("not a checkpoint\n")
    (root / "broken.yaml").write_text("epochs: [1, 2\n")
    return {"root": root, "bag": bag, "nan_tensor": name}


def _cases(f: dict[str, Path]) -> list[tuple[list[str], int, str]]:
    root, bag = f["root"], str(f["bag"])
    segment = ["bag", "segment", bag, str(root / "out_bag"), "--topic", "/points"]
    missing = str(root / "missing.safetensors")
    return [
        ([], USAGE, "required: COMMAND"),
        (["no-such-command"], USAGE, "invalid choice"),
        (["demo", "--episodes", "0"], USAGE, "must be at least 1"),
        (["demo", "--episodes", "-2"], USAGE, "must be at least 1"),
        (["demo", "--episodes", "two"], USAGE, "invalid positive_int value"),
        (["demo", "--tasks"], USAGE, "expected at least one argument"),
        (["bag"], USAGE, "required: ACTION"),
        (["bag", "info", str(root / "missing_bag")], FAILURE, "missing_bag"),
        (["bag", "write", str(root / "new_bag"), str(root / "missing.pcd")], FAILURE, "missing.pcd"),
        (["bag", "write", bag, "synthetic"], FAILURE, "clouds_bag"),
        (["bag", "write", str(root / "new_bag"), "synthetic", "--rate-hz", "0"], USAGE, "greater than 0"),
        ([*segment[:2], str(root / "missing_bag"), *segment[3:]], FAILURE, "missing_bag"),
        ([*segment, "--checkpoint", missing], FAILURE, "missing.safetensors"),
        ([*segment, "--checkpoint", str(root / "truncated.safetensors")], FAILURE, "not a readable safetensors"),
        ([*segment, "--checkpoint", str(root / "flipped.safetensors")], FAILURE, "is corrupt: sha256"),
        ([*segment, "--checkpoint", str(root / "nan.safetensors")], FAILURE,
         f"non-finite (NaN/Inf) weights in 1 tensors: {f['nan_tensor']}"),
        ([*segment, "--checkpoint", str(root / "text.pth")], FAILURE, "text.pth"),
        ([*segment, "--checkpoint", str(root)], FAILURE, "Error"),
        ([*segment, "--device", "tpu"], USAGE, "'tpu' is not a device"),
        ([*segment, "--checkpoint", str(SHIPPED), "--config", "no-such-preset"], FAILURE, "neither a preset"),
        ([*segment, "--checkpoint", str(SHIPPED), "--config", "tiny"], FAILURE,
         "carries its own config 'tiny-tabletop'"),
        (["bag", "segment", bag, str(root / "out_bag2"), "--topic", "/absent", "--checkpoint", str(SHIPPED)],
         USAGE, "no topic /absent in"),
        (["convert", "--to", "ours", missing, str(root / "out.safetensors")], FAILURE, "missing.safetensors"),
        (["convert", "--to", "nowhere", missing, str(root / "out.safetensors")], USAGE, "invalid choice"),
        (["convert", "--to", "ours", str(root / "truncated.safetensors"), str(root / "out.safetensors")],
         FAILURE, "not a readable safetensors"),
        (["train"], USAGE, "name a task"),
        (["train", "no-such-task"], USAGE, "unknown task 'no-such-task'"),
        (["train", "seg", "max_steps=abc"], USAGE, "max_steps takes int | None, not 'abc'"),
        (["train", "seg", "batch_size=2.5"], USAGE, "batch_size takes int, not 2.5"),
        (["train", "seg", "no_such_key=1"], USAGE, "SegTrainConfig has no field 'no_such_key'"),
        (["train", "seg", "epochs"], USAGE, "is not key=value"),
        (["train", "pose-dit", "fit.steps=many"], USAGE, "fit.steps takes int"),
        (["train", "planner", "--stage", "4"], USAGE, "invalid choice: 4"),
        (["train", "seg", "--config", str(root / "missing.yaml")], FAILURE, "missing.yaml"),
        (["train", "seg", "--config", str(root / "broken.yaml")], FAILURE,
         "ParserError: while parsing a flow sequence"),
        (["eval", "seg", "--checkpoint", missing], FAILURE, "missing.safetensors"),
        (["analyze", "routing", "--checkpoint", missing], FAILURE, "missing.safetensors"),
        (["parity", "--fixture", str(root / "no_fixture")], FAILURE, "no_fixture"),
    ]


def _run(argv: list[str], capsys) -> tuple[int, list[str]]:
    try:
        status = cli.main(argv)
    except SystemExit as exit_info:  # argparse's own usage errors
        status = exit_info.code
    return status, capsys.readouterr().err.strip().splitlines()


def test_bad_command_lines_give_one_line_and_an_exit_status(files, capsys):
    cases = _cases(files)
    assert len(cases) >= 30
    for argv, expected, says in cases:
        status, lines = _run(argv, capsys)
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, lines)
        assert status == expected and says in lines[0], (argv, status, lines[0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_absent_cuda_is_a_usage_error(files, capsys):
    status, lines = _run(["bag", "segment", str(files["bag"]), str(files["root"] / "out"), "--device", "cuda"], capsys)
    assert status == USAGE and lines == [
        "error: pointmoe bag segment: argument --device: cuda: torch sees no CUDA GPU on this machine (use cpu or "
        "auto) (see pointmoe bag segment --help)"]


def test_debug_shows_the_traceback_and_json_the_reason(files, capsys):
    argv = ["bag", "segment", str(files["bag"]), str(files["root"] / "out"), "--checkpoint",
            str(files["root"] / "truncated.safetensors")]
    status = cli.main([*argv, "--debug", "--json"])
    out, err = capsys.readouterr()
    assert status == FAILURE and "Traceback (most recent call last)" in err and "SafetensorError" in err
    assert err.strip().splitlines()[-1].startswith("error: ValueError: ")
    assert '"ok": false' in out.strip().splitlines()[-1]
