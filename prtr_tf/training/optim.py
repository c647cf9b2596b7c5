"""AdamW with a separate backbone learning rate, global-norm clipping, MultiStepLR.

The official code (spec §7) uses one torch AdamW with two parameter groups
(backbone at ``lr_backbone``, the rest at ``lr``), weight decay 1e-4 on every
parameter, eps 1e-8, gradients clipped to a global L2 norm of 0.1 over *both*
groups, and the LR multiplied by 0.5 at each milestone epoch. Keras has no
parameter groups, so `TwoGroupAdamW` holds two ``keras.optimizers.AdamW`` and
clips over the union of gradients before either applies its update.
"""
import keras
import tensorflow as tf

from prtr_tf.training.loss_scale import apply_if_finite


def multistep_schedule(base_lr, milestones, factor, steps_per_epoch):
    """torch MultiStepLR stepped once per epoch, as a function of the step counter."""
    boundaries = [int(m) * int(steps_per_epoch) for m in sorted(milestones)]
    values = [base_lr * factor ** i for i in range(len(boundaries) + 1)]
    if not boundaries:
        return base_lr
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """``schedule`` (a schedule or a constant) scaled by min(1, (step + 1) / steps): a
    linear warm-up over the first ``steps`` optimiser steps (`warmup_schedule`)."""

    def __init__(self, schedule, steps):
        self.schedule, self.steps = schedule, int(steps)

    def __call__(self, step):
        base = self.schedule(step) if callable(self.schedule) else self.schedule
        ramp = tf.minimum(1.0, (tf.cast(step, tf.float32) + 1.0) / float(self.steps))
        return tf.cast(base, tf.float32) * ramp

    def get_config(self):
        return {"schedule": self.schedule, "steps": self.steps}


def warmup_schedule(schedule, warmup_steps):
    """``schedule`` with a linear warm-up over ``warmup_steps`` steps
    (``config.train.warmup_steps``; 0, the default: ``schedule`` unchanged)."""
    if not warmup_steps or int(warmup_steps) <= 0:
        return schedule
    return LinearWarmup(schedule, warmup_steps)


def backbone_lr_variables(model):
    """The variables trained at ``lr_backbone``: the backbone's, and those a model adds
    by a ``backbone_lr_variables()`` method (the deformable models' sampling offsets and
    reference points, as their official optimisers do)."""
    own = getattr(model, "backbone_lr_variables", None)
    return list(own()) if own is not None else list(model.backbone.trainable_variables)


def is_backbone_variable(model, variable):
    return any(variable is v for v in backbone_lr_variables(model))


class TwoGroupAdamW:
    """Two AdamW optimisers (backbone / rest) stepped together on one clipped gradient."""

    def __init__(self, model, train_config, steps_per_epoch):
        t = train_config

        def adamw(lr):
            return keras.optimizers.AdamW(
                learning_rate=warmup_schedule(
                    multistep_schedule(lr, t.lr_steps, t.lr_factor, steps_per_epoch),
                    t.get("warmup_steps", 0)),
                weight_decay=t.weight_decay, beta_1=0.9, beta_2=0.999, epsilon=t.adam_epsilon)

        self.backbone = adamw(t.lr_backbone)
        self.rest = adamw(t.lr)
        self.clip_norm = t.clip_norm
        backbone_ids = {id(v) for v in backbone_lr_variables(model)}
        self.variables = list(model.trainable_variables)
        self.is_backbone = [id(v) in backbone_ids for v in self.variables]
        # Create the moment slots now (inside the caller's strategy scope), not lazily in
        # the first tf.function step, which distribution strategies do not allow.
        for opt, flag in ((self.backbone, True), (self.rest, False)):
            opt.build([v for v, b in zip(self.variables, self.is_backbone) if b == flag])

    @property
    def iterations(self):
        return self.rest.iterations

    def learning_rates(self):
        def current(opt):
            lr = opt.learning_rate
            return float(lr(opt.iterations) if callable(lr) else lr)
        return current(self.backbone), current(self.rest)

    def apply(self, grads, num_replicas=1, loss_scale=None):
        """Clips ``grads`` (already summed over replicas) and applies both updates;
        returns the global norm before clipping.

        Keras optimisers all-reduce (sum) gradients themselves when called in a
        replica context; clipping must see the reduced gradient, so the caller
        reduces first, and the clipped gradient is divided by the number of
        replicas here so that Keras' own sum restores it.

        With ``loss_scale`` (a `prtr_tf.training.loss_scale.DynamicLossScale`,
        float16) ``grads`` are those of the scaled loss: they are unscaled before the
        norm and the clipping, and a step with a non-finite gradient applies nothing
        in either group. Returns ``(norm, finite)`` then (the unscaled norm).
        """
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.variables)]
        if loss_scale is not None:
            grads = loss_scale.unscale(grads)
            finite = loss_scale.all_finite(grads)
        if self.clip_norm and self.clip_norm > 0:
            grads, norm = tf.clip_by_global_norm(grads, self.clip_norm)
        else:
            norm = tf.linalg.global_norm(grads)
        if num_replicas > 1:
            grads = [g / num_replicas for g in grads]
        if loss_scale is None:
            self._apply_both(grads)
            return norm
        apply_if_finite(finite, self._apply_both, grads)
        loss_scale.update(finite)
        return norm, finite

    def _apply_both(self, grads):
        for opt, flag in ((self.backbone, True), (self.rest, False)):
            pairs = [(g, v) for g, v, b in zip(grads, self.variables, self.is_backbone)
                     if b == flag]
            if pairs:
                opt.apply_gradients(pairs)
