"""COCO AP (rescoring, OKS-NMS, COCOeval) and MPII PCKh (spec §5.7)."""
import json
import warnings

import numpy as np
import pytest

from prtr_tf.data.keypoint_sets import MPII_JOINTS
from prtr_tf.evaluation import coco, mpii
from prtr_tf.data.keypoint_sets import COCO_SIGMAS
from prtr_tf.evaluation.nms import oks_iou, oks_nms

J = {name: i for i, name in enumerate(MPII_JOINTS)}


# ----------------------------------------------------------------------------- COCO helpers

def _gt_predictions(coco_mini, shift=0.0):
    """coco_mini GT persons (with keypoints) as per-crop predictions, joint scores 1."""
    path = coco_mini / "person_keypoints.json"
    anns = [a for a in json.loads(path.read_text())["annotations"]
            if a["num_keypoints"] > 0 and not a["iscrowd"]]
    kpts = np.array([a["keypoints"] for a in anns], np.float64).reshape(-1, 17, 3)
    kpts[..., 0] += shift
    kpts[..., 2] = 1.0
    box = np.array([a["bbox"] for a in anns], np.float64)
    return dict(keypoints=kpts, center=box[:, :2] + box[:, 2:] / 2,
                scale=box[:, 2:] / 200.0 * 1.25, box_score=np.ones(len(anns)),
                image_id=np.array([a["image_id"] for a in anns])), path


def _pose(dx=0.0, dy=0.0, score=1.0):
    pose = np.zeros((17, 3))
    pose[:, 0] = np.arange(17) * 10.0 + dx
    pose[:, 1] = np.arange(17) * 5.0 + dy
    pose[:, 2] = score
    return pose


# ----------------------------------------------------------------------------- COCO

def test_coco_oracle_gives_ap_one(coco_mini):
    preds, gt = _gt_predictions(coco_mini)
    results = coco.results_from_predictions(**preds)
    assert len(results) == len(preds["keypoints"])  # distinct persons survive OKS-NMS
    stats = coco.evaluate_coco(gt, results)
    assert list(stats) == list(coco.STATS_NAMES)
    for name, value in stats.items():
        assert value == pytest.approx(1.0), name


def test_coco_ap_decreases_with_perturbation(coco_mini):
    aps = []
    for shift in (0.0, 2.0, 4.0, 8.0, 16.0):
        preds, gt = _gt_predictions(coco_mini, shift)
        aps.append(coco.evaluate_coco(gt, coco.results_from_predictions(**preds))["AP"])
    assert aps[0] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(aps, aps[1:])), aps


def test_rescore_hand_checked():
    kpts = np.zeros((3, 4, 3))
    kpts[0, :, 2] = [0.1, 0.3, 0.5, 0.2]  # > 0.2: 0.3, 0.5 -> mean 0.4 (0.2 is not > 0.2)
    kpts[1, :, 2] = [0.1, 0.2, 0.0, 0.05]  # none above: 0
    kpts[2, :, 2] = [0.9, 0.9, 0.6, 0.6]  # mean 0.75
    scores = coco.rescore(kpts, [0.5, 1.0, 0.8])
    np.testing.assert_allclose(scores, [0.2, 0.0, 0.6])
    np.testing.assert_allclose(coco.rescore(kpts, np.ones(3), in_vis_thre=0.4), [0.5, 0, 0.75])


def test_oks_iou_hand_computed():
    g, area = _pose(), 100.0 * 100.0
    d = g.copy()
    d[0, :2] += (3.0, 4.0)  # only the nose moves, by 5 px
    e = 25.0 / (2 * COCO_SIGMAS[0]) ** 2 / (area + np.spacing(1)) / 2
    expected = (16 + np.exp(-e)) / 17
    np.testing.assert_allclose(oks_iou(g, d[None], area, [area]), [expected])
    np.testing.assert_allclose(oks_iou(g.ravel(), np.stack([g, g]).reshape(2, -1), area,
                                       [area, area]), [1.0, 1.0])
    # in_vis_thre (HRNet): only the candidate's joints scoring above it count.
    d2 = d.copy()
    d2[0, 2] = 0.0
    np.testing.assert_allclose(oks_iou(g, d2[None], area, [area], in_vis_thre=0.5), [1.0])
    d2[:, 2] = 0.0
    np.testing.assert_allclose(oks_iou(g, d2[None], area, [area], in_vis_thre=0.5), [0.0])


