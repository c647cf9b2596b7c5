"""tools/threshold_sweep.py, whose table chose the person-score default
(`prtr_tf.serving.defaults.PERSON_SCORE_THRESHOLD`): its matching, its precision /
recall / F1 per threshold and its choice, on hand-made boxes with known answers; the
config of a --detector_workdir (recorded, else demo_detector's)."""
import numpy as np
import pytest

from tools import threshold_sweep as ts


def test_iou_by_hand():
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 0, 0]]
    np.testing.assert_allclose(ts.iou_xywh(a, b), [[1.0, 50 / 150, 0.0, 0.0]])
    assert ts.iou_xywh(np.zeros((0, 4)), b).shape == (0, 4)


def test_matching_is_greedy_by_score_and_takes_each_person_once():
    gt = np.array([[0, 0, 10, 10], [100, 100, 10, 10]], float)
    # Two boxes on the first person: only one counts. The higher-scored one takes it
    # even where the lower one overlaps more (greedy by score, as COCO's matching).
    dets = np.array([[1, 0, 10, 10], [0, 0, 10, 10], [100, 101, 10, 10], [50, 50, 5, 5]],
                    float)
    assert ts.matched(dets, [0.9, 0.8, 0.7, 0.95], gt) == 2
    assert ts.matched(dets[3:], [0.9], gt) == 0  # no overlap
    assert ts.matched(dets[:1], [0.9], gt, iou=0.95) == 0  # IoU 0.82 < 0.95
    assert ts.matched(np.zeros((0, 4)), [], gt) == 0


def test_sweep_counts_and_choice_by_hand():
    gt = {1: np.array([[0, 0, 10, 10], [100, 100, 10, 10]], float),
          2: np.array([[0, 0, 20, 20]], float)}
    found = [(1, [[0, 0, 10, 10], [100, 100, 10, 10], [50, 50, 10, 10]], [0.9, 0.3, 0.6]),
             (2, [[0, 0, 20, 20], [0, 0, 0, 5]], [0.45, 0.99])]  # (a zero-width box)
    rows = ts.sweep(found, gt, thresholds=(0.25, 0.5, 0.95))
    # 0.25: 4 kept (the zero-width box never), 3 true -> p 3/4, r 3/3
    assert (rows[0.25]["kept"], rows[0.25]["tp"]) == (4, 3)
    assert rows[0.25]["precision"] == pytest.approx(0.75) and rows[0.25]["recall"] == 1.0
    # 0.5: 0.9 and 0.6 kept, 1 true -> p 1/2, r 1/3, F1 0.4
    assert (rows[0.5]["kept"], rows[0.5]["tp"]) == (2, 1)
    assert rows[0.5]["f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    # 0.95: nothing kept: precision 1 by convention, recall 0, F1 0
    assert rows[0.95] == {"precision": 1.0, "recall": 0.0, "f1": 0.0, "kept": 0, "tp": 0}


def test_choose_takes_the_highest_median_f1_and_the_lower_of_ties():
    def rows(best_t, f1=0.5):
        return {t: {"f1": f1 if t == best_t else 0.1} for t in ts.THRESHOLDS}

    # The median over three detectors: two peak at 0.4, one at 0.6.
    best, medians = ts.choose({"a": rows(0.4), "b": rows(0.4), "c": rows(0.6)})
    assert best == 0.4 and medians[0.4] == pytest.approx(0.5)
    flat = {t: {"f1": 0.3} for t in ts.THRESHOLDS}
    assert ts.choose({"a": flat})[0] == ts.THRESHOLDS[0]  # ties: the lowest threshold


def test_a_detector_workdir_is_read_with_its_recorded_config(tmp_path):
    from prtr_tf.checkpoints import artifact
    from prtr_tf.config import load_config

    deformable = load_config("demo_deformable_detector")
    artifact.record_config(str(tmp_path / "run"), deformable)
    config = ts.workdir_config(str(tmp_path / "run"), "/data/demo")
    assert config.model.to_dict() == deformable.model.to_dict()
    assert config.data.root == "/data/demo"
    older = ts.workdir_config(str(tmp_path / "no_record"), "/data/demo")  # no config.json
    assert older.model.to_dict() == load_config("demo_detector").model.to_dict()
    assert older.data.root == "/data/demo"
