import numpy as np
import pytest
import torch

from pointmoe_core.train.metrics import SegMetrics, confusion_matrix, scores


def test_confusion_matrix_and_scores_by_hand():
    pred = torch.tensor([0, 1, 1, 2, 2, 0])
    target = torch.tensor([0, 1, 2, 2, -1, 1])  # the fifth point is unlabelled
    matrix = confusion_matrix(pred, target, 4)
    expected = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])  # rows: truth
    np.testing.assert_array_equal(matrix, expected)
    result = scores(matrix)
    # IoU = TP / (TP + FP + FN): class 0 1/2, class 1 1/3, class 2 1/2, class 3 absent -> NaN
    np.testing.assert_allclose(result["iou"][:3], [1 / 2, 1 / 3, 1 / 2])
    assert np.isnan(result["iou"][3])
    assert result["miou"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert result["allacc"] == pytest.approx(3 / 5)


def test_confusion_rejects_out_of_range_ids():
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


def test_seg_metrics_keeps_datasets_apart_and_reports_class_names():
    metrics = SegMetrics({"rooms": ("floor", "wall"), "streets": ("road", "car", "pole")})
    metrics.update("rooms", np.array([0, 0, 1, 1]), np.array([0, 0, 1, 0]))
    metrics.update("rooms", np.array([1]), np.array([1]))  # accumulates
    metrics.update("streets", np.array([0, 1, 1]), np.array([0, 1, 2]))
    summary = metrics.summary()
    rooms, streets = summary["rooms"], summary["streets"]
    assert rooms["confusion"] == [[2, 1], [0, 2]] and rooms["points"] == 5
    assert rooms["iou"] == pytest.approx({"floor": 2 / 3, "wall": 2 / 3})
    assert rooms["allacc"] == pytest.approx(4 / 5)
    assert streets["iou"] == pytest.approx({"road": 1.0, "car": 1 / 2, "pole": 0.0})
    assert streets["miou"] == pytest.approx(0.5)