def test_oks_nms_hand_made():
    area = 100.0 * 100.0

    def db(*poses):
        return [{"keypoints": p, "score": s, "area": area} for p, s in poses]

    # Near-identical persons: only the better one is kept.
    assert oks_nms(db((_pose(), 0.7), (_pose(1.0, 0.5), 0.9)), 0.9) == [1]
    # Distant persons: both kept, best first.
    assert oks_nms(db((_pose(), 0.7), (_pose(300.0, 0.0), 0.9)), 0.9) == [1, 0]
    # Greedy, not transitive: A (0 px) suppresses B (3 px, OKS 0.95); C (6 px) has OKS 0.83
    # with A and is kept although B, had it survived, would have suppressed it.
    a, b, c = _pose(), _pose(3.0), _pose(6.0)
    assert oks_iou(a, b[None], area, [area])[0] > 0.9
    assert oks_iou(b, c[None], area, [area])[0] > 0.9
    assert oks_iou(a, c[None], area, [area])[0] <= 0.9
    assert oks_nms(db((c, 0.7), (b, 0.8), (a, 0.9)), 0.9) == [2, 0]
    assert oks_nms([], 0.9) == []


def test_results_from_predictions_groups_rescores_and_nms():
    kpts = np.stack([_pose(score=0.5), _pose(1.0, score=0.9), _pose(), _pose(300.0)])
    kpts[3, :, 2] = 0.1  # no joint above 0.2: score 0
    scale = np.full((4, 2), 0.5)  # area (200 * 0.5)^2 = 100^2
    results = coco.results_from_predictions(kpts, np.zeros((4, 2)), scale,
                                            [1.0, 0.5, 1.0, 1.0], [7, 7, 9, 9])
    assert [(r["image_id"], r["score"]) for r in results] == [(7, 0.5), (9, 1.0), (9, 0.0)]
    assert results[0]["keypoints"] == [float(v) for v in kpts[0].ravel()]
    assert set(results[0]) == {"image_id", "category_id", "keypoints", "score"}
    assert results[0]["category_id"] == 1
    json.dumps(results)  # plain Python types
    assert coco.results_from_predictions(np.zeros((0, 17, 3)), np.zeros((0, 2)),
                                         np.zeros((0, 2)), [], []) == []


def test_write_results_loads_with_pycocotools(coco_mini, tmp_path):
    preds, gt = _gt_predictions(coco_mini, 2.0)
    results = coco.results_from_predictions(**preds)
    path = coco.write_results(results, tmp_path / "out" / "results.json")
    coco_gt = coco.load_coco(gt)
    dt = coco_gt.loadRes(str(path))
    assert len(dt.getAnnIds()) == len(results)
    from_path = coco.evaluate_coco(coco_gt, path)
    assert from_path == coco.evaluate_coco(gt, results)
    assert "area" not in results[0]  # loadRes got copies


def test_evaluate_coco_empty_results(coco_mini, tmp_path):
    gt = coco_mini / "person_keypoints.json"
    with pytest.warns(UserWarning, match="no keypoint results"):
        stats = coco.evaluate_coco(gt, [])
    assert list(stats) == list(coco.STATS_NAMES) and set(stats.values()) == {0.0}
    path = coco.write_results([], tmp_path / "empty.json")
    with pytest.warns(UserWarning, match="empty.json"):
        assert set(coco.evaluate_coco(gt, path).values()) == {0.0}


def test_evaluate_coco_errors_name_the_problem(coco_mini, tmp_path):
    gt = coco_mini / "person_keypoints.json"
    bad = [{"image_id": 123, "category_id": 1, "keypoints": [0.0] * 51, "score": 1.0}]
    with pytest.raises(ValueError, match="image_id 123"):
        coco.evaluate_coco(gt, bad)
    bad = [{"image_id": 785, "category_id": 1, "keypoints": [0.0] * 48, "score": 1.0}]
    with pytest.raises(ValueError, match="48 keypoint values"):
        coco.evaluate_coco(gt, bad)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        coco.evaluate_coco(tmp_path / "nope.json", [])


