"""SavedModel / ONNX export of the two-stage pipeline (`prtr_tf.models.keypoint.serving`, `export/`).

Tiny random-weight models are exported once through `export/to_saved_model.py`; the
signatures are checked against the Keras models (`predict_crops`, `PoseEstimator` +
`DetrPersonDetector`), `saved_model_cli` and ONNX Runtime.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.data.keypoint_sets import DATASETS
from prtr_tf.config import load_config
from prtr_tf.models.detector.predict import DetrPersonDetector
from prtr_tf.evaluation.nms import oks_nms
from prtr_tf.models.keypoint.predict import predict_crops
from prtr_tf.models.keypoint.model import build_model
from prtr_tf.models.detector.model import build_detector
from prtr_tf.serving.estimator import PoseEstimator
from prtr_tf.models.keypoint.readout import readout
from prtr_tf.models.keypoint.data import Cropper
from prtr_tf.models.detector.resize import resize
from prtr_tf.models.keypoint.serving import PoseServing
from prtr_tf.data.transforms import box_to_center_scale_tf
from prtr_tf.serving.ops import crops_matmul, resize_matmul
from prtr_tf.serving.saved_model import export_saved_model
from prtr_tf.checkpoints import weights
from prtr_tf.export import onnx as onnx_export
from prtr_tf.evaluation.nms import oks_nms_tf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
# The tiny keypoint config with every joint counting in the rescoring: random weights
# give joint scores ~1/J < 0.2, which would make every person score 0 (ties).
CONFIG_FILE = """
from prtr_tf.config import load_config


