"""Acceptance: our backbone reproduces the official Point-MoE fixture (../shared/data/parity)."""
import json

import pytest

from pointmoe_core.cli import main
from pointmoe_core.seg.parity import find_fixture, run_parity
from pointmoe_core.seg.sparse_conv import available_backends


@pytest.fixture(scope="module")
def fixture_dir(shared_data):
    d = shared_data / "parity"
    if not d.is_dir():
        pytest.skip(f"parity fixture not found at {d}")
    return d


@pytest.mark.parametrize("backend", ["torch", "spconv"])
def test_official_fixture_parity(fixture_dir, backend):
    if backend not in available_backends():
        pytest.skip("spconv is not installed")
    result = run_parity(fixture_dir, conv_backend=backend)
    arrays = result["arrays"]
    assert result["conv_backend"] == backend
    assert result["weights_loaded"] == 477  # strict=True load of every official tensor
    assert result["passed"] and result["max_abs_diff"] < 1e-5  # README: ~1e-6 expected
    assert arrays["embed_feat"]["max_abs_diff"] < 1e-5
    assert arrays["enc_out_feat"]["max_abs_diff"] < 1e-5
    assert arrays["enc0_block0_topk_weight"]["max_abs_diff"] < 1e-5
    for name in ("serialized_code", "serialized_order", "serialized_depth"):
        assert arrays[name]["mismatch"] == 0, name
    routing = {k: v for k, v in arrays.items() if k.startswith("moe_topk__") or k == "enc0_block0_topk"}
    assert len(routing) == 10  # enc0_block0_topk + 9 MoE layers
    for name, r in routing.items():
        assert r["mismatch"] == 0, f"{name}: rows {r['rows']}"


@pytest.mark.parametrize("backend", ["torch", "spconv"])
def test_reduced_precision_error_is_measured_on_every_backend(fixture_dir, backend):
    # under CPU autocast spconv still runs in float32; ~0.075 bf16 / ~0.055 fp16 on outputs of scale ~1
    if backend not in available_backends():
        pytest.skip("spconv is not installed")
    bf16 = run_parity(fixture_dir, conv_backend=backend, dtype="bfloat16")
    fp16 = run_parity(fixture_dir, conv_backend=backend, dtype="float16")
    assert bf16["dtype"] == "bfloat16" and not bf16["passed"]  # 1e-4 is a float32 tolerance
    assert 1e-4 < fp16["max_abs_diff"] < bf16["max_abs_diff"] < 0.2
    for result in (bf16, fp16):
        routed = [r for k, r in result["arrays"].items() if k.startswith("moe_topk__")]
        assert sum(r["mismatch"] for r in routed) < 0.01 * sum(r["total"] for r in routed)


def test_parity_cli_prints_json_and_exits_zero(fixture_dir, capsys):
    assert main(["parity", "--fixture", str(fixture_dir), "--conv-backend", "torch", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.strip().startswith("out_feat") for line in lines)
    final = json.loads(lines[-1])
    assert final["max_abs_diff"] < 1e-4 and final["passed"]

    assert main(["parity", "--fixture", str(fixture_dir), "--conv-backend", "torch", "--tol", "1e-12",
                 "--json"]) == 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["passed"] is False


def test_find_fixture_reports_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_fixture(tmp_path / "nope")
    (tmp_path / "x_official.pth").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="_meta.json"):
        find_fixture(tmp_path)
