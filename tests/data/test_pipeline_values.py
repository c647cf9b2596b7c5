"""The training box shift pinned statistically (issue 27): the centre moves by an
independent draw on EACH axis, bounded by shift_factor x that axis's box size (an
asymmetric box, 200 x 50 px), while scale, rotation and flip stay those of shift 0."""
import ml_collections
import numpy as np
import tensorflow as tf

from prtr_tf.models.keypoint.data import _Augmenter


def _augmenter(shift):
    data = ml_collections.ConfigDict(dict(scale_factor=0.3, shift_factor=shift,
                                          pixel_std=200.0, rotation_factor=40.0,
                                          rotation_prob=0.6, flip=True))
    return _Augmenter(data, ((0, 1),), 2)


def test_shift_is_drawn_per_axis_within_the_box_size():
    shifted, plain = _augmenter(0.1), _augmenter(0.0)
    center = tf.constant([100.0, 50.0])
    scale = tf.constant([1.0, 0.25])  # 200 x 50 px box: bounds 20 px in x, 5 px in y
    joints = tf.constant([[10.0, 20.0, 1.0], [30.0, 40.0, 1.0]])
    dx, dy = [], []
    for i in range(120):
        seed = tf.constant([i, 7], tf.int64)
        c1, s1, r1, f1, j1 = shifted(seed, center, scale, joints, 300)
        c0, s0, r0, f0, j0 = plain(seed, center, scale, joints, 300)
        np.testing.assert_array_equal(s1.numpy(), s0.numpy())
        assert float(r1) == float(r0) and bool(f1) == bool(f0)
        np.testing.assert_array_equal(j1.numpy(), j0.numpy())
        d = (c1 - c0).numpy()
        if bool(f0):  # a mirrored centre moves the other way in x
            d[0] = -d[0]
        dx.append(d[0])
        dy.append(d[1])
    dx, dy = np.array(dx), np.array(dy)
    assert np.all(np.abs(dx) <= 20.0 + 1e-3) and np.all(np.abs(dy) <= 5.0 + 1e-3)
    # the draws fill their ranges (U(-f, f) on each axis, not 0 / not the other axis's)
    assert np.abs(dx).max() > 15.0 and np.abs(dy).max() > 3.75
    assert dx.min() < 0 < dx.max() and dy.min() < 0 < dy.max()
    # two draws, not one: relative shifts differ between the axes
    assert np.mean(np.isclose(dx / 200.0, dy / 50.0, atol=1e-4)) < 0.1
    assert abs(np.corrcoef(dx, dy)[0, 1]) < 0.5
