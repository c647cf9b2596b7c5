"""float16 loss-scale bookkeeping pinned step by step (issue 27): halve and count on a
non-finite step, double after ``growth_steps`` finite steps in a row, the counter
reset, unscaling by the value the loss was scaled with; `apply_if_finite` on the path
without a merge call (the default strategy) and in a MirroredStrategy."""
import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.training import loss_scale as ls


def _state(s):
    return (float(s.scale.numpy()), int(s.good_steps.numpy()), int(s.skipped.numpy()))


def test_update_sequence():
    # growth_steps 3: two finite steps keep 8, the third doubles it and resets the
    # counter; a non-finite one halves, resets and counts. Rules out growing one step
    # early / late, not resetting, counting finite steps as skipped.
    s = ls.DynamicLossScale(initial_scale=8.0, growth_steps=3)
    seen = []
    for finite in (True, True, True, True, False, True, True, True, False, False):
        s.update(tf.constant(finite))
        seen.append(_state(s))
    assert seen == [(8.0, 1, 0), (8.0, 2, 0), (16.0, 0, 0), (16.0, 1, 0), (8.0, 0, 1),
                    (8.0, 1, 1), (8.0, 2, 1), (16.0, 0, 1), (8.0, 0, 2), (4.0, 0, 3)]
    assert int(s.epoch_skipped.numpy()) == 0  # the trainer counts the epoch's
    s1 = ls.DynamicLossScale(initial_scale=2.0, growth_steps=1)
    s1.update(tf.constant(True))
    assert _state(s1) == (4.0, 0, 0)


def test_defaults_and_checks():
    assert ls.DEFAULT_INITIAL_SCALE == 32768.0 and ls.DEFAULT_GROWTH_STEPS == 2000
    s = ls.DynamicLossScale()
    assert _state(s) == (32768.0, 0, 0) and s.growth_steps == 2000
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="loss_scale_initial"):
            ls.DynamicLossScale(initial_scale=bad)
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="loss_scale_growth_steps"):
            ls.DynamicLossScale(growth_steps=bad)


def test_scale_unscale_and_finiteness():
    s = ls.DynamicLossScale(initial_scale=1024.0)
    loss = s.scale_loss(tf.constant(0.5, tf.float16))
    assert loss.dtype == tf.float16 and float(loss.numpy()) == 512.0
    grads = s.unscale([tf.constant([1024.0, 2048.0]), tf.constant(512.0, tf.float16)])
    np.testing.assert_array_equal(grads[0].numpy(), [1.0, 2.0])
    assert grads[1].dtype == tf.float16 and float(grads[1].numpy()) == 0.5
    assert bool(ls.DynamicLossScale.all_finite([tf.ones(2), tf.zeros(3)]).numpy())
    assert not bool(ls.DynamicLossScale.all_finite(
        [tf.ones(2), tf.constant([0.0, np.nan])]).numpy())
    assert not bool(ls.DynamicLossScale.all_finite([tf.constant([np.inf])]).numpy())


def _apply_twice(strategy):
    with strategy.scope():
        v = tf.Variable(1.0)

    def apply_fn(grads):
        v.assign_add(grads[0])

    @tf.function
    def step(finite):
        def replica():
            ls.apply_if_finite(finite, apply_fn, [tf.constant(2.0)])
        strategy.run(replica)

    step(tf.constant(False))
    after_skip = float(v.numpy())
    step(tf.constant(True))
    return after_skip, float(v.numpy())


def test_apply_if_finite_default_strategy():
    # The default strategy takes the tf.cond path without a merge call.
    assert tf.__internal__.distribute.strategy_supports_no_merge_call()
    assert _apply_twice(tf.distribute.get_strategy()) == (1.0, 3.0)


def test_apply_if_finite_mirrored():
    assert _apply_twice(tf.distribute.MirroredStrategy(["/cpu:0"])) == (1.0, 3.0)