def test_evaluate_coco_is_quiet(coco_mini, capsys):
    preds, gt = _gt_predictions(coco_mini)
    coco.evaluate_coco(gt, coco.results_from_predictions(**preds))
    assert capsys.readouterr().out == ""
    coco.evaluate_coco(gt, coco.results_from_predictions(**preds), verbose=True)
    assert "Average Precision" in capsys.readouterr().out


def test_coco_format_table():
    stats = dict(zip(coco.STATS_NAMES, np.linspace(0.7, 0.79, 10)))
    lines = coco.format_table(stats, name="prtr_res50").splitlines()
    assert lines[0] == "| Model | " + " | ".join(coco.STATS_NAMES) + " |"
    assert lines[1] == "|---" * 11 + "|"
    assert lines[2].startswith("| prtr_res50 | 70.0 | 71.0 |")


# ----------------------------------------------------------------------------- MPII

def test_pckh_oracle_on_mpii_mini(mpii_mini):
    gt = mpii.load_annotations(mpii_mini / "annotations.json")
    preds = gt["gt_joints"] - 1.0  # 0-based
    with pytest.warns(UserWarning, match="approximate head size"):
        result = mpii.evaluate_mpii(preds, mpii_mini / "annotations.json")
    assert list(result) == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle",
                            "Mean", "Mean@0.1"]
    assert all(v == pytest.approx(100.0) for v in result.values()), result
    # A systematic 1-px error (forgetting the +1) stays inside 0.5 head sizes...
    sizes = mpii.head_size_from_annotation(gt["gt_joints"], gt["joints_vis"])
    assert mpii.pckh(gt["gt_joints"], gt["gt_joints"], gt["joints_vis"], sizes)["Mean"] == 100
    # ...but large errors do not.
    far = mpii.pckh(preds + sizes[:, None, None], gt["gt_joints"], gt["joints_vis"], sizes)
    assert far["Mean"] == 0.0


def _one_person(correct):
    """GT for one person, head size 10 (threshold 5 px); ``correct`` joints exactly 5 px off."""
    gt = np.arange(32, dtype=np.float64).reshape(1, 16, 2) * 7.0 + 50.0
    offset = np.tile([[6.0, 0.0]], (16, 1))  # 6 px: wrong
    offset[list(correct)] = (3.0, 4.0)  # 5 px: right (<= is inclusive)
    preds = gt - 1.0 + offset[None]
    return preds, gt, np.ones((1, 16)), np.array([10.0])


@pytest.mark.parametrize("correct", [(), (0, 3, 9), (6, 7), tuple(range(16))])
def test_pckh_counts_joints_within_threshold(correct):
    preds, gt, vis, size = _one_person(correct)
    pck, count = mpii.pckh_per_joint(preds, gt, vis, size)
    assert count.tolist() == [1] * 16
    assert np.flatnonzero(pck == 100.0).tolist() == sorted(correct)
    assert int((pck == 100.0).sum()) == len(correct)
    kept = len(set(correct) - {J["pelvis"], J["thorax"]})
    assert mpii.pckh(preds, gt, vis, size)["Mean"] == pytest.approx(100.0 * kept / 14)


def test_pckh_table_layout_groups_and_weights():
    # Two persons; person 1's right shoulder and left ankle are wrong, person 0's right
    # ankle is not annotated.
    p0, gt0, _, _ = _one_person(range(16))
    p1, gt1, _, _ = _one_person(set(range(16)) - {J["right_shoulder"], J["left_ankle"]})
    preds, gt = np.concatenate([p0, p1]), np.concatenate([gt0, gt1])
    vis = np.ones((2, 16))
    vis[0, J["right_ankle"]] = 0
    preds[0, J["right_ankle"]] += 1000.0  # ignored: not annotated
    result = mpii.pckh(preds, gt, vis, [10.0, 10.0])
    assert result["Shoulder"] == pytest.approx((100 + 50) / 2)
    assert result["Ankle"] == pytest.approx((50 + 100) / 2)  # left 1/2, right 1/1
    for name in ("Head", "Elbow", "Wrist", "Hip", "Knee"):
        assert result[name] == 100.0
    # Mean: 14 joints x 2 persons - 1 unannotated = 27 counted, 2 wrong.
    assert result["Mean"] == pytest.approx(100.0 * 25 / 27)
    table = mpii.format_table(result, name="prtr").splitlines()
    assert table[0] == ("| Model | Head | Shoulder | Elbow | Wrist | Hip | Knee | Ankle | Mean "
                        "| Mean@0.1 |")
    assert table[2].startswith("| prtr | 100.0 | 75.0 | 100.0 |")


