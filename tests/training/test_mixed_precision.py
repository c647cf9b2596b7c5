"""float16 training with a dynamic loss scale (prtr_tf/training/loss_scale.py): an
overflow skips the update and halves the scale, clean steps grow it back, the losses
follow float32's, the scale is checkpointed and resumes. (The end-to-end and detector kinds
share this step code path: `Trainer._step_fn`, `TwoGroupAdamW.apply`.)

In-process, tiny configs, strategy "auto" (MirroredStrategy over the one CPU, the
``merge_call`` path of `apply_if_finite`, as train.py runs). The global Keras dtype
policy is restored after each test."""
import csv

import numpy as np
import pytest
import tensorflow as tf

from tests.training.train_worker import tiny_synthetic_config


@pytest.fixture(autouse=True)
def _float32_policy_afterwards():
    yield
    import keras
    keras.mixed_precision.set_global_policy("float32")


def _trainer(tmp_path, name, precision, config=None, **train):
    from prtr_tf.training.trainer import Trainer
    config = config or tiny_synthetic_config(str(tmp_path / "data"), batch_size=4,
                                             steps_per_epoch=7)
    for k, v in train.items():
        config.train[k] = v
    return Trainer(config, str(tmp_path / name), strategy="auto", mixed_precision=precision,
                   stream=open(str(tmp_path / f"{name}.log"), "a"))


def _values(variables):
    return [np.array(v.numpy()) for v in variables]


def _optimizer_state(trainer):
    opt = trainer.optimizer
    return _values(opt.backbone.variables + opt.rest.variables)


def _amplify_gradients(trainer):
    """A test hook: the loss's gradient is multiplied by ``factor`` (1, or inf for an
    injected overflow); the loss itself is unchanged."""
    factor = tf.Variable(1.0, trainable=False)
    original = trainer.task.loss

    @tf.custom_gradient
    def amplify(x):
        return tf.identity(x), lambda dy: dy * factor

    def loss(model, batch):
        out = dict(original(model, batch))
        out["loss"] = amplify(out["loss"])
        return out

    trainer.task.loss = loss
    return factor


