"""Two-stage SavedModel export with a Deformable DETR detector (issue 29).

Tiny random-weight models (configs/deformable_detr_tiny.py, the synthetic tiny keypoint
config). The detector's spatial shapes are static per trace, so `PoseServing` pads the
resized image to one fixed size with its padding mask
(`prtr_tf.models.detector.resize.pad_with_mask`, `detector_pad_size`), as the Keras
`DetrPersonDetector` does; the SavedModel is compared with `PoseEstimator` on that
detector. The padding's effect on the raw outputs is measured (why both pad). Slow: the export CLI, the detector .tflite (builtin ops only, = Keras)
and the --onnx_compatible pipeline through tf2onnx / ONNX Runtime.
"""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.config import load_config
from prtr_tf.export import onnx as onnx_export
from prtr_tf.export.tflite import (check_builtin_only, convert_detector, list_ops,
                                   read_metadata, run_tflite)
from prtr_tf.models import registry
from prtr_tf.models.detector.deformable import FAMILY
from prtr_tf.data.image import normalization
from prtr_tf.models.detector.resize import resize
from prtr_tf.models.keypoint.model import build_model
from prtr_tf.models.keypoint.serving import PoseServing
from prtr_tf.serving.estimator import PoseEstimator
from prtr_tf.models.detector.predict import DetrPersonDetector
from prtr_tf.models.detector.resize import detector_pad_size, pad_with_mask
from prtr_tf.serving.saved_model import export_saved_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
BOX_TOL = 2e-3  # pixels: SavedModel vs Keras, the same padded detection
PAD_BOX_TOL = 0.05  # normalised: padded vs unpadded raw boxes (random weights: 0.025)
CONFIG_FILE = """
from prtr_tf.config import load_config
from prtr_tf.export import onnx as onnx_export
from prtr_tf.export.tflite import (check_builtin_only, convert_detector, list_ops,
                                   read_metadata, run_tflite)


def get_config():
    c = load_config("synthetic_tiny")
    c.test.in_vis_thre = 0.0
    return c
"""


def padded_outputs(detector, det_config, image):
    """The detector's raw outputs on ``image`` resized, normalised and padded with its
    mask, as `DetrPersonDetector` and the serving prepare it."""
    data = det_config.data
    gain, offset = normalization(data.mean, data.std)
    x, _ = resize(tf.cast(image, tf.float32), tf.zeros((0, 4)), int(data.test_size),
                  int(data.max_size))
    x, mask = pad_with_mask(x * gain - offset, detector_pad_size(data))
    return detector(x[None], mask=mask[None], training=False)


def _models(tmp):
    config_path = tmp / "tiny_all_joints.py"
    config_path.write_text(CONFIG_FILE)
    config = load_config(str(config_path))
    det_config = load_config("configs/deformable_detr_tiny.py")
    keras.utils.set_random_seed(3)
    model = build_model(config.model)
    detector = registry.build_model(det_config)
    # Spread the random boxes and scores (else near-identical boxes: one person after NMS).
    last = detector.bbox_embed.layers_[-1]
    last.kernel.assign(tf.random.normal(last.kernel.shape, stddev=0.3, seed=1))
    detector.class_embed.kernel.assign(detector.class_embed.kernel * 10.0)
    detector.class_embed.bias.assign(tf.zeros_like(detector.class_embed.bias))
    return config_path, config, model, det_config, detector


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddetr_export")
    config_path, config, model, det_config, detector = _models(tmp)
    serving = PoseServing(model, config, detector, det_config, score_threshold=0.0,
                          max_persons=20)
    out = export_saved_model(serving, str(tmp / "saved_model"))
    return tmp, config_path, config, model, det_config, detector, tf.saved_model.load(out)


def _image(coco_mini, i=0):
    path = sorted((coco_mini / "images").iterdir())[i]
    return tf.io.decode_image(tf.io.read_file(str(path)), channels=3).numpy()


def test_export_formats_and_pad_helpers():
    assert FAMILY.export_formats == ("saved_model", "tflite")
    data = load_config("configs/deformable_detr_tiny.py").data
    assert detector_pad_size(data) == (320, 320)
    r50 = load_config("configs/deformable_detr_r50_person.py").data
    assert detector_pad_size(r50) == (1344, 1344)   # max_size 1333 up to 32
    x, mask = pad_with_mask(tf.ones((5, 7, 3)), (8, 9))
    assert x.shape == (8, 9, 3) and float(tf.reduce_sum(x)) == 5 * 7 * 3
    assert int(tf.reduce_sum(tf.cast(~mask, tf.int32))) == 35 and not bool(mask[4, 6])
    data.pad_size = (256, 320)
    with pytest.raises(ValueError, match="pad_size"):
        detector_pad_size(data)