def test_head_sizes():
    boxes = np.array([[[10.0, 20.0], [40.0, 60.0]]])  # diagonal 50
    np.testing.assert_allclose(mpii.head_sizes_from_boxes(boxes), [30.0])
    joints = np.zeros((2, 16, 2))
    joints[:, J["upper_neck"]] = (100.0, 100.0)
    joints[:, J["head_top"]] = (106.0, 92.0)  # 10 px above the neck
    np.testing.assert_allclose(mpii.head_size_from_annotation(joints), [10.0, 10.0])
    np.testing.assert_allclose(mpii.head_size_from_annotation(joints, factor=0.5), [5.0, 5.0])
    vis = np.ones((2, 16))
    vis[1, J["head_top"]] = 0
    with pytest.raises(ValueError, match=r"persons \[1\]"):
        mpii.head_size_from_annotation(joints, vis)
    with pytest.raises(ValueError, match="head_sizes"):
        mpii.pckh(joints, joints + 1, vis, [10.0, 0.0])
    with pytest.raises(ValueError, match="preds must be"):
        mpii.pckh(joints[:, :15], joints, vis, [10.0, 10.0])


MAT_NAMES = ["rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head",
             "rwri", "relb", "rsho", "lsho", "lelb", "lwri"]


def _write_gt_mat(path, gt, vis, boxes, names=MAT_NAMES):
    from scipy.io import savemat

    savemat(str(path), {
        "dataset_joints": np.array(names, dtype=object).reshape(1, -1),  # a MATLAB cell
        "jnt_missing": (1 - vis).T,
        "pos_gt_src": gt.transpose(1, 2, 0),
        "headboxes_src": boxes.transpose(1, 2, 0),
    })


def test_gt_valid_mat(tmp_path):
    p0, gt0, _, _ = _one_person(range(16))
    p1, gt1, _, _ = _one_person([J["head_top"]])
    preds, gt = np.concatenate([p0, p1]), np.concatenate([gt0, gt1])
    vis = np.ones((2, 16))
    vis[1, J["left_wrist"]] = 0
    boxes = np.array([[[0.0, 0.0], [6.0, 8.0]]] * 2) * 5.0 / 3.0  # diagonal 50/3 -> size 10
    path = tmp_path / "gt_valid.mat"
    _write_gt_mat(path, gt, vis, boxes)

    loaded = mpii.load_gt_mat(path)
    np.testing.assert_allclose(loaded["gt_joints"], gt)
    np.testing.assert_allclose(loaded["joints_vis"], vis)
    np.testing.assert_allclose(loaded["headboxes"], boxes)
    np.testing.assert_allclose(loaded["head_sizes"], [10.0, 10.0])

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # official head boxes: no approximation warning
        result = mpii.evaluate_mpii(preds, None, gt_mat=path)
    assert result["Head"] == 100.0 and result["Shoulder"] == 50.0
    assert result["Wrist"] == pytest.approx((100 + 50) / 2)  # left: 1/1, right 1/2
    assert result["Mean"] == pytest.approx(100.0 * 15 / 27)

    _write_gt_mat(path, gt, vis, boxes, names=MAT_NAMES[::-1])
    with pytest.raises(ValueError, match="gt_valid.mat: dataset_joints"):
        mpii.load_gt_mat(path)
    from scipy.io import savemat
    savemat(str(path), {"pos_gt_src": gt.transpose(1, 2, 0)})
    with pytest.raises(ValueError, match="no field 'jnt_missing'"):
        mpii.load_gt_mat(path)