def test_float16_follows_float32_an_overflow_skips_the_update_clean_steps_regrow(tmp_path):
    """One float16 run (one trainer: its step traces once) against float32, then an
    injected overflow and the scale growing back.

    Tolerance of the losses: same initial weights (seeded), same batches, 4 steps.
    float16 rounds to 2^-11 = 4.9e-4 relative per operation (bfloat16's 2^-8 = 3.9e-3
    has rtol 5% in test_trainer.py); measured, the float16 losses differ from float32
    by at most 5.5e-4 relative (the loss terms accumulate in float32), so rtol 5e-3
    leaves ~9x room. The gradient norm reported must be the unscaled one: a missing
    unscale would make it 64x or more; the first step's norm, before the runs' weights
    differ, is within 1% (measured 0.95%); later steps measured up to 17% apart (the
    smallest float16 gradients underflow, a near-tied Hungarian match may flip), hence
    rtol 0.3 there. Scale 64 to start: at this initialisation the largest float16
    gradient is ~48 per unit of scale (measured), far below 65504 even at 256, so the
    clean steps are clean."""
    losses, norms = {}, {}
    for precision in ("float32", "float16"):
        trainer = _trainer(tmp_path, precision, precision, loss_scale_initial=64.0,
                           loss_scale_growth_steps=2)
        factor = _amplify_gradients(trainer)  # x1: exact, the same numbers
        it = iter(trainer.epoch_dataset(0))
        outs = [trainer.train_step(it) for _ in range(4)]
        losses[precision] = np.array([float(o["loss"]) for o in outs])
        norms[precision] = np.array([float(o["grad_norm"]) for o in outs])
    print("losses", losses, "grad norms", norms)
    np.testing.assert_allclose(losses["float16"], losses["float32"], rtol=5e-3)
    np.testing.assert_allclose(norms["float16"][0], norms["float32"][0], rtol=0.03)
    np.testing.assert_allclose(norms["float16"], norms["float32"], rtol=0.3)

    assert trainer.model.compute_dtype == "float16"
    assert {v.dtype for v in trainer.model.weights} == {"float32"}
    scale = trainer.loss_scale
    assert [float(o["skipped_steps"]) for o in outs] == [0.0] * 4
    # 4 clean steps, growth every 2: 64 -> 128 -> 256.
    assert float(scale.scale.numpy()) == 256.0 and int(scale.good_steps.numpy()) == 0
    # The trainable weights: BatchNorm moving statistics follow every forward pass in
    # training mode, skipped or not (as with torch's GradScaler).
    weights, state = _values(trainer.model.trainable_weights), _optimizer_state(trainer)
    lrs = trainer.optimizer.learning_rates()

    factor.assign(float("inf"))  # step 5 overflows
    out = trainer.train_step(it)
    assert float(out["skipped_steps"]) == 1.0
    assert np.isfinite(float(out["loss"]))  # the loss was fine, its gradient was not
    assert float(scale.scale.numpy()) == 128.0 and int(scale.good_steps.numpy()) == 0
    assert int(scale.skipped.numpy()) == 1
    for a, b in zip(weights, _values(trainer.model.trainable_weights)):
        np.testing.assert_array_equal(a, b)  # no update, no weight decay
    for a, b in zip(state, _optimizer_state(trainer)):
        np.testing.assert_array_equal(a, b)  # moments and both step counters unchanged
    assert trainer.optimizer.learning_rates() == lrs
    assert trainer.global_step() == 5  # data steps: the skipped one counts

    factor.assign(1.0)
    trainer.train_step(it)
    assert float(scale.scale.numpy()) == 128.0 and int(scale.good_steps.numpy()) == 1
    trainer.train_step(it)  # the second clean step in a row doubles it
    assert float(scale.scale.numpy()) == 256.0 and int(scale.good_steps.numpy()) == 0
    assert int(trainer.optimizer.backbone.iterations.numpy()) == 6
    assert int(trainer.optimizer.rest.iterations.numpy()) == 6
    moved = max(float(np.max(np.abs(a - b))) for a, b in
                zip(weights, _values(trainer.model.trainable_weights)) if a.size)
    assert moved > 1e-4  # the clean steps did update


def test_the_loss_scale_is_checkpointed_and_resumes(tmp_path):
    """The default start (2**15) overflows the tiny model's float16 gradients in the
    first steps (measured: the first 4 skipped), which the checkpoint must keep."""
    config = tiny_synthetic_config(str(tmp_path / "data"), batch_size=4, steps_per_epoch=2,
                                   epochs=1)
    first = _trainer(tmp_path, "run", "float16", config=config, loss_scale_growth_steps=2)
    first.fit(max_steps=1)
    saved = {k: v.numpy() for k, v in
             (("scale", first.loss_scale.scale), ("good", first.loss_scale.good_steps),
              ("skipped", first.loss_scale.skipped))}
    assert saved["scale"] < 2.0 ** 15  # it moved: an overflow halved it
    names = [n for n, _ in tf.train.list_variables(first.manager.latest_checkpoint)]
    assert any(n.startswith("loss_scale/scale") for n in names)

    second = _trainer(tmp_path, "run", "float16", config=config, loss_scale_growth_steps=2)
    assert float(second.loss_scale.scale.numpy()) == 2.0 ** 15  # before the restore
    assert second.restore()
    assert float(second.loss_scale.scale.numpy()) == saved["scale"]
    assert int(second.loss_scale.good_steps.numpy()) == saved["good"]
    assert int(second.loss_scale.skipped.numpy()) == saved["skipped"]
    second.fit()
    log = (tmp_path / "run.log").read_text()
    assert "resumed from" in log and "float16: non-finite gradient" in log
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2]  # data steps, skipped ones included
    skipped = int(second.loss_scale.skipped.numpy())
    assert sum(int(r["skipped_steps"]) for r in rows) == skipped >= saved["skipped"]
    assert int(second.optimizer.iterations.numpy()) == 2 - skipped
    assert float(rows[-1]["loss_scale"]) == float(second.loss_scale.scale.numpy())
    assert all(np.isfinite(float(r["grad_norm"])) for r in rows)

