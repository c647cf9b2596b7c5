"""Evaluation of custom keypoint sets: oracle runs on the real files (ground truth
through the real crop and back: AP 1.0, PCK 100), OKS with the set's sigmas, and the
PCK / AUC / EPE conventions on hand-made answers."""
import json

import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.data import keypoint_sets
from prtr_tf.models.keypoint.data import build_eval_dataset
from prtr_tf.data.splits import load_records
from prtr_tf.evaluation import coco, pck
from prtr_tf.models.keypoint.evaluate import coco_metrics, distance_metrics
from prtr_tf.models.keypoint.predict import crop_to_image
from tests.custom_sets import SETS, custom_config


def oracle_predictions(config, records):
    """What a perfect keypoint model returns: the eval pipeline's crop targets mapped
    back to the image by the inference inverse, in `predict_dataset`'s layout."""
    out = {k: [] for k in ("keypoints", "center", "scale", "box_score", "image_id", "index")}
    for batch in build_eval_dataset(records, config, batch=8):
        xy = crop_to_image(batch["target"], batch["center"], batch["scale"],
                           config.model.image_size)
        out["keypoints"].append(tf.concat([xy, batch["target_weight"][..., None]], -1))
        for key in ("center", "scale", "box_score", "image_id", "index"):
            out[key].append(batch[key])
    return {k: np.concatenate([np.asarray(v) for v in vs]) for k, vs in out.items()}


@pytest.mark.parametrize("name", sorted(SETS))
def test_oracle_gives_ap_one_and_pck_100(name):
    config = custom_config(name)
    records = load_records(config, "val")
    with open(f"{config.data.root}/{config.data.val_ann}", encoding="utf-8") as f:
        ann = json.load(f)
    labelled = [a for a in ann["annotations"] if any(v > 0 for v in a["keypoints"][2::3])]
    assert len(records) == len(labelled)  # every labelled instance, of any category
    preds = oracle_predictions(config, records)
    scores, results = coco_metrics(preds, config, "val", records=records)
    assert scores["AP"] == pytest.approx(1.0) and scores["AR"] == pytest.approx(1.0)
    # The category id of each instance is kept in the results.
    assert sorted(r["category_id"] for r in results) == sorted(
        a["category_id"] for a in labelled)
    metrics = distance_metrics(preds, records)
    assert metrics["PCK@0.2"] == pytest.approx(1.0)
    assert metrics["AUC"] == pytest.approx(0.95)  # threshold 0 counts nothing
    assert metrics["EPE"] < 1e-3


@pytest.mark.parametrize("name", sorted(SETS))
def test_oks_uses_the_sets_sigmas(name):
    """A 2-pixel shift of every joint: the AP pycocotools gives with the set's sigmas,
    which differs from the AP with other sigmas of the same length."""
    config = custom_config(name)
    records = load_records(config, "val")
    preds = oracle_predictions(config, records)
    preds["keypoints"][..., 0] += 0.04 * np.stack([records[i]["bbox"][2:].max()
                                                   for i in preds["index"]])[:, None]
    sigmas = keypoint_sets.oks_sigmas(config)
    ours = coco_metrics(preds, config, "val", records=records)[0]["AP"]
    ann = f"{config.data.root}/{config.data.val_ann}"
    results = coco.results_from_predictions(
        preds["keypoints"], preds["center"], preds["scale"], preds["box_score"],
        preds["image_id"], sigmas=sigmas,
        category_id=[records[i]["category_id"] for i in preds["index"]])
    cats = keypoint_sets.category_ids(config)
    same = coco.evaluate_coco(ann, results, sigmas=sigmas, category_ids=cats)["AP"]
    wider = coco.evaluate_coco(ann, results, sigmas=sigmas * 3, category_ids=cats)["AP"]
    assert ours == pytest.approx(same)
    assert wider > ours  # looser sigmas forgive the shift: the sigmas were used


def test_crowdpose_detections_are_read_with_their_category():
    config = custom_config("crowdpose_mini")
    records = load_records(config, "val",
                           det_json=f"{config.data.root}/person_detections.json")
    assert len(records) == 6 and {r["category_id"] for r in records} == {1}
    assert all(r["joints"].shape == (14, 3) for r in records)


# ------------------------------------------------------------ PCK / AUC / EPE answers

def test_pck_auc_epe_known_answers():
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[0, 0] = [3.0, 4.0]    # 5 px
    pred[0, 1] = [30.0, 0.0]   # 30 px
    pred[1, 0] = [0.0, 12.0]   # 12 px
    mask = np.array([[True, True, True], [True, True, False]])
    boxes = np.array([[0, 0, 100, 50], [0, 0, 40, 50]], float)  # normalisers 100, 50
    acc, mean = pck.pck(pred, gt, mask, pck.box_normalizer(boxes))
    # joint 0: 5/100 ok, 12/50 = 0.24 not; joint 1: 30/100 not, 0 ok; joint 2: 0 ok
    np.testing.assert_allclose(acc, [0.5, 0.5, 1.0])
    assert mean == pytest.approx(2.0 / 3.0)
    # EPE: mean over the 5 labelled joints of (5, 30, 0, 12, 0)
    assert pck.epe(pred, gt, mask) == pytest.approx(47.0 / 5.0)
    # AUC over thresholds 0, 0.05, ..., 0.95 of distance / 30 px: distances 5/30, 1,
    # 0, 0.4, 0. Joint 0 (1/6, 0.4): 0 below thr 0, 0.5 from 0.2 (> 1/6), 1 from 0.45;
    # joint 1 (1.0, 0): 0 at thr 0 then 0.5; joint 2 (0): 0 at thr 0 then 1.
    thresholds = np.arange(20) / 20
    j0 = np.where(thresholds > 0.4, 1.0, np.where(thresholds > 1 / 6, 0.5, 0.0))
    j1 = np.where(thresholds > 0, 0.5, 0.0)
    j2 = np.where(thresholds > 0, 1.0, 0.0)
    assert pck.auc(pred, gt, mask) == pytest.approx(np.mean((j0 + j1 + j2) / 3))


def test_pck_ignores_unlabelled_joints_and_empty_boxes():
    gt = np.zeros((2, 2, 2))
    pred = gt + 100.0
    mask = np.array([[True, False], [True, True]])
    boxes = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], float)  # second: normaliser 0
    acc, mean = pck.pck(pred, gt, mask, pck.box_normalizer(boxes))
    np.testing.assert_allclose(acc, [0.0, -1.0])  # joint 1 labelled only in person 2
    assert mean == 0.0


def test_distance_table():
    table = pck.format_table({"PCK@0.2": 1.0, "AUC": 0.95, "EPE": 0.5}, name="m")
    assert table.splitlines()[-1] == "| m | 100.0 | 95.0 | 0.50 |"
