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


def test_sigma_mismatch_message_says_what_to_do():
    with pytest.raises(ValueError, match=r"^OKS sigmas have shape \(3,\), but poses have 2 "
                                         r"joints; pass sigmas= for non-COCO joint sets$"):
        nms.oks_iou(np.zeros((2, 3)), np.zeros((1, 2, 3)), 1.0, [1.0], [0.1, 0.2, 0.3])


def test_float32_sigmas_are_used_at_float64_precision():
    # A model file's metadata may hold float32 sigmas: the variance (2 sigma)^2 is
    # computed in float64 from their exact values (a float32 square would be off by
    # ~1e-8 relative). Rules out dropping the float64 conversion of the sigmas.
    s32 = np.array([0.1, 0.3], np.float32)
    var = (s32.astype(np.float64) * 2) ** 2
    g = _pose([(0, 0), (0, 0)])
    d = _pose([(2, 0), (0, 1)])[None]
    expected = (np.exp(-4 / var[0] / 20 / 2) + np.exp(-1 / var[1] / 20 / 2)) / 2
    assert nms.oks_iou(g, d, 10.0, [30.0], s32)[0] == pytest.approx(expected, rel=1e-13)
    assert np.float32((s32[0] * 2) ** 2) != var[0]  # the check above can tell them apart


def test_a_scalar_area_of_d():
    # a_d may be a plain number for one pose of d (reshaped to (1,), not kept 0-d).
    g = _pose([(0, 0), (0, 0)])
    d = _pose([(2, 0), (0, 1)])[None]
    expected = (np.exp(-2.5) + np.exp(-0.15625)) / 2
    out = nms.oks_iou(g, d, 10.0, 30.0, SIGMAS)
    assert out.shape == (1,) and out[0] == pytest.approx(expected, rel=1e-9)


def test_zero_areas_divide_by_machine_epsilon():
    # HRNet adds np.spacing(1) (2.22e-16) to the mean area. With both areas 0, an
    # offset dx gives e = dx^2 / 0.04 / 2.22e-16 / 2: dx = 4.2e-9 -> e = 0.9930 (eps
    # doubled: 0.4965; eps subtracted: e < 0, OKS > 1). Identical poses score 1.
    eps = 2.220446049250313e-16
    g = _pose([(0, 0), (0, 0)])
    d = _pose([(4.2e-9, 0), (0, 0)])[None]
    e = 4.2e-9 ** 2 / 0.04 / eps / 2
    assert e == pytest.approx(0.9930, abs=1e-4)
    out = nms.oks_iou(g, d, 0.0, [0.0], SIGMAS)
    assert out[0] == pytest.approx((np.exp(-e) + 1.0) / 2, rel=1e-9)
    far = nms.oks_iou(g, _pose([(1, 0), (0, 1)])[None], 0.0, [0.0], SIGMAS)
    assert far.tolist() == [0.0]


def test_in_vis_thre_averages_per_pose_of_d():
    # Two poses of d: one with both joints above 0.5 (OKS = mean of both terms), one
    # with joint 0 only (its term alone). Rules out counting or summing over all poses
    # at once, and multiplying by the count instead of dividing.
    g = _pose([(0, 0), (0, 0)])
    both = _pose([(2, 0), (0, 1)], scores=(0.9, 0.8))
    one = _pose([(2, 0), (0, 1)], scores=(0.9, 0.2))
    out = nms.oks_iou(g, np.stack([both, one]), 10.0, [30.0, 30.0], SIGMAS, in_vis_thre=0.5)
    np.testing.assert_allclose(out, [(np.exp(-2.5) + np.exp(-0.15625)) / 2, np.exp(-2.5)],
                               rtol=1e-9)


