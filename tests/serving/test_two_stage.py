"""Two-stage inference: crops and their inverse, flip test, the Python API (eval.py:
tests/cli/test_eval.py)."""
import json

import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.config import load_config
from prtr_tf.models.keypoint.data import build_eval_dataset
from prtr_tf.data.splits import load_records
from prtr_tf.evaluation import coco, mpii
from prtr_tf.models.keypoint.predict import crop_to_image, predict_crops
from prtr_tf.models.keypoint.model import build_model


def coco_mini_config(root, name="tiny"):
    config = load_config(name)
    config.data.root = str(root)
    config.data.val_ann = config.data.train_ann = "person_keypoints.json"
    config.data.val_images = config.data.train_images = "images"
    return config


def _oracle(config, records):
    """Ground-truth joints through the crop transform (the eval pipeline's targets) and
    back through the inference inverse: what a perfect keypoint model would return."""
    ds = build_eval_dataset(records, config, batch=8)
    rows, kps = [], []
    for batch in ds:
        xy = crop_to_image(batch["target"], batch["center"], batch["scale"],
                           config.model.image_size)
        kps.append(tf.concat([xy, batch["target_weight"][..., None]], -1).numpy())
        rows.append(batch["index"].numpy())
    return np.concatenate(kps), np.concatenate(rows)


def test_oracle_coco_mini_ap_is_one(coco_mini):
    config = coco_mini_config(coco_mini, "coco_res50_384x288")
    records = load_records(config, "val")
    keypoints, rows = _oracle(config, records)
    assert len(rows) == len(records)
    results = coco.results_from_predictions(
        keypoints, [records[i]["center"] for i in rows], [records[i]["scale"] for i in rows],
        np.ones(len(rows)), [records[i]["image_id"] for i in rows])
    stats = coco.evaluate_coco(str(coco_mini / "person_keypoints.json"), results)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


def test_oracle_mpii_mini_pckh_is_100(mpii_mini):
    config = load_config("mpii_res50_256x256")
    config.data.root = str(mpii_mini)
    config.data.val_ann, config.data.val_images = "annotations.json", "images"
    records = load_records(config, "val")
    keypoints, rows = _oracle(config, records)
    joints = np.stack([records[i]["joints"] for i in rows])
    gt = joints[:, :, :2] + 1
    sizes = mpii.head_size_from_annotation(gt, joints[:, :, 2])
    result = mpii.pckh(keypoints[:, :, :2], gt, joints[:, :, 2], sizes)
    assert result["Mean"] == pytest.approx(100.0)


def test_flip_test_on_a_mirrored_crop_returns_mirrored_keypoints():
    config = load_config("tiny")
    model = build_model(config.model)
    flip_pairs = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
    x = tf.random.stateless_normal((3, *config.model.image_size, 3), seed=(1, 2))
    coords, scores = predict_crops(model, x, flip_pairs)
    m_coords, m_scores = predict_crops(model, tf.reverse(x, axis=[2]), flip_pairs)
    perm = list(range(17))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    mirrored = np.stack([1.0 - coords.numpy()[:, perm, 0], coords.numpy()[:, perm, 1]], -1)
    np.testing.assert_allclose(m_coords.numpy(), mirrored, atol=1e-5)
    np.testing.assert_allclose(m_scores.numpy(), scores.numpy()[:, perm], atol=1e-6)
    # Without the flip test the model alone is not mirror-symmetric (random weights).
    plain, _ = predict_crops(model, x)
    plain_m, _ = predict_crops(model, tf.reverse(x, axis=[2]))
    assert np.abs(plain_m.numpy() - np.stack(
        [1.0 - plain.numpy()[:, perm, 0], plain.numpy()[:, perm, 1]], -1)).max() > 1e-3


def test_detections_json_gives_one_crop_per_person_box(coco_mini):
    config = coco_mini_config(coco_mini)
    dets = json.loads((coco_mini / "person_detections.json").read_text())
    expected = sum(1 for d in dets if d["category_id"] == 1 and d["score"] >= 0.0)
    records = load_records(config, "val", det_json=str(coco_mini / "person_detections.json"))
    assert len(records) == expected > 0
    scores = sorted(r["box_score"] for r in records)
    assert scores == sorted(d["score"] for d in dets if d["category_id"] == 1)


def test_pose_estimator_api_on_a_real_image(coco_mini):
    from PIL import Image
    from prtr_tf.serving.estimator import PoseEstimator
    config = load_config("tiny")
    estimator = PoseEstimator(build_model(config.model), config)
    image = np.asarray(Image.open(coco_mini / "images" / "000000000785.jpg").convert("RGB"))
    persons = estimator(image, boxes=[[280, 40, 220, 380], [10, 10, 50, 80]],
                        box_scores=[0.9, 0.5])
    assert 1 <= len(persons) <= 2
    for p in persons:
        assert p["keypoints"].shape == (17, 3)
        assert 0.0 <= p["score"] <= 1.0
    with pytest.raises(ValueError, match="box #0"):
        estimator(image, boxes=[[0, 0, -5, 10]])
    with pytest.raises(ValueError, match="no person boxes"):
        estimator(image)


def test_mpii_with_official_style_gt_mat_through_eval_path(mpii_mini, tmp_path):
    """validate's gt_valid.mat route: rows re-ordered by annotation index, true head boxes."""
    from prtr_tf.models.keypoint.evaluate import mpii_metrics
    from tests.evaluation.test_evaluation import _write_gt_mat

    config = load_config("mpii_res50_256x256")
    config.data.root = str(mpii_mini)
    config.data.val_ann, config.data.val_images = "annotations.json", "images"
    records = load_records(config, "val")
    keypoints, rows = _oracle(config, records)
    gt = np.stack([r["joints"][:, :2] + 1 for r in records])
    vis = np.stack([r["joints"][:, 2] for r in records])
    boxes = np.stack([[[0.0, 0.0], [60.0, 60.0]]] * len(records))  # head size 0.6*85 = 51 px
    mat = tmp_path / "gt_valid.mat"
    _write_gt_mat(mat, gt, vis, boxes)
    shuffled = {"keypoints": keypoints[::-1], "index": rows[::-1]}
    assert mpii_metrics(shuffled, records, str(mat))["Mean"] == pytest.approx(100.0)
    shifted = dict(shuffled, keypoints=shuffled["keypoints"] + [40.0, 0.0, 0.0])
    assert mpii_metrics(shifted, records, str(mat))["Mean"] < 1.0
    with pytest.raises(ValueError, match="predictions cover"):
        mpii_metrics({"keypoints": keypoints[:2], "index": rows[:2]}, records, str(mat))
