"""The distributed trainer: replica equivalence, multi-worker, resume, learning.

Training runs happen in subprocesses (tests/training/train_worker.py): logical CPU devices
and TF_CONFIG must be set before TensorFlow starts.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "train_worker.py")


def _run(tmp_path, name, *args, env=None, background=False):
    out = tmp_path / f"{name}.npz"
    cmd = [sys.executable, WORKER, "--data", str(tmp_path / "data"),
           "--workdir", str(tmp_path / name), "--out", str(out), *args]
    full_env = dict(os.environ, **(env or {}))
    if background:
        return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True), out
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(np.load(out)), proc.stdout


def _weights(result):
    return [result[k] for k in sorted((k for k in result if k.startswith("w")),
                                      key=lambda k: int(k[1:]))]


def _assert_same_weights(a, b, atol):
    wa, wb = _weights(a), _weights(b)
    assert len(wa) == len(wb)
    worst = max(float(np.max(np.abs(x - y))) if x.size else 0.0 for x, y in zip(wa, wb))
    assert worst <= atol, f"weights differ by up to {worst}"


def test_mirrored_two_replicas_equals_one_device(tmp_path):
    one, _ = _run(tmp_path, "one", "--strategy", "default", "--steps", "2")
    two, _ = _run(tmp_path, "two", "--strategy", "mirrored", "--logical_cpus", "2",
                  "--steps", "2")
    assert int(one["replicas"]) == 1 and int(two["replicas"]) == 2
    np.testing.assert_allclose(one["losses"], two["losses"], rtol=1e-5)
    # Two Adam steps at lr 1e-3 move weights by ~2e-3; the replicas agree far below that.
    _assert_same_weights(one, two, atol=2e-5)
    moved = max(float(np.max(np.abs(x - y))) for x, y in zip(
        _weights(one), _weights(_run(tmp_path, "zero", "--steps", "0")[0])) if x.size)
    assert moved > 5e-4


def test_end_to_end_model_two_replicas_equal_one_device(tmp_path):
    """The end-to-end task under MirroredStrategy: replicas hold different numbers of
    persons (crops), and the class, box and keypoint terms are normalised by global
    counts, so 2 replicas x 2 images take the same step as 1 device x 4 images.

    One step: at initialisation the DETR queries are nearly alike, so the ~1e-6
    float differences of a step can flip a near-tied Hungarian match and change the
    next loss by ~1e-3 (measured: step 1 equal to 1e-7, weights to 1.2e-6; step 2
    off by 6.5e-4 relative)."""
    one, _ = _run(tmp_path, "one", "--kind", "prtr_e2e", "--strategy", "default",
                  "--steps", "1")
    two, _ = _run(tmp_path, "two", "--kind", "prtr_e2e", "--strategy", "mirrored",
                  "--logical_cpus", "2", "--steps", "1")
    assert int(two["replicas"]) == 2
    # Measured with per-replica normalisers instead: the crop count's gives 2e-3 (loss)
    # and 6e-3 (gradient norm); DETR's local class-weight sum 1.3e-5 and 4e-3.
    np.testing.assert_allclose(one["losses"], two["losses"], rtol=1e-5)
    # The all-reduced gradient's norm (Adam's first step only sees gradient signs).
    np.testing.assert_allclose(one["grad_norms"], two["grad_norms"], rtol=1e-5)
    _assert_same_weights(one, two, atol=2e-5)  # an Adam step at lr 1e-3 moves ~1e-3
    moved = max(float(np.max(np.abs(x - y))) for x, y in zip(
        _weights(one), _weights(_run(tmp_path, "zero", "--kind", "prtr_e2e",
                                     "--steps", "0")[0])) if x.size)
    assert moved > 5e-4


def test_bfloat16_mixed_precision_trains_with_float32_variables(tmp_path):
    full, _ = _run(tmp_path, "fp32", "--steps", "3")
    mixed, _ = _run(tmp_path, "bf16", "--steps", "3", "--mixed_precision", "bfloat16")
    assert str(mixed["compute_dtype"]) == "bfloat16"
    assert list(mixed["variable_dtypes"]) == ["float32"]
    assert np.all(np.isfinite(mixed["losses"]))
    # Same initial weights and batches: the bfloat16 losses follow the float32 ones.
    np.testing.assert_allclose(mixed["losses"], full["losses"], rtol=0.05)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.parametrize("kind", ["prtr", "prtr_e2e"])
def test_multiworker_two_local_processes_end_identical(tmp_path, kind):
    # Make the data once so that the two workers do not race to generate it.
    _run(tmp_path, "prepare", "--steps", "0", "--kind", kind)
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        env = {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                      "index": i}})}
        procs.append(_run(tmp_path, f"worker{i}", "--strategy", "auto", "--steps", "2",
                          "--kind", kind, env=env, background=True))
    results = []
    for proc, out in procs:
        log, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, log[-4000:]
        results.append(dict(np.load(out)))
    assert int(results[0]["replicas"]) == 2 and int(results[0]["step"]) == 2
    _assert_same_weights(results[0], results[1], atol=0.0)
    np.testing.assert_array_equal(results[0]["losses"], results[1]["losses"])


def test_tiny_config_overfits_a_small_synthetic_set(tmp_path, capsys):
    """Train and evaluate on the same 4 synthetic images, without augmentation.

    Threshold: a model that has only learned the mean pose (where the tiny config
    sits after its first epochs on the full synthetic set) scores AP ~0.00 here;
    memorising these 10 persons puts most joints within a few pixels. Measured on
    this 2-core CPU with 20 epochs: loss 27 -> ~3, AP ~0.7 (0.62 after 15 epochs,
    AP .5 = 1.0). AP >= 0.4 and a 5x loss drop leave room for platform differences,
    while a broken matcher, loss, readout or inverse transform gives AP ~0.
    """
    from prtr_tf.training.trainer import Trainer
    from tests.training.train_worker import tiny_synthetic_config

    config = tiny_synthetic_config(str(tmp_path / "data"), batch_size=8, steps_per_epoch=20,
                                   epochs=OVERFIT_EPOCHS)
    config.data.synthetic = {"train": (4, 21), "val": (4, 21)}
    config.data.val_ann, config.data.val_images = config.data.train_ann, config.data.train_images
    config.data.scale_factor, config.data.rotation_factor, config.data.flip = 0.0, 0.0, False
    config.train.eval_every_epochs = OVERFIT_EPOCHS
    config.train.lr_steps = (OVERFIT_EPOCHS - 2,)
    history = Trainer(config, str(tmp_path / "run"), strategy="default").fit()
    first, last = history[0], history[-1]
    print(f"loss {first['loss']:.3f} -> {last['loss']:.3f}, AP {last['AP']:.3f}")
    assert last["loss"] < first["loss"] / 5
    assert last["AP"] >= 0.4


OVERFIT_EPOCHS = 20


def test_tiny_detector_learns_a_small_synthetic_set(tmp_path):
    """The DETR person detector in the same trainer, trained and evaluated on 4 images.

    Threshold: untrained, the tiny detector's boxes score box AP ~0.00 on this set;
    learning the 10 persons' boxes gives AP close to 1. Measured on this 2-core CPU:
    loss 9.2 -> 0.16, AP 1.00 (AP .5 1.00). AP >= 0.7 and a 10x loss drop leave room
    for platform differences while failing a broken matcher, loss or box decoding.
    """
    from prtr_tf.config import load_config
    from prtr_tf.training.trainer import Trainer

    config = load_config("synthetic_detector_tiny")
    config.data.root = str(tmp_path / "data")
    config.data.synthetic = {"train": (4, 21), "val": (4, 21)}
    config.data.val_ann, config.data.val_images = config.data.train_ann, config.data.train_images
    config.data.flip_prob, config.data.crop_prob = 0.0, 0.0
    config.data.scales = (256,)
    config.train.batch_size, config.train.steps_per_epoch = 4, 10
    config.train.epochs = config.train.eval_every_epochs = DETECTOR_EPOCHS
    config.train.lr_steps = (DETECTOR_EPOCHS - 3,)
    config.train.checkpoint_every_steps = 0
    history = Trainer(config, str(tmp_path / "run"), strategy="default").fit()
    first, last = history[0], history[-1]
    print(f"loss {first['loss']:.3f} -> {last['loss']:.3f}, AP {last['AP']:.3f}, "
          f"AP .5 {last['AP .5']:.3f}")
    assert last["loss"] < first["loss"] / 10
    assert last["AP"] >= 0.7


DETECTOR_EPOCHS = 20
