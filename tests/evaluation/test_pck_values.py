"""PCK, AUC and EPE pinned to values worked out by hand (issue 27): the normaliser is
the LONGER box side on BOTH axes, accuracy is per joint then averaged over labelled
joints, the thresholds are strict, and AUC's thresholds start at 0."""
import numpy as np
import pytest

from prtr_tf.evaluation import pck


def test_box_normalizer_is_the_longer_side_on_both_axes():
    # Rules out: the shorter side, width only / height only, (w, h) per axis, x/y as size.
    boxes = [[7, 9, 100, 50], [3, 1, 20, 60]]
    np.testing.assert_array_equal(pck.box_normalizer(boxes), [[100, 100], [60, 60]])


def test_distances_divide_each_axis_by_its_own_normaliser():
    # dx=3 over 10, dy=4 over 20 -> sqrt(0.09 + 0.04). Rules out swapped axes
    # (sqrt(0.0225 + 0.16)), one normaliser for both, dividing after the norm.
    pred = np.array([[[13.0, 24.0], [0.0, 0.0]]])
    gt = np.array([[[10.0, 20.0], [5.0, 5.0]]])
    d = pck.distances(pred, gt, [[True, False]], [[10.0, 20.0]])
    assert d[0, 0] == pytest.approx(np.sqrt(0.13), rel=1e-12)
    assert d[0, 1] == -1.0  # unlabelled joint: -1, not its distance


def test_a_person_with_a_zero_normaliser_on_one_axis_counts_nowhere():
    # Rules out: checking only the x axis, only an all-zero normaliser, or every
    # person being dropped (person 1 keeps its distance 5/10).
    pred = np.zeros((2, 1, 2))
    gt = np.array([[[3.0, 4.0]], [[3.0, 4.0]]])
    d = pck.distances(pred, gt, np.ones((2, 1), bool), [[5.0, 0.0], [10.0, 10.0]])
    assert d[0, 0] == -1.0
    assert d[1, 0] == pytest.approx(0.5)


def test_pck_is_per_joint_then_the_mean_of_labelled_joints():
    # Box 100 x 50: the normaliser is 100 on both axes.
    # Joint 0: person 0 off by dy=15 (0.15 < 0.2: hit; with the height 50 as the
    #   y normaliser it would be 0.3, a miss), person 1 off by dx=25 (0.25: miss).
    # Joint 1: labelled only for person 0, exact (hit). Joint 2: never labelled.
    # Per joint: 0.5, 1.0, -1 -> mean 0.75 (the pooled fraction would be 2/3, a mean
    # including the -1 would be 1/6).
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[0, 0] = [0.0, 15.0]
    pred[1, 0] = [25.0, 0.0]
    pred[1, 1] = [90.0, 90.0]  # not labelled for person 1: ignored
    mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
    boxes = [[0, 0, 100, 50], [0, 0, 100, 50]]
    acc, mean = pck.pck(pred, gt, mask, pck.box_normalizer(boxes))
    np.testing.assert_allclose(acc, [0.5, 1.0, -1.0])
    assert mean == pytest.approx(0.75)
    scores = pck.distance_metrics(pred, gt, mask, boxes)
    # every key with its own value: AUC and EPE of the same inputs (not of other ones)
    assert set(scores) == {"PCK@0.2", "AUC", "EPE"}
    assert scores["PCK@0.2"] == pytest.approx(0.75)
    assert scores["AUC"] == pytest.approx(pck.auc(pred, gt, mask))
    assert scores["EPE"] == pytest.approx((15 + 25 + 0) / 3)
    assert 0.0 < scores["AUC"] < 0.95


def test_pck_threshold_is_strict_and_no_label_gives_zero():
    # Exactly 0.2 (20 px of 100) is not correct (<, not <=); no labelled joint: 0.0.
    gt = np.zeros((1, 1, 2))
    pred = np.array([[[20.0, 0.0]]])
    acc, mean = pck.pck(pred, gt, [[True]], [[100.0, 100.0]])
    assert acc[0] == 0.0 and mean == 0.0
    acc, mean = pck.pck(pred, gt, [[True]], [[100.0, 100.0]], thr=0.21)
    assert mean == 1.0
    assert pck.pck(pred, gt, [[False]], [[100.0, 100.0]])[1] == 0.0


