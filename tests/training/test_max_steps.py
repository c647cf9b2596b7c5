"""``--max_steps`` ends a run as an epoch ends (issue 30): the weights go to
``last.weights.h5`` (atomically) also within an epoch, so eval, predict and export
take the workdir (they said "its first epoch has not finished"); a stop on an
epoch's last step runs that epoch's end (metrics.csv row, last weights); the next
run resumes at the next step. (Resuming after kills: tests/training/test_faults_*.py.)
"""
import io
import os
import warnings

import numpy as np
import pytest

from prtr_tf.checkpoints import weights
from prtr_tf.config import load_config
from prtr_tf.training.trainer import Trainer
from prtr_tf.training.workdir import read_csv_rows


def _config(data_dir):
    config = load_config("synthetic_tiny")
    config.data.root = data_dir
    config.data.synthetic = {"train": (4, 1), "val": (2, 2)}
    t = config.train
    t.batch_size, t.steps_per_epoch, t.epochs = 2, 3, 2
    t.eval_every_epochs, t.checkpoint_every_steps, t.log_every_steps = 0, 0, 100
    return config


def _assert_workdir_holds(workdir, model):
    """The workdir's weights file (as eval/predict/export resolve and load it) holds
    ``model``'s current weights: loaded into the model after zeroing it."""
    now = [w.numpy() for w in model.weights]
    for w in model.weights:
        w.assign(np.zeros(w.shape, w.dtype))
    weights.load_into(model, str(workdir))
    for w, value in zip(model.weights, now):
        np.testing.assert_array_equal(w.numpy(), value, err_msg=w.path)


def test_max_steps_writes_last_weights_within_an_epoch_and_at_its_end(tmp_path):
    """Rules out: no last.weights.h5 after a stop within an epoch (the workdir refused by
    eval/predict), a file that is not the stopped model's weights, a partial file left
    behind, an epoch end skipped when the stop falls on the epoch's last step, and a
    next run that does not continue at the step after the stop."""
    config = _config(str(tmp_path / "data"))
    workdir = tmp_path / "run"
    log = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(config, str(workdir), strategy="default", stream=log)
        assert trainer.fit(max_steps=2) == []  # 2 of the epoch's 3 steps: no epoch ended
    last = workdir / "last.weights.h5"
    assert last.is_file()
    assert not [n for n in os.listdir(workdir) if ".partial-" in n]
    assert weights.resolve(str(workdir)) == str(last)  # what eval/predict/export load
    _assert_workdir_holds(workdir, trainer.model)
    assert read_csv_rows(workdir / "metrics.csv") == []
    assert "stopped by max_steps at epoch 1 step 2/3" in log.getvalue()
    stamp = last.stat().st_mtime_ns

    # One more step: the epoch's last, so its end runs (row, weights) and the run stops.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = trainer.fit(max_steps=1)
    assert "resumed from" in log.getvalue() and "step 2/3" in log.getvalue()
    assert [row["epoch"] for row in history] == [1]
    assert [row["epoch"] for row in read_csv_rows(workdir / "metrics.csv")] == ["1"]
    assert trainer.global_step() == 3
    assert int(trainer.epoch.numpy()) == 1 and int(trainer.step_in_epoch.numpy()) == 0
    assert last.stat().st_mtime_ns != stamp  # rewritten at the epoch's end
    _assert_workdir_holds(workdir, trainer.model)


def test_a_run_writes_its_config_and_model_files_and_refuses_another_config(tmp_path):
    """Issue 30/26: a workdir records its config (config.json) and writes last.keras
    (+ last.md) beside last.weights.h5; the model file holds the run's weights and
    loads without a config; resuming with a config that computes otherwise is refused
    naming the field, before anything is written."""
    import prtr_tf
    from prtr_tf.checkpoints import artifact

    config = _config(str(tmp_path / "data"))
    workdir = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(config, str(workdir), strategy="default", stream=io.StringIO())
        trainer.fit(max_steps=1)
    assert (workdir / "config.json").is_file() and (workdir / "last.md").is_file()
    loaded = prtr_tf.load(str(workdir / "last.keras"))  # (folded: compare unfolded)
    raw = artifact.load(str(workdir / "last.keras"), fold=False)[0]
    for w, v in zip(trainer.model.weights, raw.weights):
        np.testing.assert_array_equal(w.numpy(), v.numpy(), err_msg=w.path)
    assert loaded.prtr_config.model == config.model
    assert weights.load_model(None, str(workdir))[1].model == config.model
    other = _config(str(tmp_path / "data"))
    other.model.num_queries = 30
    stamp = (workdir / "last.weights.h5").stat().st_mtime_ns
    with warnings.catch_warnings(), pytest.raises(ValueError) as e:
        warnings.simplefilter("ignore")
        Trainer(other, str(workdir), strategy="default", stream=io.StringIO()).fit(max_steps=1)
    assert "model.num_queries=30 (recorded 20)" in str(e.value)
    assert "new --workdir" in str(e.value)
    assert (workdir / "last.weights.h5").stat().st_mtime_ns == stamp