def test_serving_default_matches_pose_estimator(exported, coco_mini):
    _, _, config, model, det_config, detector, loaded = exported
    fn = loaded.signatures["serving_default"]
    for i in (0, 1):  # two coco_mini images of different sizes: one padded trace
        image = _image(coco_mini, i)
        out = {k: v.numpy() for k, v in fn(image=tf.constant(image)).items()}
        det = DetrPersonDetector(detector, det_config, score_threshold=0.0)
        persons = PoseEstimator(model, config, detector=det)(image)
        n = int(out["num_persons"])
        assert n == len(persons) >= 2, (n, len(persons))
        persons = sorted(persons, key=lambda p: -p["score"])
        ref = np.array([p["box"] for p in persons])
        err = np.abs(out["boxes"] - ref).max()
        print(f"image {i} {image.shape}: {n} persons, max box diff {err:.2e} px")
        assert err <= BOX_TOL
        np.testing.assert_allclose(out["box_scores"], [p["box_score"] for p in persons],
                                   atol=1e-5)
        np.testing.assert_allclose(out["scores"], [p["score"] for p in persons], atol=1e-5)
        ref_kpts = np.stack([p["keypoints"] for p in persons])
        np.testing.assert_allclose(out["keypoints"], ref_kpts[..., :2], atol=1e-2)


def test_padding_effect_on_raw_outputs(exported, coco_mini):
    """Padded + mask vs the unpadded image: boxes within PAD_BOX_TOL (normalised); the
    padding's effect on the features, which is why one padded size is used by both the
    Keras detector and the export."""
    det_config, detector = exported[4], exported[5]
    image = _image(coco_mini)
    padded = padded_outputs(detector, det_config, image)
    data = det_config.data
    gain, offset = normalization(data.mean, data.std)
    x, _ = resize(tf.cast(image, tf.float32), tf.zeros((0, 4)), int(data.test_size),
                  int(data.max_size))
    plain = detector((x * gain - offset)[None], training=False)
    diff = np.abs(np.asarray(padded["pred_boxes"]) - np.asarray(plain["pred_boxes"])).max()
    print(f"padded vs unpadded: max box diff {diff:.4f} (normalised)")
    assert diff <= PAD_BOX_TOL


@pytest.mark.slow
def test_export_cli(exported, coco_mini):
    """export/to_saved_model.py with --detector_config=configs/deformable_detr_tiny.py."""
    tmp, config_path, _, model, _, detector, loaded = exported
    (tmp / "kp_run").mkdir(exist_ok=True)
    model.save_weights(str(tmp / "kp_run" / "best.weights.h5"))
    detector.save_weights(str(tmp / "det.weights.h5"))
    out = tmp / "cli_saved_model"
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "export", "to_saved_model.py"),
         f"--config={config_path}", f"--checkpoint={tmp / 'kp_run'}",
         "--detector_config=configs/deformable_detr_tiny.py",
         f"--detector_checkpoint={tmp / 'det.weights.h5'}", f"--output={out}",
         "--score_threshold=0.0", "--max_persons=20"],
        capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    image = tf.constant(_image(coco_mini))
    a = tf.saved_model.load(str(out)).signatures["serving_default"](image=image)
    b = loaded.signatures["serving_default"](image=image)
    np.testing.assert_allclose(a["boxes"].numpy(), b["boxes"].numpy(), atol=1e-3)


@pytest.mark.slow
def test_tflite_detector_builtin_ops_and_parity():
    """convert_detector at a fixed size: builtin ops only, = the Keras model."""
    det_config = load_config("configs/deformable_detr_tiny.py")
    keras.utils.set_random_seed(0)
    detector = registry.build_model(det_config)
    flatbuffer = convert_detector(detector, det_config, (256, 320))
    check_builtin_only(flatbuffer)
    ops = set(list_ops(flatbuffer))
    assert "GATHER" in ops and not any(op.startswith("FLEX") or op == "CUSTOM" for op in ops)
    meta = read_metadata(flatbuffer)
    assert "sigmoid" in meta["outputs"]["scores"]
    x = np.random.RandomState(0).normal(size=(1, 256, 320, 3)).astype(np.float32)
    out = run_tflite(flatbuffer, {"images": x})
    ref = detector(x, training=False)
    np.testing.assert_allclose(out["boxes"], ref["pred_boxes"], atol=1e-5)   # 9e-8
    np.testing.assert_allclose(out["scores"], tf.sigmoid(ref["pred_logits"][..., 0]),
                               atol=1e-5)


@pytest.mark.slow
def test_onnx_full_pipeline(exported, coco_mini):
    """resize="matmul" (--onnx_compatible): tf2onnx converts serving_default with the
    padded deformable detector; ONNX Runtime matches the same graph in TF."""
    tmp, _, config, model, det_config, detector, _ = exported
    serving = PoseServing(model, config, detector, det_config, score_threshold=0.0,
                          max_persons=20, resize="matmul")
    export_saved_model(serving, str(tmp / "sm_matmul"))
    onnx_export.convert(str(tmp / "sm_matmul"), str(tmp / "full.onnx"), "serving_default")
    image = _image(coco_mini)
    ort = onnx_export.run(str(tmp / "full.onnx"), {"image": image})
    ref = {k: v.numpy() for k, v in serving.tf_functions()["serving_default"](
        tf.constant(image)).items()}
    assert int(ort["num_persons"]) == int(ref["num_persons"]) >= 2
    err = np.abs(ort["boxes"] - ref["boxes"]).max()
    print(f"onnx vs tf: max box diff {err:.2e} px")
    np.testing.assert_allclose(ort["boxes"], ref["boxes"], atol=5e-2)
    np.testing.assert_allclose(ort["box_scores"], ref["box_scores"], rtol=3e-3)
