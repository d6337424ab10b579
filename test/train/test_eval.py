import argparse
import json

import numpy as np
import pytest

from pointmoe_core import cli
from pointmoe_core.train import eval_cli, evaluate
from pointmoe_core.train.datasets import DatasetEntry


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    eval_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_eval_gives_a_json_summary_per_dataset_on_every_original_point(trained_run, capsys):
    assert cli.main(["eval", "seg", "--checkpoint", str(trained_run / "checkpoints"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ok"] and summary["step"] == 2
    results = summary["datasets"]
    assert {name: r["zero_shot"] for name, r in results.items()} == {
        "synthetic_indoor": False, "synthetic_outdoor": False, "synthetic_tabletop": True}
    for entry in ("indoor", "outdoor", "tabletop"):
        dataset = DatasetEntry.from_spec(f"synthetic:domain={entry},num_scenes=1,split=val").build(train=False)
        result = results[dataset.name]
        labelled = int((dataset.load(0)["segment"] >= 0).sum())
        confusion = np.array(result["confusion"])
        assert confusion.shape == (len(dataset.class_names),) * 2
        assert confusion.sum() == result["points"] == labelled  # scored at full resolution, not per voxel
        assert list(result["iou"]) == list(dataset.class_names)
        assert 0.0 <= result["miou"] <= 1.0 and result["allacc"] == pytest.approx(np.trace(confusion) / labelled)
    assert summary["miou_zero_shot"] == results["synthetic_tabletop"]["miou"]


def test_zero_shot_through_the_text_encoder_matches_the_class_table(trained_run):
    trained = evaluate.load_trained(trained_run / "checkpoints")
    seen = DatasetEntry.from_spec("synthetic:domain=indoor,num_scenes=1,split=val").build(train=False)
    unseen = DatasetEntry.from_spec("synthetic:domain=indoor,num_scenes=1,split=val").build(train=False)
    unseen.name = "renamed_rooms"  # same scenes and class names, but a dataset the model never saw
    results = evaluate.evaluate(trained.model, [seen, unseen])
    assert not results["synthetic_indoor"]["zero_shot"] and results["renamed_rooms"]["zero_shot"]
    # the stored class table holds the text encoder's embeddings of the same names
    assert results["renamed_rooms"]["confusion"] == results["synthetic_indoor"]["confusion"]


def test_eval_cli_takes_dataset_specs(trained_run):
    summary = eval_cli.run(parse(["seg", "--checkpoint", str(trained_run / "checkpoints"), "--datasets",
                                  "synthetic:domain=tabletop,num_scenes=1,split=val"]))
    assert list(summary["datasets"]) == ["synthetic_tabletop"] and summary["miou_seen"] is None