def test_oks_nms_default_threshold_and_in_vis_thre():
    # thresh defaults to 0.9 (pose 2, OKS 0.9694 with pose 1, goes); in_vis_thre is
    # passed on to oks_iou: pose 2's joint 1 scoring 0.1 leaves only joint 0 (e = 0.05:
    # OKS 0.9512), still above 0.9 but below 0.96, where without it 0.9694 is above.
    db = _db()
    assert nms.oks_nms(db, sigmas=SIGMAS) == [1, 0]
    db[2]["keypoints"][1, 2] = 0.1
    assert nms.oks_nms(db, 0.96, SIGMAS) == [1, 0]
    assert nms.oks_nms(db, 0.96, SIGMAS, in_vis_thre=0.5) == [1, 2, 0]


def test_oks_nms_keeps_a_pose_at_exactly_the_threshold():
    # Identical poses: OKS exactly 1.0; with thresh 1.0 "above the threshold" is false,
    # so both stay (rules out < for <=).
    pose = _pose([(5.0, 5.0), (6.0, 8.0)])
    db = [dict(keypoints=pose, score=0.9, area=10.0), dict(keypoints=pose.copy(), score=0.8,
                                                           area=10.0)]
    assert nms.oks_nms(db, 1.0, SIGMAS) == [0, 1]
    assert nms.oks_nms(db, 0.999, SIGMAS) == [0]


def test_float32_scores_and_areas_are_compared_and_added_in_float64():
    # A float32 model's outputs: oks_iou works on their exact values in float64.
    # float32(0.3) = 0.30000001192 is above in_vis_thre 0.3 (a float32 comparison
    # would round the threshold to the same float32 and say no); the area 10.3 plus
    # float32(30.1) summed in float64 (in float32 both would be rounded: ~1e-8 off).
    g = _pose([(0, 0), (0, 0)])
    d = np.array([[[2, 0, 0.3], [0, 1, 0.9]]], np.float32)
    both = (np.exp(-2.5) + np.exp(-0.15625)) / 2
    np.testing.assert_allclose(nms.oks_iou(g, d, 10.0, [30.0], SIGMAS, in_vis_thre=0.3),
                               [both], rtol=1e-12)
    a_d = np.array([30.1], np.float32)
    mean = (10.3 + float(a_d[0])) / 2
    expected = (np.exp(-4 / 0.04 / mean / 2) + np.exp(-1 / 0.16 / mean / 2)) / 2
    assert nms.oks_iou(g, d, 10.3, a_d, SIGMAS)[0] == pytest.approx(expected, rel=1e-13)
    in32 = float((np.float32(10.3) + a_d[0]) / np.float32(2))
    assert abs(in32 / mean - 1) > 1e-9  # the check above can tell them apart


def test_oks_iou_matrix_tf_matches_oks_iou_on_three_joints():
    # Three joints with unequal sigmas, (N, J, 3) poses (the score channel is not a
    # coordinate), float64 poses with float32 sigmas, unequal areas: every entry is
    # oks_iou's (in float64, from the float32 sigmas' exact values). Rules out summing
    # the squares over the joints instead of x, y, using the third channel, and
    # squaring the sigmas in float32.
    import tensorflow as tf
    s32 = np.array([0.1, 0.3, 0.7], np.float32)
    poses = np.array([[[0, 0, 0.9], [1, 2, 0.1], [3, 1, 0.5]],
                      [[2, 0, 0.2], [1, 3, 0.8], [0, 1, 0.7]],
                      [[0, 4, 0.6], [2, 2, 0.3], [3, 3, 0.4]]])
    areas = np.array([10.0, 30.0, 17.0])
    m = nms.oks_iou_matrix_tf(tf.constant(poses), tf.constant(areas), s32).numpy()
    assert m.dtype == np.float64 and m.shape == (3, 3)
    for i in range(3):
        np.testing.assert_allclose(m[i], nms.oks_iou(poses[i], poses, areas[i], areas, s32),
                                   rtol=1e-13)
    # e.g. poses 0 and 1 by hand: squared distances 4, 1, 9; mean area 20
    var = (s32.astype(np.float64) * 2) ** 2
    e = np.array([4, 1, 9]) / var / 20 / 2
    assert m[0, 1] == pytest.approx(np.exp(-e).mean(), rel=1e-13)