def test_auc_thresholds_start_at_zero_with_a_30_pixel_normaliser():
    # Joint 0 off by 7 px (7/30 = 0.233): below the thresholds 0.25 .. 0.95, 15 of the
    # 20 -> 0.75. Joint 1 off by 1 px (0.033): below 0.05 .. 0.95, 19 of 20 -> 0.95.
    # AUC = mean over thresholds of the mean over joints = (0.75 + 0.95) / 2 = 0.85.
    # Rules out thresholds 1/20 .. 20/20 (0.8 + 1.0 -> 0.9), another normaliser, <=.
    gt = np.zeros((1, 2, 2))
    pred = np.array([[[7.0, 0.0], [0.0, 1.0]]])
    assert pck.auc(pred, gt, np.ones((1, 2), bool)) == pytest.approx(0.85)
    # a perfect model scores 0.95, not 1
    assert pck.auc(gt, gt, np.ones((1, 2), bool)) == pytest.approx(0.95)
    # an explicit normaliser of 7 px: the 7 px joint is at 1.0, never below -> 0 + 1.0
    # (1/7 = 0.143: below 0.15 .. 0.95, 17 of 20 = 0.85); mean (0 + 0.85) / 2
    assert pck.auc(pred, gt, np.ones((1, 2), bool), normalizer=7.0) == pytest.approx(0.425)


def test_epe_is_the_mean_pixel_error_of_labelled_joints():
    # (3, 4) -> 5 px, exact -> 0 px, the unlabelled one (100 px off) left out: 2.5.
    gt = np.zeros((1, 3, 2))
    pred = np.array([[[3.0, 4.0], [0.0, 0.0], [100.0, 0.0]]])
    assert pck.epe(pred, gt, [[True, True, False]]) == pytest.approx(2.5)
    assert pck.epe(pred, gt, [[False, False, False]]) == 0.0


def test_format_table_shows_percent_and_pixels():
    # Rules out fractions printed as they are, AUC and PCK swapped, EPE in percent,
    # another default model name, a broken markdown separator row.
    table = pck.format_table({"PCK@0.2": 0.8512, "AUC": 0.5, "EPE": 2.125})
    assert table == ("| Model | PCK@0.2 | AUC | EPE (px) |\n|---|---|---|---|\n"
                     "| PRTR | 85.1 | 50.0 | 2.12 |")
    assert pck.format_table({"PCK@0.2": 0.0, "AUC": 0.0, "EPE": 0.0},
                            name="M").splitlines()[-1] == "| M | 0.0 | 0.0 | 0.00 |"


def test_epe_of_a_single_joint_is_its_distance():
    # Rules out dividing by max(2, n) (or any count other than the labelled joints).
    assert pck.epe([[[6.0, 8.0]]], [[[0.0, 0.0]]], [[True]]) == pytest.approx(10.0)


def test_inputs_are_converted_to_float_before_subtracting():
    # uint8 pixel coordinates (as read from an image-sized array) and a 0/1 integer
    # mask: computed in the input dtype, 0 - 3 would wrap to 253, and an integer mask
    # would index rows instead of selecting joints. Person 1 has a zero normaliser.
    pred = np.array([[[0, 0], [9, 9]], [[0, 0], [0, 0]]], np.uint8)
    gt = np.array([[[3, 4], [9, 9]], [[1, 1], [1, 1]]], np.uint8)
    mask = np.array([[1, 0], [1, 1]], np.int64)
    norm = np.array([[10, 10], [0, 0]], np.uint8)
    d = pck.distances(pred, gt, mask, norm)
    np.testing.assert_allclose(d, [[0.5, -1.0], [-1.0, -1.0]])
    n = pck.box_normalizer(np.array([[0, 0, 3, 200]], np.uint8))
    assert n.dtype == np.float64
    np.testing.assert_array_equal(n, [[200.0, 200.0]])


def test_negative_normaliser_becomes_one_million_and_zero_divides_nothing():
    # mmpose: a negative normaliser is replaced by 1e6 (the distance nearly 0, not NaN
    # and not -1); a zero one drops the person without a division by zero (a
    # RuntimeWarning here is an error).
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = pck.distances([[[3.0, 4.0]], [[3.0, 4.0]]], np.zeros((2, 1, 2)),
                          [[True], [True]], [[-2.0, -2.0], [0.0, 0.0]])
    assert d[0, 0] == pytest.approx(5.0 / 1e6, rel=1e-12)
    assert d[1, 0] == -1.0
