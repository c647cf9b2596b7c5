"""One person-score threshold by default on every prediction path (issue 26, "the same
models give 10 persons or none"): the Keras two-stage pipeline, the SavedModel export,
the .tflite files and the end-to-end model all default to
`prtr_tf.serving.defaults.PERSON_SCORE_THRESHOLD`, the exports record it in their
metadata (SavedModel, detector .tflite, ONNX), and the same tiny models find the same
persons on one image through `build_estimator` (what prtr-predict runs) with no
--box_thr.

The models are tiny and random (no ../shared data needed); the detector's class head is
scaled so that its P(person) spreads over [0, 1] (as tests/serving/test_predict.py),
and the test checks that the image has queries on both sides of the default (so a
backend that kept every query, or cut elsewhere, would find another number)."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from prtr_tf.serving import defaults  # noqa: E402

_CONFIG_FILE = """
from prtr_tf.config import load_config


def get_config():
    c = load_config("synthetic_tiny")
    c.test.in_vis_thre = 0.0
    c.test.oks_thre = 1.0  # no OKS-NMS: every detected person is returned and counted
    c.test.flip_test = False
    return c
"""


def _spread_scores(detector, det_config, image):
    """Rescales the random detector's class head so that on ``image`` its P(person)
    spreads over (0, 1): queries on both sides of the default threshold, none near it,
    and (when the default is not 0.5) one between the default and 0.5."""
    from prtr_tf.models.detector.predict import DetrPersonDetector
    from prtr_tf.models.detector.records import person_label

    kernel, bias = detector.class_embed.weights
    assert tuple(kernel.shape)[-1] == 2  # person + no-object: P = sigmoid(logit difference)
    label = person_label(det_config)
    _, p = DetrPersonDetector(detector, det_config, 0.0)(image)
    b = bias.numpy()
    x = np.sort(np.log(p) - np.log1p(-p) - (b[label] - b[1 - label]))  # the kernel's part
    k = max(range(2, len(x) - 3), key=lambda i: x[i + 1] - x[i])  # widest middle gap
    scale = 2.0 / max(float(x[k + 1] - x[k]), 1e-6)  # that gap: 2 in logits
    x = x * scale

    def logit(q):
        return float(np.log(q) - np.log1p(-q))

    t = defaults.PERSON_SCORE_THRESHOLD
    if t == 0.5:  # the gap's middle at the threshold
        shift = logit(t) - (x[k] + x[k + 1]) / 2
    elif t < 0.5:  # query k + 1 between t and 0.5, query k below t
        shift = (logit(t) + logit(0.5)) / 2 - x[k + 1]
    else:  # query k between 0.5 and t, query k + 1 above t
        shift = (logit(t) + logit(0.5)) / 2 - x[k]
    new = np.zeros_like(b)
    new[label] = shift
    kernel.assign(kernel.numpy() * scale)
    bias.assign(new)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny keypoint model and DETR (weights files), their SavedModel (the export
    CLI's serving module with its defaults), a keypoint .tflite and a detector .tflite
    at the image's DETR input size, and the image."""
    import keras

    from prtr_tf.config import load_config
    from prtr_tf.export import tflite
    from prtr_tf.models import registry
    from prtr_tf.models.detector.model import build_detector
    from prtr_tf.models.detector.resize import resize_size
    from prtr_tf.models.keypoint.model import build_model
    from prtr_tf.serving.saved_model import export_saved_model

    tmp = tmp_path_factory.mktemp("threshold")
    (tmp / "tiny.py").write_text(_CONFIG_FILE)
    config = load_config(str(tmp / "tiny.py"))
    det_config = load_config("synthetic_detector_tiny")
    keras.utils.set_random_seed(7)
    model = build_model(config.model)
    model.save_weights(str(tmp / "kp.weights.h5"))
    detector = build_detector(det_config.model)
    detector.bbox_embed.weights[-2].assign(detector.bbox_embed.weights[-2] * 10.0)
    image = np.random.default_rng(0).integers(0, 256, (150, 200, 3), np.uint8)
    _spread_scores(detector, det_config, image)
    detector.save_weights(str(tmp / "det.weights.h5"))
    # prtr-export saved_model's serving module, its --score_threshold left at the default
    # (the flag's default is checked below).
    serving = registry.get(config).serving(model, config, detector, det_config,
                                           score_threshold=None, max_persons=None)
    export_saved_model(serving, str(tmp / "saved_model"))
    size = [int(v) for v in resize_size(150, 200, det_config.data.test_size,
                                        det_config.data.max_size)]
    tflite.save_tflite(tflite.convert_detector(detector, det_config, size, "fp32"),
                       str(tmp / "det.tflite"))
    tflite.save_tflite(tflite.convert_keypoint_model(model, config, "fp32"),
                       str(tmp / "kp.tflite"))
    return {"dir": tmp, "config": config, "det_config": det_config, "image": image,
            "detector": detector}


