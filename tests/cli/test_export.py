"""The export scripts run as users run them: export/to_saved_model.py (= prtr-export
saved_model) and export/to_tflite.py (= prtr-export tflite).

(The scripts on a trained end-to-end model, and export/to_onnx.py, stay in
tests/end_to_end/test_training.py, marked ``cli``: they use its trained model.)
"""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.config import load_config
from prtr_tf.export.tflite import metadata, runtime
from prtr_tf.models.keypoint.model import build_model
from prtr_tf.models.keypoint.predict import predict_crops

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


def test_cli_help_and_clear_errors(tmp_path):
    script = os.path.join(REPO, "export", "to_saved_model.py")
    proc = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                          env=ENV, cwd=REPO, timeout=120)
    assert "Exports the two-stage (or end-to-end) PRTR pipeline" in proc.stdout  # (exit 1)
    for flag in ("--detector_checkpoint", "--score_threshold", "--max_persons", "flip_test"):
        assert flag in proc.stdout
    proc = subprocess.run(
        [sys.executable, script, "--config=synthetic_detector_tiny",
         f"--checkpoint={tmp_path / 'x.weights.h5'}", "--detector_config=synthetic_tiny",
         f"--detector_checkpoint={tmp_path / 'y.weights.h5'}", f"--output={tmp_path / 'o'}"],
        capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)
    assert proc.returncode != 0
    assert "error: --config is a DETR person detector config" in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()
    # Two-stage without a detector; end-to-end with detector flags.
    proc = subprocess.run(
        [sys.executable, script, "--config=synthetic_tiny",
         f"--checkpoint={tmp_path / 'x.weights.h5'}", f"--output={tmp_path / 'o'}"],
        capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)
    assert proc.returncode != 0 and "or --detector_config and --detector_checkpoint" in proc.stderr
    proc = subprocess.run(
        [sys.executable, script, "--config=e2e_tiny", "--detector_config=synthetic_tiny",
         f"--checkpoint={tmp_path / 'x.weights.h5'}", f"--output={tmp_path / 'o'}"],
        capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)
    assert proc.returncode != 0 and "--detector_config does not apply" in proc.stderr
    proc = subprocess.run(
        [sys.executable, script, "--config=e2e_tiny",
         f"--checkpoint={tmp_path / 'x.weights.h5'}", f"--output={tmp_path / 'o'}"],
        capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)
    assert proc.returncode == 1 and "--checkpoint" in proc.stderr
    assert "does not exist" in proc.stderr
    assert not (tmp_path / "o").exists()
    # An existing non-empty --output (no --overwrite) is an error; nothing is touched.
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("x")
    proc = subprocess.run(
        [sys.executable, script, "--config=e2e_tiny",
         f"--checkpoint={tmp_path / 'x.weights.h5'}", f"--output={tmp_path / 'full'}"],
        capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)
    assert proc.returncode == 1 and "exists and is not empty" in proc.stderr
    assert os.listdir(tmp_path / "full") == ["keep"]
    assert sorted(os.listdir(tmp_path)) == ["full"]  # no temporary folder left


@pytest.mark.slow  # ~36 s on 2 CPU cores
def test_export_script_with_workdir_and_default_detector_size(tmp_path):
    """export/to_tflite.py (= prtr-export tflite): --checkpoint takes a training workdir,
    the detector's input size defaults to its config's data.test_size x data.max_size."""
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = os.path.join(repo, "export", "to_tflite.py")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                          env=env, cwd=repo, timeout=120)
    for flag in ("--detector_size", "--num_calibration", "--calibration_data", "--quantization"):
        assert flag in proc.stdout
    config = load_config("configs/tiny.py")
    keras.utils.set_random_seed(4)
    model = build_model(config.model)
    (tmp_path / "run").mkdir()
    model.save_weights(str(tmp_path / "run" / "last.weights.h5"))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, script, "--config=configs/tiny.py", f"--checkpoint={tmp_path / 'run'}",
         f"--output={out}", "--detector_config=configs/synthetic_detector_tiny.py"],
        capture_output=True, text=True, env=env, cwd=repo, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exporting random initial weights" in proc.stdout  # the detector only
    assert "no --checkpoint" not in proc.stdout
    assert sorted(os.listdir(out)) == ["detector_fp32.json", "detector_fp32.tflite",
                                       "keypoints_fp32.json", "keypoints_fp32.tflite"]
    det_config = load_config("configs/synthetic_detector_tiny.py")
    meta = metadata.read_metadata(str(out / "detector_fp32.tflite"))
    assert meta["input"]["size_hw"] == [det_config.data.test_size, det_config.data.max_size]
    crops = np.random.RandomState(5).randn(1, *config.model.image_size, 3).astype(np.float32)
    coords, _ = predict_crops(model, tf.constant(crops))
    lite = runtime.run_tflite(str(out / "keypoints_fp32.tflite"), crops)
    np.testing.assert_allclose(lite["keypoints"], coords.numpy(), atol=1e-6)
