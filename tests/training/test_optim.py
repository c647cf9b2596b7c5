"""AdamW with two learning rates, joint global-norm clipping and the MultiStepLR schedule."""
import ml_collections
import numpy as np
import tensorflow as tf

from prtr_tf.config import load_config
from prtr_tf.models.keypoint.model import build_model
from prtr_tf.training.optim import TwoGroupAdamW, multistep_schedule


def test_multistep_schedule_halves_at_milestone_epochs():
    sched = multistep_schedule(1e-4, (120, 140), 0.5, steps_per_epoch=10)
    assert np.isclose(float(sched(0)), 1e-4)
    assert np.isclose(float(sched(1199)), 1e-4)
    assert np.isclose(float(sched(1201)), 5e-5)
    assert np.isclose(float(sched(1401)), 2.5e-5)


def _torch_adamw(p, g, lr, wd=1e-4, eps=1e-8, b1=0.9, b2=0.999):
    """One step of torch.optim.AdamW from zero moments (t = 1)."""
    p = p * (1 - lr * wd)
    m, v = (1 - b1) * g, (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1), v / (1 - b2)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps)


def test_one_step_matches_torch_adamw_with_joint_clipping():
    config = load_config("tiny")
    model = build_model(config.model)
    t = ml_collections.ConfigDict(dict(lr=1e-3, lr_backbone=1e-5, lr_steps=(10,), lr_factor=0.5,
                                       weight_decay=1e-4, adam_epsilon=1e-8, clip_norm=0.1))
    opt = TwoGroupAdamW(model, t, steps_per_epoch=5)
    rng = np.random.default_rng(0)
    # |g| >= 1 so that epsilon stays negligible after clipping (see below).
    grads = [tf.constant(np.sign(n) * (1 + np.abs(n)))
             for n in (rng.normal(size=v.shape).astype(np.float32) for v in opt.variables)]
    before = [v.numpy().copy() for v in opt.variables]
    norm = float(opt.apply(grads))
    flat = np.concatenate([g.numpy().ravel() for g in grads])
    assert np.isclose(norm, np.linalg.norm(flat), rtol=1e-5)
    factor = 0.1 / np.linalg.norm(flat)  # clipped over BOTH groups together
    checked = {True: 0, False: 0}
    for v, g, p0, backbone in zip(opt.variables, grads, before, opt.is_backbone):
        lr = 1e-5 if backbone else 1e-3
        expected = _torch_adamw(p0, g.numpy() * factor, lr)
        # Keras adds epsilon to sqrt(v) before bias correction (1e-8 vs torch's after):
        # at t = 1 that is an effective epsilon of 3e-7, invisible at these gradient sizes.
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-4, atol=1e-2 * lr)
        assert np.abs(v.numpy() - p0).max() > 0.5 * lr  # it moved by about one lr step
        checked[backbone] += 1
    assert checked[True] > 0 and checked[False] > 0
    assert int(opt.backbone.iterations.numpy()) == int(opt.rest.iterations.numpy()) == 1


def test_first_moments_see_the_jointly_clipped_gradient():
    """One AdamW step from zero moments moves weights by about lr * sign(g), blind to any
    rescaling of g: the first moments ((1 - beta_1) * clipped g) show that both groups
    were clipped by ONE global norm over all gradients (clipping per group would scale
    the backbone's and the rest's gradients by different factors)."""
    config = load_config("tiny")
    model = build_model(config.model)
    t = ml_collections.ConfigDict(dict(lr=1e-3, lr_backbone=1e-5, lr_steps=(10,), lr_factor=0.5,
                                       weight_decay=1e-4, adam_epsilon=1e-8, clip_norm=0.1))
    opt = TwoGroupAdamW(model, t, steps_per_epoch=5)
    rng = np.random.default_rng(1)
    # The backbone's gradients 10x larger than the rest's: per-group clipping would differ.
    grads = [tf.constant(rng.normal(size=v.shape).astype(np.float32) * (10.0 if b else 1.0))
             for v, b in zip(opt.variables, opt.is_backbone)]
    opt.apply(grads)
    factor = 0.1 / np.linalg.norm(np.concatenate([g.numpy().ravel() for g in grads]))
    for v, g, backbone in zip(opt.variables, grads, opt.is_backbone):
        group = opt.backbone if backbone else opt.rest
        m = group._momentums[group._get_variable_index(v)]
        np.testing.assert_allclose(m.numpy(), 0.1 * g.numpy() * factor, rtol=1e-4,
                                   atol=1e-9)