def get_config():
    c = load_config("synthetic_tiny")
    c.test.in_vis_thre = 0.0
    return c
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(SavedModel dir, keypoint model, config, detector, detector config)."""
    import keras

    tmp = tmp_path_factory.mktemp("export")
    config_path = tmp / "tiny_all_joints.py"
    config_path.write_text(CONFIG_FILE)
    config = load_config(str(config_path))
    det_config = load_config("synthetic_detector_tiny")
    keras.utils.set_random_seed(3)
    # The keypoint weights as a training workdir (--checkpoint=WORKDIR: its best.weights.h5).
    (tmp / "kp_run").mkdir()
    build_model(config.model).save_weights(str(tmp / "kp_run" / "best.weights.h5"))
    detector = build_detector(det_config.model)
    # Spread the random detector's boxes and scores (else its queries give near-identical
    # boxes, which OKS-NMS reduces to one person).
    detector.bbox_embed.weights[-2].assign(detector.bbox_embed.weights[-2] * 100.0)
    for w in detector.class_embed.weights:
        w.assign(w * 10.0)
    detector.save_weights(str(tmp / "det.weights.h5"))
    out = tmp / "saved_model"
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "export", "to_saved_model.py"),
         f"--config={config_path}", f"--checkpoint={tmp / 'kp_run'}",
         "--detector_config=synthetic_detector_tiny",
         f"--detector_checkpoint={tmp / 'det.weights.h5'}", f"--output={out}",
         "--score_threshold=0.0", "--max_persons=20"],
        capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "serving_default" in proc.stdout
    model, config, _ = weights.load_model(config, str(tmp / "kp_run"), "keypoint checkpoint")
    detector, det_config, _ = weights.load_model(det_config, str(tmp / "det.weights.h5"),
                                                 "detector checkpoint")
    return out, model, config, detector, det_config


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported[0]))


def _crops(config, n=3, seed=0):
    h, w = config.model.image_size
    return np.random.RandomState(seed).normal(size=(n, h, w, 3)).astype(np.float32)


def _image(coco_mini):
    path = sorted((coco_mini / "images").iterdir())[0]
    return tf.io.decode_image(tf.io.read_file(str(path)), channels=3).numpy()


def test_load_models_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="keypoint checkpoint .* does not exist"):
        weights.load_model("synthetic_tiny", str(tmp_path / "missing.weights.h5"),
                           "keypoint checkpoint")
    with pytest.raises(FileNotFoundError, match="known configs"):
        weights.load_model("no_such_config", str(tmp_path / "missing.weights.h5"))
    det = build_detector(load_config("synthetic_detector_tiny").model)
    det.save_weights(str(tmp_path / "det.weights.h5"))
    with pytest.raises(ValueError, match="does not fit the model of config"):
        weights.load_model("synthetic_tiny", str(tmp_path / "det.weights.h5"))


def test_signatures_and_input_checks(exported, loaded):
    config = exported[2]
    assert {"serving_default", "serve_crops", "serve_encoded"} <= set(loaded.signatures)
    out = loaded.signatures["serve_crops"](images=tf.constant(_crops(config, 2)))
    j = config.model.num_joints
    assert out["keypoints"].shape == (2, j, 2) and out["query"].dtype == tf.int32
    out = loaded.signatures["serving_default"](image=tf.fill((40, 60, 3), tf.constant(90, tf.uint8)))
    n = int(out["num_persons"])
    assert out["boxes"].shape == (n, 4) and out["keypoints"].shape == (n, j, 2)
    assert out["keypoint_scores"].shape == (n, j) and out["scores"].shape == (n,)
    assert out["box_scores"].shape == (n,) and out["box_scores"].dtype == tf.float32
    # Wrong dtype: rejected by the input signature.
    with pytest.raises(TypeError, match="Can not cast TensorSpec"):
        loaded.serving_default(tf.zeros((40, 60, 3), tf.float32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a uint8"):
        loaded.signatures["serving_default"](image=tf.zeros((40, 60, 3), tf.float32))


BAD_IMAGES = [  # (what a client sends, what the error says)
    (np.full((1, 40, 60, 3), 90, np.uint8), r"must be one \(height, width, 3\) uint8 RGB "
     r"image; got a tensor of shape\] \[1 40 60 3\] \[\(send a batch one image at a time"),
    (np.full((40, 60, 4), 90, np.uint8), r"must have 3 channels \(RGB\); got shape\] "
     r"\[40 60 4\] \[\(drop the alpha channel"),
    (np.full((40, 60), 90, np.uint8), r"got a tensor of shape\] \[40 60\]"),
    (np.zeros((0, 60, 3), np.uint8), r"`image` is empty: shape\] \[0 60 3\]"),
    (np.uint8(np.random.RandomState(0).uniform(0, 1, (40, 60, 3)).round()),
     r"every pixel of `image` is 0 or 1: a float image in \[0, 1\] cast to uint8"),
]


@pytest.mark.parametrize("endpoint", ["signature", "tf_function"])
def test_serving_default_input_errors(exported, loaded, endpoint):
    """What a SavedModel signature does not check (its shape) fails first, saying what
    was sent and what to send; a black frame is valid input."""
    _, model, config, detector, det_config = exported
    fn = (loaded.signatures["serving_default"] if endpoint == "signature" else
          PoseServing(model, config, detector, det_config).tf_functions()["serving_default"])
    for image, message in BAD_IMAGES:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            fn(image=tf.constant(image)) if endpoint == "signature" else fn(image)
    black = tf.zeros((40, 60, 3), tf.uint8)
    out = fn(image=black) if endpoint == "signature" else fn(black)
    assert out["keypoints"].shape[1:] == (config.model.num_joints, 2)


def test_serve_crops_input_errors(exported, loaded):
    config = exported[2]
    h, w = config.model.image_size
    fn = loaded.signatures["serve_crops"]
    for shape in [(2, h, w + 1, 3), (h, w, 3), (2, 3, h, w), (2, h, w, 3, 1), (h * w, 3)]:
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=rf"`images` must be float32 crops of shape \(batch, {h}, "
                                 rf"{w}, 3\).*got shape\] \[{' '.join(map(str, shape))}\]"):
            fn(images=tf.zeros(shape))
    assert fn(images=tf.zeros((0, h, w, 3)))["keypoints"].shape == (0, config.model.num_joints, 2)


def test_saved_model_cli_float_image_is_an_error(exported, tmp_path):
    """saved_model_cli casts a float image in [0, 1] to uint8: the error says so."""
    image = np.random.RandomState(1).uniform(0, 1, (40, 60, 3))
    image[0, 0] = 1.0
    np.save(tmp_path / "image.npy", image)
    proc = subprocess.run(
        [os.path.join(BIN, "saved_model_cli"), "run", "--dir", str(exported[0]),
         "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"image={tmp_path / 'image.npy'}"],
        capture_output=True, text=True, env=ENV, timeout=180)
    assert proc.returncode != 0
    assert "a float image in [0, 1] cast to uint8?" in proc.stderr, proc.stderr[-2000:]


def test_saved_model_cli_run(exported, tmp_path):
    config = exported[2]
    np.save(tmp_path / "crops.npy", _crops(config, 2))
    proc = subprocess.run(
        [os.path.join(BIN, "saved_model_cli"), "run", "--dir", str(exported[0]),
         "--tag_set", "serve", "--signature_def", "serve_crops",
         "--inputs", f"images={tmp_path / 'crops.npy'}"],
        capture_output=True, text=True, env=ENV, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for key in ("keypoints", "keypoint_scores", "query"):
        assert f"Result for output key {key}:" in proc.stdout


def test_crops_parity_keras_saved_model_onnx(exported, loaded, tmp_path):
    _, model, config, _, _ = exported
    crops = _crops(config, 3, seed=1)
    h, w = config.model.image_size
    flip_pairs = DATASETS[config.data.dataset]["flip_pairs"] if config.test.flip_test else None
    coords, scores = predict_crops(model, tf.constant(crops), flip_pairs)
    keras_px = coords.numpy() * np.array([w, h], np.float32)
    out = model(tf.constant(crops), training=False)
    keras_query = readout(out["pred_logits"], out["pred_coords"])["query"].numpy()

    saved = {k: v.numpy() for k, v in
             loaded.signatures["serve_crops"](images=tf.constant(crops)).items()}
    onnx_path = str(tmp_path / "crops.onnx")
    onnx_export.convert(str(exported[0]), onnx_path, "serve_crops")
    ort = onnx_export.run(onnx_path, {"images": crops})

    for other in (saved, ort):
        assert np.abs(other["keypoints"] - keras_px).max() <= 1e-4
        assert np.abs(other["keypoint_scores"] - scores.numpy()).max() <= 1e-5
        np.testing.assert_array_equal(other["query"], keras_query)


def test_serving_default_equals_pose_estimator(exported, loaded, coco_mini):
    _, model, config, detector, det_config = exported
    image = _image(coco_mini)
    out = {k: v.numpy() for k, v in
           loaded.signatures["serving_default"](image=tf.constant(image)).items()}
    estimator = PoseEstimator(model, config,
                              detector=DetrPersonDetector(detector, det_config, 0.0))
    persons = estimator(image)
    n = int(out["num_persons"])
    assert n == len(persons) >= 2
    j = config.model.num_joints
    assert out["boxes"].shape == (n, 4) and out["keypoints"].shape == (n, j, 2)
    assert np.all(np.diff(out["scores"]) <= 0)  # best first
    persons = sorted(persons, key=lambda p: -p["score"])
    np.testing.assert_allclose(out["scores"], [p["score"] for p in persons], atol=1e-5)
    np.testing.assert_allclose(out["boxes"], [p["box"] for p in persons], atol=2e-3)
    ref = np.stack([p["keypoints"] for p in persons])
    # Image pixels: float32 rounding of the box can round a crop value the other way.
    np.testing.assert_allclose(out["keypoints"], ref[..., :2], atol=1e-2)
    np.testing.assert_allclose(out["keypoint_scores"], ref[..., 2], atol=1e-5)
    # box_scores: the detector's P(person) of each kept person, in the same order.
    np.testing.assert_allclose(out["box_scores"], [p["box_score"] for p in persons],
                               atol=1e-6)
    assert len(set(np.round(out["box_scores"], 4))) >= 2   # not one repeated value
    # ... and DetrPersonDetector's score of the box each person came from.
    det_boxes, det_scores = DetrPersonDetector(detector, det_config, 0.0)(image)
    det_xyxy = np.concatenate([det_boxes[:, :2], det_boxes[:, :2] + det_boxes[:, 2:]], 1)
    for box, score in zip(out["boxes"], out["box_scores"]):
        i = int(np.argmin(np.abs(det_xyxy - box).max(axis=1)))
        assert np.abs(det_xyxy[i] - box).max() <= 2e-3
        assert abs(det_scores[i] - score) <= 1e-6
    # rescoring: score = mean joint score (all joints count here) x box score.
    np.testing.assert_allclose(out["scores"],
                               out["keypoint_scores"].mean(axis=1) * out["box_scores"],
                               rtol=1e-5)


def test_serve_encoded_png_equals_uint8(loaded, coco_mini):
    image = _image(coco_mini)
    png = tf.io.encode_png(tf.constant(image))
    a = loaded.signatures["serving_default"](image=tf.constant(image))
    b = loaded.signatures["serve_encoded"](image_bytes=png)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_zero_persons(exported):
    _, model, config, detector, det_config = exported
    fns = PoseServing(model, config, detector, det_config, score_threshold=1.01).tf_functions()
    out = fns["serving_default"](tf.zeros((50, 70, 3), tf.uint8))
    j = config.model.num_joints
    assert int(out["num_persons"]) == 0
    assert out["boxes"].shape == (0, 4) and out["scores"].shape == (0,)
    assert out["box_scores"].shape == (0,)
    assert out["keypoints"].shape == (0, j, 2) and out["keypoint_scores"].shape == (0, j)


def test_box_to_center_scale_matches_numpy():
    from prtr_tf.data.transforms import box_to_center_scale
    boxes = np.array([[10.5, 20.25, 30.0, 90.0], [0, 0, 200.0, 50.0], [5, 5, 75.0, 100.0]])
    center, scale = box_to_center_scale_tf(tf.constant(boxes), 0.75)
    for i, box in enumerate(boxes):
        c, s = box_to_center_scale(box, 0.75)
        np.testing.assert_array_equal(center[i].numpy(), c)
        np.testing.assert_array_equal(scale[i].numpy(), s)


@pytest.mark.parametrize("seed", range(6))
def test_in_graph_oks_nms_equals_numpy(seed):
    rng = np.random.RandomState(seed)
    n = [0, 1, 2, 7, 15, 20][seed]
    # A few clusters of near-duplicate poses so that suppression happens.
    base = rng.uniform(0, 300, size=(3, 17, 2))
    kpts = base[rng.randint(0, 3, n)] + rng.normal(scale=[0.5, 3, 10, 10, 3, 1][seed],
                                                   size=(n, 17, 2))
    scores = rng.uniform(size=n)
    areas = rng.uniform(2000, 20000, size=n)
    db = [{"keypoints": np.concatenate([kpts[i], np.ones((17, 1))], 1), "score": scores[i],
           "area": areas[i]} for i in range(n)]
    expected = oks_nms(db, 0.9)
    got = oks_nms_tf(tf.constant(kpts, tf.float32), tf.constant(scores, tf.float32),
                     tf.constant(areas, tf.float32), 0.9).numpy()
    assert got.tolist() == expected
    if n >= 15:
        assert 0 < len(expected) < n  # the case exercises suppression


def test_matmul_resize_and_crops_match_tf(coco_mini):
    """The ONNX-compatible ("matmul") preprocessing equals tf.image.resize / Cropper up
    to the rounding of values within float error of a .5."""
    image = _image(coco_mini)
    for size, max_size in ((256, 384), (800, 1333)):
        a, _ = resize(tf.cast(image, tf.float32), tf.zeros((0, 4)), size, max_size)
        b = resize_matmul(tf.constant(image), size, max_size)
        assert a.shape == b.shape
        diff = np.abs(a.numpy() - b.numpy())
        assert diff.max() <= 1.0 and (diff > 0).mean() < 1e-2  # .5 ties (5/3 ratio: 0.2%)
    config = load_config("coco_res50_384x288")  # BGR input
    cropper = Cropper(config)
    boxes = tf.constant([[10., 20, 100, 200], [-30, 50, 300, 150], [300, 200, 400, 300]],
                        tf.float64)
    centers, scales = box_to_center_scale_tf(boxes, 288 / 384)
    a = tf.stack([cropper(image, centers[i], scales[i])[0] for i in range(3)]).numpy()
    b = crops_matmul(cropper, tf.constant(image), centers, scales).numpy()
    diff = np.abs(a - b)
    assert diff.max() <= 1.01 / 255 / min(config.data.std) and (diff > 1e-5).mean() < 1e-4


def test_onnx_full_pipeline(exported, loaded, coco_mini, tmp_path):
    """resize="matmul" (export/to_saved_model.py --onnx_compatible): tf2onnx converts
    serving_default; ONNX Runtime matches the SavedModel."""
    _, model, config, detector, det_config = exported
    serving = PoseServing(model, config, detector, det_config, score_threshold=0.0,
                          resize="matmul")
    export_saved_model(serving, str(tmp_path / "sm"))
    onnx_export.convert(str(tmp_path / "sm"), str(tmp_path / "full.onnx"), "serving_default")
    image = _image(coco_mini)
    ort = onnx_export.run(str(tmp_path / "full.onnx"), {"image": image})
    matmul = {k: v.numpy() for k, v in serving.tf_functions()["serving_default"](
        tf.constant(image)).items()}
    default = {k: v.numpy() for k, v in
               loaded.signatures["serving_default"](image=tf.constant(image)).items()}
    assert int(ort["num_persons"]) == int(matmul["num_persons"]) == int(default["num_persons"])
    # ONNX Runtime vs the same graph in TF: float differences only. The default
    # preprocessing vs "matmul": a few pixels of the detector input round the other way,
    # which this random detector (its box head scaled up, see `exported`) amplifies.
    # (box_scores: P(person) of the random detector moves by ~1.5% relative between the
    # two preprocessings: rtol 3e-2 there; ONNX Runtime vs TF 1e-4.) ONNX Runtime vs TF:
    # up to 0.0184 px on the boxes measured with onnxruntime 1.32 (the code before the
    # layout change gives the same), float rounding amplified by this random detector's
    # 100x box head: 0.05 px; box_scores up to 8.5e-4 relative (the same with the code
    # before the layout change): rtol 3e-3.
    for other, px, score_tol, box_rtol in ((ort, 5e-2, 1e-3, 3e-3),
                                           (default, 0.5, 3e-3, 3e-2)):
        np.testing.assert_allclose(other["boxes"], matmul["boxes"], atol=px)
        np.testing.assert_allclose(other["keypoints"], matmul["keypoints"], atol=px)
        np.testing.assert_allclose(other["scores"], matmul["scores"], atol=1e-4)
        np.testing.assert_allclose(other["box_scores"], matmul["box_scores"], rtol=box_rtol)
        np.testing.assert_allclose(other["keypoint_scores"], matmul["keypoint_scores"],
                                   atol=score_tol)


def test_onnx_failure_names_the_flag_and_writes_nothing(tmp_path):
    """serving_default of a SavedModel exported without --onnx_compatible does not
    convert (its antialiased resize, the TF op ScaleAndTranslate, has no ONNX
    conversion): the error names the op, says to re-export with --onnx_compatible, and
    no .onnx is left. (A SavedModel of that one op: the whole pipeline's failure took
    115 s to reach the same error.)"""

    class Resize(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
        def serve(self, image):
            return {"resized": tf.image.resize(image, [16, 16], antialias=True)}

    module = Resize()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    output = tmp_path / "out" / "full.onnx"
    output.parent.mkdir()
    with pytest.raises(onnx_export.OnnxConversionError, match="--onnx_compatible") as info:
        onnx_export.convert(str(tmp_path / "sm"), str(output), "serving_default")
    assert "ScaleAndTranslate" in str(info.value)
    assert os.listdir(output.parent) == []  # neither full.onnx nor a temporary file


def test_detection_threshold_and_max_persons(exported, coco_mini):
    """The in-graph box selection: DetrPersonDetector's boxes (>= threshold), best first,
    at most max_persons."""
    _, model, config, detector, det_config = exported
    image = _image(coco_mini)
    boxes, scores = DetrPersonDetector(detector, det_config, 0.0)(image)
    order = np.argsort(-scores, kind="stable")
    threshold = float(np.sort(scores)[len(scores) // 2])
    for thr, cap in ((threshold, 20), (0.0, 3)):
        serving = PoseServing(model, config, detector, det_config, score_threshold=thr,
                              max_persons=cap)
        got_boxes, got_scores = tf.function(serving._detect)(tf.constant(image))
        keep = [i for i in order if scores[i] >= thr][:cap]
        assert 0 < len(keep) < len(scores)
        np.testing.assert_allclose(got_scores.numpy(), scores[keep], atol=1e-6)
        np.testing.assert_allclose(got_boxes.numpy(), boxes[keep], atol=1e-3)


def test_end_to_end_serving_checks_its_image():
    """The end-to-end serving module has the same input checks (`ServingModule`)."""
    from prtr_tf.models.registry import build_model
    from prtr_tf.models.end_to_end.serving import EndToEndServing
    config = load_config("e2e_tiny")
    fn = EndToEndServing(build_model(config), config).tf_functions()["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"got a tensor of shape\] \[2 40 60 3\]"):
        fn(tf.fill((2, 40, 60, 3), tf.constant(90, tf.uint8)))
    out = fn(tf.fill((40, 60, 3), tf.constant(90, tf.uint8)))
    assert out["keypoints"].shape[1:] == (config.model.num_joints, 2)
