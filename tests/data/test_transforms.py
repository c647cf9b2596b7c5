"""Crop geometry (spec §5.1, §5.2): box -> center/scale, affine matrices, warps.

Expected values are worked out by hand in the comments.
"""
import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.data.transforms import (affine_matrix_tf, affine_transform_points, box_to_center_scale, get_affine_transform, invert_affine, sanitize_box, transform_joints_tf, warp_affine_numpy, warp_affine_tf)


def test_box_to_center_scale_narrow_box_is_widened():
    # w = 30 < 0.75 * 80 = 60 -> w = 60; scale = (60, 80) / 200 * 1.25.
    c, s = box_to_center_scale([10, 20, 30, 80], 0.75)
    np.testing.assert_allclose(c, [25, 60])
    np.testing.assert_allclose(s, [0.375, 0.5], rtol=1e-6)
    assert c.dtype == s.dtype == np.float32


def test_box_to_center_scale_wide_box_is_heightened():
    # w = 100 > 0.75 * 40 -> h = 100 / 0.75 = 133.33; scale = (0.5, 0.6667) * 1.25.
    c, s = box_to_center_scale([0, 0, 100, 40], 0.75)
    np.testing.assert_allclose(c, [50, 20])
    np.testing.assert_allclose(s, [0.625, 0.8333333], rtol=1e-6)
    # MPII-like square crops: aspect ratio 1.
    _, s = box_to_center_scale([0, 0, 100, 40], 1.0)
    np.testing.assert_allclose(s, [0.625, 0.625], rtol=1e-6)
    # Already at the aspect ratio: unchanged.
    _, s = box_to_center_scale([0, 0, 75, 100], 0.75)
    np.testing.assert_allclose(s, [0.46875, 0.625], rtol=1e-6)


def test_sanitize_box():
    # x1 = 0, y1 = 10, x2 = min(639, 0 + 49) = 49, y2 = min(479, 10 + 999) = 479.
    assert sanitize_box([-5, 10, 50, 1000], 640, 480) == [0, 10, 49, 469]
    # w = 0 keeps a zero-width box (x2 = x1 + max(0, -1) = x1).
    assert sanitize_box([5, 5, 0, 10], 640, 480) == [5, 5, 0, 9]
    # Entirely right of the image: x2 = 639 < x1 = 700.
    assert sanitize_box([700, 5, 10, 10], 640, 480) is None


def test_affine_matrix_by_hand():
    # W = 100, H = 200, s_x = 1: k = 100 / 200 = 0.5; b = (50, 100) - 0.5 * (100, 50).
    m = get_affine_transform([100, 50], [1.0, 2.0], 0, (200, 100))
    np.testing.assert_allclose(m, [[0.5, 0, 0], [0, 0.5, 75]], atol=1e-5)
    # rot = 90: A = k [[0, 1], [-1, 0]] (R(-90)); b = (50, 100) - A c = (25, 150).
    m = get_affine_transform([100, 50], [1.0, 2.0], 90, (200, 100))
    np.testing.assert_allclose(m, [[0, 0.5, 25], [-0.5, 0, 150]], atol=1e-5)
    # So a point 10 px right of the centre lands 5 px above the crop centre.
    np.testing.assert_allclose(affine_transform_points([[110, 50]], m), [[50, 95]],
                               atol=1e-4)


def test_inverse_matrix_and_test_time_formula():
    c, s, size = np.array([321.5, 200.25]), np.array([1.3, 1.7333]), (384, 288)
    fwd = get_affine_transform(c, s, 0, size)
    inv = get_affine_transform(c, s, 0, size, inv=True)
    np.testing.assert_allclose(invert_affine(fwd), inv, atol=1e-4)
    q = np.array([[0.0, 0.0], [287.0, 383.0], [100.5, 17.25]])
    # Spec §5.2: p = c + (q - (W/2, H/2)) * 200 s_x / W.
    expected = c + (q - [144, 192]) * 200 * s[0] / 288
    np.testing.assert_allclose(affine_transform_points(q, inv), expected, atol=1e-3)
    np.testing.assert_allclose(affine_transform_points(affine_transform_points(q, inv), fwd),
                               q, atol=1e-3)


