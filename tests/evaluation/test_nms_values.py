"""OKS and OKS-NMS pinned to hand-computed values with UNEQUAL sigmas and unequal
areas (issue 27), so that swapped sigmas, undoubled sigmas, a sum of areas instead of
their mean, or the wrong pose's joint scores give other numbers."""
import numpy as np
import pytest

from prtr_tf.evaluation import nms

SIGMAS = np.array([0.1, 0.2])  # variances (2 sigma)^2 = 0.04, 0.16


def _pose(xy, scores=(1.0, 1.0)):
    return np.array([[x, y, s] for (x, y), s in zip(xy, scores)])


def test_oks_iou_by_hand():
    # g at the origin (both joints); d off by (2, 0) and (0, 1): squared distances 4, 1.
    # Areas 10 and 30 -> mean 20; e = d^2 / var / 20 / 2 = 4/0.04/40 = 2.5 and
    # 1/0.16/40 = 0.15625. (Swapped sigmas: 0.625, 0.625; sigma not doubled: 10, 0.625.)
    g = _pose([(0, 0), (0, 0)])
    d = _pose([(2, 0), (0, 1)])[None]
    expected = (np.exp(-2.5) + np.exp(-0.15625)) / 2
    out = nms.oks_iou(g, d, 10.0, [30.0], SIGMAS)
    assert out.shape == (1,)
    assert out[0] == pytest.approx(expected, rel=1e-9)
    # flat (3J,) inputs are the same poses
    assert nms.oks_iou(g.ravel(), d.reshape(1, -1), 10.0, np.array([30.0]),
                       SIGMAS)[0] == pytest.approx(expected, rel=1e-9)


def test_in_vis_thre_counts_the_joints_of_d_above_it():
    # d's scores 0.9, 0.1 (g's are the other way round): above 0.5 only d's joint 0
    # counts -> exp(-2.5). Using g's scores would give exp(-0.15625). A pose of d with
    # no joint above the threshold gets 0.
    g = _pose([(0, 0), (0, 0)], scores=(0.1, 0.9))
    d = np.stack([_pose([(2, 0), (0, 1)], scores=(0.9, 0.1)),
                  _pose([(0, 0), (0, 0)], scores=(0.5, 0.2))])
    out = nms.oks_iou(g, d, 10.0, [30.0, 30.0], SIGMAS, in_vis_thre=0.5)
    np.testing.assert_allclose(out, [np.exp(-2.5), 0.0], rtol=1e-9)


def test_default_sigmas_are_cocos_and_must_fit():
    g = np.zeros((17, 3))
    d = np.zeros((1, 17, 3))
    d[0, 11, 0] = 1.0  # left hip off by 1 px, sigma .107
    expected = (16 + np.exp(-1 / (2 * 0.107) ** 2 / 1.0 / 2)) / 17
    assert nms.oks_iou(g, d, 1.0, [1.0])[0] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match=r"shape \(17,\), but poses have 2 joints"):
        nms.oks_iou(np.zeros((2, 3)), np.zeros((1, 2, 3)), 1.0, [1.0])


def _db():
    # pose 1 (best) and pose 2 differ by 0.2 px on x for joint 0 and y for joint 1, areas
    # 10: e = 0.04/0.04/10/2 = 0.05 and 0.04/0.16/20 = 0.0125 -> OKS 0.9694; pose 0 is
    # far away (OKS ~ 0).
    base = [(5.0, 5.0), (6.0, 8.0)]
    return [dict(keypoints=_pose([(100.0, 100.0), (101.0, 102.0)]), score=0.5, area=10.0),
            dict(keypoints=_pose(base), score=0.9, area=10.0),
            dict(keypoints=_pose([(5.2, 5.0), (6.0, 8.2)]), score=0.7, area=10.0)]


def test_oks_nms_suppresses_above_the_threshold_only():
    oks12 = (np.exp(-0.05) + np.exp(-0.0125)) / 2  # 0.9694
    db = _db()
    assert nms.oks_iou(db[1]["keypoints"], db[2]["keypoints"][None], 10.0, [10.0],
                       SIGMAS)[0] == pytest.approx(oks12, rel=1e-9)
    assert nms.oks_nms(db, 0.9, SIGMAS) == [1, 0]
    assert nms.oks_nms(db, 0.98, SIGMAS) == [1, 2, 0]
    assert nms.oks_nms(db, oks12 + 1e-12, SIGMAS) == [1, 2, 0]  # <= thresh is kept
    assert nms.oks_nms([], 0.9, SIGMAS) == []


def test_oks_nms_tf_agrees_and_matrix_by_hand():
    import tensorflow as tf
    db = _db()
    kpts = np.stack([p["keypoints"] for p in db])
    scores = np.array([p["score"] for p in db])
    areas = np.array([p["area"] for p in db])
    keep = nms.oks_nms_tf(tf.constant(kpts), tf.constant(scores), tf.constant(areas), 0.9,
                          SIGMAS)
    assert keep.dtype == tf.int32
    assert keep.numpy().tolist() == [1, 0]
    keep = nms.oks_nms_tf(tf.constant(kpts), tf.constant(scores), tf.constant(areas), 0.98,
                          SIGMAS)
    assert keep.numpy().tolist() == [1, 2, 0]
    m = nms.oks_iou_matrix_tf(tf.constant(kpts[:, :, :2]), tf.constant(areas), SIGMAS)
    oks12 = (np.exp(-0.05) + np.exp(-0.0125)) / 2
    assert m.numpy()[1, 2] == pytest.approx(oks12, rel=1e-9)
    assert m.numpy()[2, 1] == pytest.approx(oks12, rel=1e-9)
    assert m.numpy()[0, 0] == pytest.approx(1.0)
    # unequal areas: the mean (10 + 30) / 2, as oks_iou
    m = nms.oks_iou_matrix_tf(tf.constant([[[0.0, 0.0], [0.0, 0.0]], [[2.0, 0.0], [0.0, 1.0]]]),
                              tf.constant([10.0, 30.0], tf.float32), SIGMAS)
    assert m.numpy()[0, 1] == pytest.approx((np.exp(-2.5) + np.exp(-0.15625)) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="pass sigmas="):
        nms.oks_nms_tf(tf.zeros((1, 2, 3)), tf.ones(1), tf.ones(1))
    empty = nms.oks_nms_tf(tf.zeros((0, 2, 3)), tf.zeros(0), tf.zeros(0), sigmas=SIGMAS)
    assert empty.numpy().tolist() == []
