"""The numbers of a metrics.csv row and of the float16 bookkeeping pinned on the
trainer's own methods with stand-in objects (issue 27; no model is built): the
epoch's time across a resume, means over the epoch's steps, float16 ``grad_norm``
over the APPLIED steps only, the global step counting skipped steps."""
import io
import types

import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.training import trainer as trainer_lib
from prtr_tf.training.loss_scale import DynamicLossScale

Trainer = trainer_lib.Trainer


def _fake(loss_scale=None, sums=(8.0, 12.0), keys=("loss", "grad_norm"), steps=4,
          seconds_before=100.0, iterations=7):
    optimizer = types.SimpleNamespace(learning_rates=lambda: (1e-5, 1e-4),
                                      iterations=tf.Variable(iterations, dtype=tf.int64))
    fake = types.SimpleNamespace(
        optimizer=optimizer, metric_keys=keys,
        epoch_sums=tf.Variable(np.asarray(sums, np.float64)), steps_per_epoch=steps,
        epoch_seconds=tf.Variable(seconds_before, dtype=tf.float64),
        skips=types.SimpleNamespace(reset=lambda: 3), loss_scale=loss_scale,
        chief=True, stream=io.StringIO())
    fake.global_step = lambda: Trainer.global_step(fake)
    fake.log = lambda message: Trainer.log(fake, message)
    return fake


def test_row_means_time_across_a_resume_and_learning_rates():
    # 4 steps: loss sum 8 -> 2.0, grad_norm sum 12 -> 3.0; 100 s before the resume
    # (checkpointed) + 20.5 s since -> 120.5 s. Rules out the time of the last segment
    # only, means over the steps of this process only, swapped learning rates.
    row = Trainer._epoch_row(_fake(), 9, 20.5)
    assert row == {"epoch": 10, "step": 7, "loss": 2.0, "grad_norm": 3.0, "lr": 1e-4,
                   "lr_backbone": 1e-5, "epoch_time_s": 120.5, "skipped_samples": 3}


def test_float16_grad_norm_is_the_mean_over_applied_steps():
    # 4 steps, 1 skipped (its grad_norm counted as 0): norms 2 + 4 + 6 = 12 over the 3
    # applied steps = 4.0 (not 12 / 4 = 3.0); the loss stays over all 4 steps.
    scale = DynamicLossScale(initial_scale=512.0)
    scale.epoch_skipped.assign(1)
    scale.skipped.assign(5)  # over the whole run: the global step counts them
    row = Trainer._epoch_row(_fake(loss_scale=scale), 0, 1.0)
    assert row["grad_norm"] == pytest.approx(4.0)
    assert row["loss"] == pytest.approx(2.0)
    assert row["skipped_steps"] == 1 and row["loss_scale"] == 512.0
    assert row["step"] == 7 + 5
    # every step skipped: no division by zero, the mean is 0 / 1
    scale.epoch_skipped.assign(4)
    row = Trainer._epoch_row(_fake(loss_scale=scale, sums=(8.0, 0.0)), 0, 1.0)
    assert row["grad_norm"] == 0.0


def test_a_skipped_step_is_logged_and_kept_out_of_the_mean():
    scale = DynamicLossScale(initial_scale=1024.0)
    fake = _fake(loss_scale=scale)
    metrics = {"loss": 1.0, "grad_norm": float("inf"), "skipped_steps": 1.0}
    scale.skipped.assign(2)
    info = Trainer._note_loss_scale(fake, metrics, 2, 4)
    assert info == " scale 1024"
    assert metrics["grad_norm"] == 0.0
    assert int(scale.epoch_skipped.numpy()) == 1
    assert fake.stream.getvalue() == (
        "float16: non-finite gradient at epoch 3 step 5: update skipped, loss scale "
        "lowered to 1024 (2 step(s) skipped so far)\n")
    applied = {"loss": 1.0, "grad_norm": 2.5, "skipped_steps": 0.0}
    Trainer._note_loss_scale(fake, applied, 0, 0)
    assert applied["grad_norm"] == 2.5 and int(scale.epoch_skipped.numpy()) == 1
    assert Trainer._note_loss_scale(_fake(), dict(applied), 0, 0) == ""


def test_save_adds_the_elapsed_seconds_and_numbers_by_global_step():
    saved = []
    fake = _fake(seconds_before=10.0, iterations=30)
    fake.manager = types.SimpleNamespace(save=lambda checkpoint_number: saved.append(
        checkpoint_number) or "ckpt")
    assert Trainer.save(fake, elapsed=2.5) == "ckpt"
    Trainer.save(fake, elapsed=1.0)
    assert float(fake.epoch_seconds.numpy()) == 13.5 and saved == [30, 30]


def test_summary_line_without_float16():
    row = {"epoch": 12, "loss": 2.0, "loss_ce": 0.25, "loss_bbox": 1.0,
           "epoch_time_s": 0.4, "skipped_samples": 0, "PCKh": 0.5}
    assert trainer_lib._summary(row) == (
        "epoch 12  loss 2.0000  ce 0.2500  bbox 1.0000  0s  skipped 0  PCKh 0.5000")


def test_summary_line():
    row = {"epoch": 3, "loss": 1.23456, "loss_ce": 0.5, "epoch_time_s": 61.6,
           "skipped_samples": 2, "skipped_steps": 1, "loss_scale": 16384.0, "AP": 0.25}
    assert trainer_lib._summary(row) == (
        "epoch 3  loss 1.2346  ce 0.5000  62s  skipped 2  float16: 1 step(s) skipped on "
        "overflow, loss scale 16384  AP 0.2500")
