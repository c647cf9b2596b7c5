"""Dynamic loss scaling for float16 training: one scale for both optimiser groups.

float16 keeps 5 exponent bits: gradients below ~6e-8 flush to zero and values above
65504 overflow. The loss is multiplied by a large scale before the gradient, the
gradient divided by it afterwards. The rules are those of Keras 3's
``keras.optimizers.LossScaleOptimizer`` (initial scale 2**15; a step with a
non-finite gradient is skipped and halves the scale; after ``growth_steps``
consecutive finite steps the scale doubles), but applied to the union of the
gradients of `TwoGroupAdamW`'s two AdamW optimisers: one scale, one finiteness
decision, both groups skip together. ``LossScaleOptimizer`` wraps a single
optimiser and unscales inside its ``apply``, after which the global-norm clipping
over both groups could no longer see the unscaled gradient.

In the training step (`prtr_tf.training.trainer.Trainer._step_fn`): ``scale_loss``
inside the tape, the gradients all-reduced over replicas, ``unscale`` them, clip,
and `apply_if_finite` the update; `update` then adjusts the scale. A skipped step
changes no model variable and no optimiser variable (moments, weight decay, step
counters, so the LR schedule counts applied updates), and counts in ``skipped``.
All of it (scale, finite-step counter, skipped count) is checkpointed with the
trainer.
"""
import tensorflow as tf

DEFAULT_INITIAL_SCALE = 2.0 ** 15  # as keras.optimizers.LossScaleOptimizer
DEFAULT_GROWTH_STEPS = 2000


class DynamicLossScale(tf.Module):
    """The scale, the count of finite steps since it last changed, and the number of
    skipped steps, as variables (create it inside the strategy's scope)."""

    def __init__(self, initial_scale=DEFAULT_INITIAL_SCALE,
                 growth_steps=DEFAULT_GROWTH_STEPS, name="loss_scale"):
        super().__init__(name=name)
        if not float(initial_scale) > 0 or float(initial_scale) == float("inf"):
            raise ValueError(f"config.train.loss_scale_initial={initial_scale}: expected a "
                             "finite number > 0 (the default is 2**15 = 32768)")
        if int(growth_steps) < 1 or int(growth_steps) != growth_steps:
            raise ValueError(f"config.train.loss_scale_growth_steps={growth_steps}: expected "
                             "a whole number >= 1 (the default is 2000)")
        self.growth_steps = int(growth_steps)
        # ONLY_FIRST_REPLICA: every replica computes the same new values (the gradients
        # are all-reduced before the finiteness check), as Keras' own step counters.
        kw = dict(trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.scale = tf.Variable(float(initial_scale), dtype=tf.float32, name="scale", **kw)
        self.good_steps = tf.Variable(0, dtype=tf.int64, name="good_steps", **kw)
        self.skipped = tf.Variable(0, dtype=tf.int64, name="skipped", **kw)
        # Of the current epoch (the trainer's metrics.csv row), kept here so that a
        # float32 checkpoint's epoch sums still fit a float16 run.
        self.epoch_skipped = tf.Variable(0, dtype=tf.int64, name="epoch_skipped", **kw)

    def scale_loss(self, loss):
        return loss * tf.cast(self.scale, loss.dtype)

    def unscale(self, grads):
        scale = tf.identity(self.scale)  # the value the loss was scaled with
        return [g / tf.cast(scale, g.dtype) for g in grads]

    @staticmethod
    def all_finite(grads):
        return tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in grads]))

    def update(self, finite):
        """After a step: halve the scale on a non-finite gradient (and count the skip),
        double it after ``growth_steps`` finite steps in a row. Branch-free: the new
        values are computed alike on every replica."""
        grow = tf.logical_and(finite, tf.equal(self.good_steps, self.growth_steps - 1))
        scale = tf.identity(self.scale)
        new_scale = tf.where(finite, tf.where(grow, scale * 2.0, scale), scale * 0.5)
        new_good = tf.where(tf.logical_and(finite, tf.logical_not(grow)),
                            self.good_steps + 1, tf.zeros_like(self.good_steps))
        self.scale.assign(new_scale)
        self.good_steps.assign(new_good)
        self.skipped.assign_add(1 - tf.cast(finite, tf.int64))


def apply_if_finite(finite, apply_fn, grads):
    """Runs ``apply_fn(grads)`` (optimiser updates) only when ``finite``, from a replica
    context. Keras optimisers under MirroredStrategy update through ``merge_call``,
    which a ``tf.cond`` in the replica context may not contain; as in
    ``LossScaleOptimizer``, the condition is then taken in the cross-replica context
    and the update re-entered for each replica (``finite`` is the same on every
    replica: the gradients were all-reduced)."""
    if tf.__internal__.distribute.strategy_supports_no_merge_call():
        tf.cond(finite, lambda: _nothing(apply_fn(grads)), _nothing)
        return

    def cross_replica(distribution, finite, grads):
        finite = distribution.experimental_local_results(finite)[0]

        def apply_each():
            distribution.extended.call_for_each_replica(apply_fn, args=(grads,))

        tf.cond(finite, apply_each, _nothing)

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(finite, grads))


def _nothing(*_):
    return None