@pytest.fixture(scope="module")
def backends(models):
    """The estimators prtr-predict builds for each backend, no --box_thr."""
    from prtr_tf.serving.backends import build_estimator

    m = models
    d = m["dir"]
    return {
        "keras": build_estimator(config=m["config"], checkpoint=str(d / "kp.weights.h5"),
                                 detector_config=m["det_config"],
                                 detector_checkpoint=str(d / "det.weights.h5"))[0],
        "saved_model": build_estimator(saved_model=str(d / "saved_model"))[0],
        "tflite": build_estimator(tflite=str(d / "kp.tflite"),
                                  detector_tflite=str(d / "det.tflite"))[0],
    }


def test_same_default_threshold_and_persons_across_backends(models, backends):
    from prtr_tf.export.tflite import read_metadata
    from prtr_tf.models.detector.predict import DetrPersonDetector
    from prtr_tf.serving import metadata

    default = defaults.PERSON_SCORE_THRESHOLD
    d = models["dir"]

    # The image has queries on both sides of the default: a backend that kept every
    # query (a config's score_thre 0.0), or that cut at 0.5 while the default is not
    # 0.5, would find another number of persons.
    def detected(threshold):
        return len(DetrPersonDetector(models["detector"], models["det_config"],
                                      threshold)(models["image"])[0])

    assert detected(0.0) > detected(default) > 0
    if default != 0.5:
        assert detected(0.5) != detected(default)

    found = {name: e(models["image"]) for name, e in backends.items()}
    counts = {name: len(p) for name, p in found.items()}
    assert counts["keras"] >= 1 and len(set(counts.values())) == 1, counts
    for name, persons in found.items():
        assert all(p["box_score"] >= default for p in persons), name
    ref = sorted(p["box_score"] for p in found["keras"])
    for name in ("saved_model", "tflite"):
        np.testing.assert_allclose(sorted(p["box_score"] for p in found[name]), ref,
                                   atol=1e-4, err_msg=name)

    # The threshold each backend reads or records.
    assert backends["keras"].detector.threshold == default
    assert backends["saved_model"].score_threshold == default
    assert metadata.read(str(d / "saved_model"))["score_threshold"] == default
    assert backends["tflite"].detector.threshold == default
    assert read_metadata(str(d / "det.tflite"))["score_threshold"] == default
    assert {name: defaults.person_threshold(e) for name, e in backends.items()} == \
        {name: default for name in backends}


def test_overrides_and_the_end_to_end_default(models):
    """--box_thr (``box_thr``) overrides the default on the Keras and TFLite paths; the
    end-to-end model's serving module defaults to the same value."""
    from prtr_tf.config import load_config
    from prtr_tf.models.end_to_end.serving import EndToEndServing
    from prtr_tf.models.keypoint.serving import PoseServing
    from prtr_tf.serving.backends import TFLiteDetector
    from prtr_tf.models.detector.predict import DetrPersonDetector

    default = defaults.PERSON_SCORE_THRESHOLD
    assert EndToEndServing(None, load_config("e2e_tiny")).score_threshold == default
    assert PoseServing(None, models["config"]).score_threshold == default
    assert DetrPersonDetector(models["detector"], models["det_config"]).threshold == default
    assert DetrPersonDetector(models["detector"], models["det_config"], 0.25).threshold == 0.25
    assert TFLiteDetector(str(models["dir"] / "det.tflite"), 0.25).threshold == 0.25


def test_onnx_metadata_carries_the_savedmodel_threshold(models, tmp_path):
    """prtr-export onnx copies the SavedModel's metadata, score threshold included (the
    ONNX graph is the SavedModel's, threshold and all)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from prtr_tf.export import onnx as onnx_export
    from prtr_tf.serving import metadata

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph), path)
    onnx_export._copy_metadata(str(models["dir"] / "saved_model"), path)
    assert metadata.read_onnx(path)["score_threshold"] == defaults.PERSON_SCORE_THRESHOLD


def test_predict_summary_prints_the_threshold(models, backends, tmp_path, capsys):
    from PIL import Image

    from prtr_tf.inference.predict import predict_files

    path = tmp_path / "image.png"
    Image.fromarray(models["image"]).save(path)
    predict_files(backends["saved_model"], [str(path)], str(tmp_path / "out"))
    out = capsys.readouterr().out
    assert f"person score threshold {defaults.PERSON_SCORE_THRESHOLD:g};" in out, out


def test_cli_defaults_are_the_constant():
    """prtr-export saved_model --score_threshold and prtr-predict --box_thr's help show
    the shared default."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, str(REPO / "export" / "to_saved_model.py"),
                           "--help"], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)
    text = proc.stdout + proc.stderr
    value = defaults.PERSON_SCORE_THRESHOLD
    start = text.index("--score_threshold")
    assert f"(default: '{value}')" in text[start:start + 600], text[start:start + 600]
    from prtr_tf.cli import predict
    import inspect
    source = inspect.getsource(predict.define_flags)
    box = source[source.index('"box_thr", None'):]
    assert f"default {value:g} " in box[:box.index(")\n")], box[:600]