@pytest.mark.parametrize("rot", [0.0, 30.0, -90.0, 77.5])
@pytest.mark.parametrize("inv", [False, True])
def test_tf_matrix_equals_numpy(rot, inv):
    c, s = np.array([100.3, 80.7]), np.array([1.2, 1.6])
    ref = get_affine_transform(c, s, rot, (64, 48), inv=inv)
    got = affine_matrix_tf(tf.constant(c, tf.float32), tf.constant(s, tf.float32), rot,
                           (64, 48), inv=inv).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_half_pixel_shift_pixel_centre_convention():
    # Source p -> p - 0.5: output pixel q samples the source at q + 0.5 (cv2 convention:
    # integer indices are pixel centres). Row [0, 10, 20] -> [5, 15, 0.5 * 20 + 0.5 * 0].
    image = np.array([[[0.0], [10.0], [20.0]]])
    m = np.array([[1.0, 0, -0.5], [0, 1.0, 0]])
    np.testing.assert_allclose(warp_affine_numpy(image, m, (1, 3))[..., 0], [[5, 15, 10]])
    got = warp_affine_tf(tf.constant(image, tf.float32), m, (1, 3)).numpy()[..., 0]
    np.testing.assert_allclose(got, [[5, 15, 10]], atol=1e-3)


def test_bright_pixels_land_where_the_matrix_says():
    image = np.zeros((60, 80, 1), np.float32)
    image[20, 30] = 255.0  # (x, y) = (30, 20): the crop centre
    image[20, 31] = 100.0  # one pixel to its right
    # W = H = 16, s_x = 16 / 200: k = 1; the centre (30, 20) maps to (8, 8).
    s = np.array([0.08, 0.08])
    for rot, right_of_centre in ((0.0, (8, 9)), (90.0, (7, 8))):  # (row, col)
        m = get_affine_transform([30, 20], s, rot, (16, 16))
        crop = warp_affine_tf(tf.constant(image), m, (16, 16)).numpy()[..., 0]
        expected = np.zeros((16, 16))
        expected[8, 8] = 255.0
        expected[right_of_centre] = 100.0  # rot 90: right of the centre -> up
        np.testing.assert_allclose(crop, expected, atol=0.05)
        np.testing.assert_allclose(affine_transform_points([[31, 20]], m),
                                   [right_of_centre[::-1]], atol=1e-4)


@pytest.mark.parametrize("rot", [0.0, 33.0, 90.0, -140.0])
def test_tf_warp_equals_numpy_bilinear(rot):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (90, 120, 3)).astype(np.float32)
    # A crop reaching outside the image exercises the zero border.
    m = get_affine_transform([20.0, 45.0], [0.4, 0.4 * 4 / 3], rot, (40, 30))
    ref = warp_affine_numpy(image, m, (40, 30))
    got = warp_affine_tf(tf.constant(image), m, (40, 30)).numpy()
    np.testing.assert_allclose(got, ref, atol=0.01)
    assert (ref == 0).any()


def test_tf_warp_flip_equals_warp_of_mirrored_image():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (50, 70, 3)).astype(np.float32)
    m = get_affine_transform([40.0, 20.0], [0.3, 0.4], 25.0, (40, 30))
    ref = warp_affine_numpy(image[:, ::-1], m, (40, 30))
    got = warp_affine_tf(tf.constant(image), m, (40, 30), flip=tf.constant(True)).numpy()
    np.testing.assert_allclose(got, ref, atol=0.01)


def test_only_visible_joints_are_transformed():
    m = np.array([[2.0, 0, 1], [0, 2.0, -1]])
    joints = tf.constant([[1.0, 1.0, 1.0], [3.0, 4.0, 0.0]])
    np.testing.assert_allclose(transform_joints_tf(joints, m).numpy(),
                               [[3, 1, 1], [3, 4, 0]])
