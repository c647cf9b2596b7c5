"""The training workdir: one run at a time, metrics.csv with one header and one row per
epoch, a checkpoint with every model variable. (Resuming, also at the last step of an
epoch, which used to crash: tests/training/test_faults_*.py.)"""
import csv
import json
import os
import subprocess
import sys

import pytest

from prtr_tf.training.workdir import WorkdirBusyError, WorkdirLock, upsert_csv_row


def test_a_second_run_into_a_busy_workdir_fails_naming_the_lock_and_pid(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from prtr_tf.training.workdir import WorkdirLock\n"
         f"with WorkdirLock({str(tmp_path)!r}):\n"
         "    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WorkdirBusyError) as e:
            WorkdirLock(str(tmp_path)).acquire()
        assert str(tmp_path / ".lock") in str(e.value)
        assert f"PID {holder.pid}" in str(e.value)
    finally:
        holder.kill()
        holder.wait()
    # The holder was killed (-9): its lock is stale and is taken over.
    assert (tmp_path / ".lock").exists()
    with WorkdirLock(str(tmp_path)) as lock:
        assert lock.note and str(holder.pid) in lock.note
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


def test_metrics_csv_keeps_one_header_and_one_row_per_epoch(tmp_path):
    path = tmp_path / "metrics.csv"
    upsert_csv_row(path, {"epoch": 1, "loss": 2.0})
    upsert_csv_row(path, {"epoch": 2, "loss": 1.5, "AP": 0.25})  # an evaluation epoch
    upsert_csv_row(path, {"epoch": 3, "loss": 1.0})
    upsert_csv_row(path, {"epoch": 2, "loss": 1.4, "AP": 0.3})  # epoch 2 written again
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert all(None not in r for r in rows)  # no extra cells beyond the header
    assert rows[0]["AP"] == "" and rows[1]["AP"] == "0.3" and rows[1]["loss"] == "1.4"
    assert path.read_text().count("epoch") == 1


def test_a_checkpoint_holds_every_model_variable(tmp_path):
    """BatchNorm moving statistics (non-trainable, in layers kept in lists) were missing
    from the checkpoint: a resumed run restarted them from their initial values (found
    by the fault-injection test)."""
    import numpy as np
    from prtr_tf.config import load_config
    from prtr_tf.training.trainer import Trainer

    config = load_config("synthetic_tiny")
    config.data.root = str(tmp_path / "data")
    config.data.synthetic = {"train": (4, 1), "val": (2, 2)}
    config.train.batch_size = 2
    first = Trainer(config, str(tmp_path / "run"))
    non_trainable = [v for v in first.model.weights if not v.trainable]
    assert any("moving_mean" in v.path for v in non_trainable)
    rng = np.random.default_rng(0)
    for v in first.model.weights:
        v.assign(rng.normal(size=v.shape).astype(v.dtype))
    first.save()
    second = Trainer(config, str(tmp_path / "run"))
    assert second.restore()
    for a, b in zip(first.model.weights, second.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