def test_oks_iou_matrix_tf_with_zero_areas_divides_by_machine_epsilon():
    # As oks_iou: area 0 + np.spacing(1); dx = 4.2e-9 gives e = 0.9930 on joint 0
    # (eps doubled: 0.4965; eps subtracted: negative e, OKS > 1 or inf).
    import tensorflow as tf
    eps = 2.220446049250313e-16
    poses = tf.constant([[[0.0, 0.0], [0.0, 0.0]], [[4.2e-9, 0.0], [0.0, 0.0]],
                         [[1.0, 0.0], [0.0, 1.0]]], tf.float64)
    m = nms.oks_iou_matrix_tf(poses, tf.zeros(3, tf.float64), SIGMAS).numpy()
    e = 4.2e-9 ** 2 / 0.04 / eps / 2
    assert m[0, 1] == pytest.approx((np.exp(-e) + 1.0) / 2, rel=1e-9)
    assert m[0, 2] == 0.0 and m[1, 1] == 1.0


def test_oks_nms_tf_defaults_and_its_sigma_message():
    # thresh 0.9 and COCO's sigmas by default: 17 joints, pose 1 a copy of pose 0 one
    # pixel off on the left hip (OKS (16 + 1.8e-5) / 17 = 0.9412 > 0.9: suppressed), pose 2
    # far away.
    import tensorflow as tf
    base = np.zeros((17, 3))
    near = base.copy()
    near[11, 0] = 1.0
    far = base + 50.0
    kpts = tf.constant(np.stack([base, near, far]))
    keep = nms.oks_nms_tf(kpts, tf.constant([0.9, 0.8, 0.7]), tf.constant([1.0] * 3))
    assert (16 + np.exp(-1 / (2 * 0.107) ** 2 / 1.0 / 2)) / 17 > 0.9
    assert keep.numpy().tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"^OKS sigmas have shape \(17,\), but poses have 2 "
                                         r"joints; pass sigmas= for non-COCO joint sets$"):
        nms.oks_nms_tf(tf.zeros((1, 2, 3)), tf.ones(1), tf.ones(1))


def test_oks_nms_tf_every_kept_pose_suppresses_and_exactly_the_threshold_stays():
    # Scores A > B > C: B is far from A, C is B moved by 0.2 px (OKS 0.9694 with B):
    # the second kept pose (B) suppresses C too (rules out looking only at every other
    # pose). Identical poses (OKS exactly 1.0) at thresh 1.0 both stay (<=, not <).
    import tensorflow as tf
    db = _db()  # 0: far (score 0.5), 1: base (0.9), 2: base + 0.2 px (0.7)
    kpts = np.stack([db[1]["keypoints"] + 300.0, db[1]["keypoints"], db[2]["keypoints"]])
    keep = nms.oks_nms_tf(tf.constant(kpts), tf.constant([0.95, 0.9, 0.7]),
                          tf.constant([10.0] * 3), 0.9, SIGMAS)
    assert keep.numpy().tolist() == [0, 1]
    assert nms.oks_nms([dict(keypoints=k, score=s, area=10.0) for k, s in
                        zip(kpts, (0.95, 0.9, 0.7))], 0.9, SIGMAS) == [0, 1]
    same = tf.constant(np.stack([db[1]["keypoints"]] * 2))
    keep = nms.oks_nms_tf(same, tf.constant([0.9, 0.8]), tf.constant([10.0, 10.0]), 1.0,
                          SIGMAS)
    assert keep.numpy().tolist() == [0, 1]
    keep = nms.oks_nms_tf(same, tf.constant([0.9, 0.8]), tf.constant([10.0, 10.0]), 0.999,
                          SIGMAS)
    assert keep.numpy().tolist() == [0]
