"""Held-out AP of TFLite variants (tools/tflite_accuracy.py) on a tiny trained
model: the fp32 conversion must score what the Keras model scores.

The model: synthetic_tiny's, trained without augmentation on 3 synthetic images for 100
steps and scored on the same images (what it can learn in seconds: measured AP 0.07
after 80 steps, 0.39 after 120; a model left at the mean pose scores AP 0 in both
paths, which would make the comparison void). "scored as Keras" is one value of
`measure_variants`' Keras row, itself checked against `validate`.
"""
import warnings

import numpy as np
import pytest

from prtr_tf.config import load_config
from tools import tflite_accuracy

# ~1 CPU minute: the training (100 steps) and two conversions.
pytestmark = pytest.mark.slow
STEPS = 100


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from prtr_tf.training.trainer import Trainer
    root = tmp_path_factory.mktemp("tflite_accuracy")
    config = load_config("synthetic_tiny")
    config.data.root = str(root / "data")
    config.data.synthetic = {"train": (3, 1), "val": (3, 1)}
    config.data.val_ann, config.data.val_images = config.data.train_ann, config.data.train_images
    config.data.scale_factor = config.data.rotation_factor = 0.0
    t = config.train
    t.batch_size, t.steps_per_epoch, t.epochs, t.eval_every_epochs = 4, STEPS, 1, 0
    t.lr, t.lr_backbone, t.lr_steps, t.log_every_steps = 1e-3, 1e-3, (10,), 1000
    t.checkpoint_every_steps = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(config, str(root / "run"), strategy="default")
        trainer.fit()
    return trainer.model, config


def test_fp32_tflite_scores_as_keras(trained):
    from prtr_tf.models.keypoint.evaluate import validate
    model, config = trained
    rows = tflite_accuracy.measure_variants(model, config, "val",
                                            quantizations=("fp32", "int8_full"),
                                            kernels=("builtin",), threads=2, warmup=1,
                                            num_calibration=8, rounds=1, calls=3)
    for row in rows:
        print({k: row.get(k) for k in tflite_accuracy.FIELDS + ("mean_px", "max_px")})
        assert set(tflite_accuracy.FIELDS) <= set(row)
    keras, fp32, int8 = rows  # int8: the calibrated full-integer one
    assert [(r["variant"], r["kernels"]) for r in rows] == [
        ("keras", "tensorflow"), ("fp32", "builtin"), ("int8_full", "builtin")]
    # The Keras row is the project's validation (same crops, readout and COCO scoring).
    assert keras["AP"] == pytest.approx(validate(model, config, "val", flip_test=False)["AP"])
    assert keras["AP"] > 0.02, "the tiny model did not learn its images: a void comparison"
    assert abs(fp32["AP_delta"]) <= 0.5
    assert fp32["AP_delta"] == pytest.approx(100 * (fp32["AP"] - keras["AP"]))
    assert fp32["mean_px"] < 1e-2  # the same joints, up to float rounding
    assert 0.0 <= int8["AP"] <= 1.0 and np.isfinite(int8["AP_delta"])
    assert int8["size_mb"] < 0.7 * fp32["size_mb"]
    assert fp32["ms_per_crop"] > 0 and int8["ms_per_crop"] > 0
    assert "variant" in tflite_accuracy.markdown_table(rows)
