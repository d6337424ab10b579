import argparse
import json
from collections import Counter

import numpy as np
import pytest

from pointmoe_core.train import analyze, analyze_cli
from pointmoe_core.train.analyze import DatasetRouting, jensen_shannon


def test_jsd_is_zero_for_identical_distributions():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    assert jensen_shannon(np.stack([p, p, p]), weights=[5, 1, 2]) == 0.0


def test_jsd_of_disjoint_and_weighted_distributions():
    disjoint = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert jensen_shannon(disjoint) == pytest.approx(1.0)  # bits
    # weighted by token share: H(0.25, 0.75) - 0 for two point masses
    assert jensen_shannon(disjoint, weights=[1, 3]) == pytest.approx(-(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75)))
    assert jensen_shannon(np.eye(4)) == pytest.approx(2.0)  # at most log2 of the dataset count
    assert jensen_shannon(np.array([[2, 2], [1, 3]])) > 0  # counts are normalised


def test_analysis_of_collected_routing():
    layers = ("enc.enc0.block0.attn.proj", "dec.dec0.block0.attn.proj")
    rooms = DatasetRouting({l: np.array([30, 10]) for l in layers}, dict.fromkeys(layers, 20),
                           Counter({(0, 0): 15, (0, 1): 5}))
    streets = DatasetRouting({layers[0]: np.array([30, 10]), layers[1]: np.array([0, 40])}, dict.fromkeys(layers, 20),
                             Counter({(0, 1): 20}))
    result = analyze.analyze({"rooms": rooms, "streets": streets}, top=1)
    first, last = result["layers"]
    assert first["jsd"] == 0.0 and first["usage"]["rooms"] == [0.75, 0.25]
    assert last["jsd"] == pytest.approx(jensen_shannon(np.array([[30, 10], [0, 40]])))
    assert result["pathways"] == [{"experts": [0, 1], "points": 25, "share": 25 / 40,
                                   "by_dataset": {"rooms": 5, "streets": 20}}]
    assert result["distinct_pathways"] == 2
    assert result["pathway_purity"] == 20 / 25 and result["pathway_purity_chance"] == 0.5


def test_routing_cli_writes_histograms_pathways_and_pictures(trained_run, tmp_path):
    parser = argparse.ArgumentParser()
    analyze_cli.add_arguments(parser)
    summary = analyze_cli.run(parser.parse_args(["routing", "--checkpoint", str(trained_run / "checkpoints"),
                                             "--max-scenes", "1", "--output", str(tmp_path)]))
    summary = json.loads(json.dumps(summary))
    assert summary["datasets"] == ["synthetic_indoor", "synthetic_outdoor", "synthetic_tabletop"]
    assert len(summary["layers"]) == 9  # the tiny preset: MoE at W_o of all 5 + 4 blocks
    for layer in summary["layers"]:
        assert all(sum(usage) == pytest.approx(1.0) for usage in layer["usage"].values())
        assert 0.0 <= layer["jsd"] <= np.log2(3)
    pathways = summary["pathways"]
    assert 0 < len(pathways) <= 100 and all(len(p["experts"]) == 9 for p in pathways)
    assert [p["points"] for p in pathways] == sorted((p["points"] for p in pathways), reverse=True)
    assert json.loads((tmp_path / "routing.json").read_text())["mean_jsd"] == summary["mean_jsd"]
    assert set(summary["images"]) == {"jsd_per_layer"} | {
        f"experts_{d}_{l}" for d in summary["datasets"] for l in ("e0.0", "d0.0")}
    for image in summary["images"].values():
        assert (tmp_path / image).stat().st_size > 5_000
