"""predict.py (the image / folder / video CLI: prtr_tf.cli.predict, prtr_tf.inference.media,
prtr_tf.data.boxes_json) and prtr_tf.drawing.visualize.

The CLI runs in subprocesses on tiny models with random weights; the drawing and
figure functions run in-process on the same tiny keypoint model.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from prtr_tf.inference import media  # noqa: E402
from prtr_tf.cli import predict  # noqa: E402  (flags are defined only when it runs)
from prtr_tf.data.boxes_json import load_boxes_json  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random weights of the tiny keypoint model and the tiny DETR, saved to tmp."""
    from prtr_tf.config import load_config
    from prtr_tf.models.keypoint.model import build_model
    from prtr_tf.models.detector.model import build_detector

    root = tmp_path_factory.mktemp("weights")
    model = build_model(load_config(str(REPO / "configs/synthetic_tiny.py")).model)
    model.save_weights(str(root / "kpt.weights.h5"))
    det = build_detector(load_config(str(REPO / "configs/synthetic_detector_tiny.py")).model)
    det.save_weights(str(root / "det.weights.h5"))
    return {"kpt": str(root / "kpt.weights.h5"), "det": str(root / "det.weights.h5"),
            "model": model}


def _exif_jpeg(path, size=(120, 80)):
    """A JPEG stored as 120x80 (W x H) with EXIF orientation 6 (displayed 80x120):
    left half red, right half blue as stored."""
    array = np.zeros((size[1], size[0], 3), np.uint8)
    array[:, : size[0] // 2] = (255, 0, 0)
    array[:, size[0] // 2:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(array).save(path, exif=exif.tobytes(), quality=95)


def _inputs(folder, coco_image):
    folder.mkdir()
    good = {}
    good["coco.jpg"] = folder / "coco.jpg"
    good["coco.jpg"].write_bytes(coco_image.read_bytes())
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 70), np.uint8), "L").save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 255, (60, 100, 4), np.uint8), "RGBA").save(
        folder / "rgba.png")
    sixteen = (rng.integers(0, 65535, (64, 96))).astype(np.uint16)
    Image.fromarray(sixteen).save(folder / "deep16.png")
    _exif_jpeg(folder / "rotated.jpg")
    for name in ("gray.png", "rgba.png", "deep16.png", "rotated.jpg"):
        good[name] = folder / name
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not an image\n")
    (folder / "clip.mp4").write_bytes(b"not a video" * 10)
    # A "video" imageio can read without a video backend (GIF content: its Pillow
    # plugin picks it up whatever the extension): 3 frames.
    frames = [Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)) for i in range(3)]
    frames[0].save(folder / "anim.mp4", format="GIF", save_all=True,
                   append_images=frames[1:], duration=100)
    return good, ("empty.jpg", "notes.jpg", "clip.mp4")


def _run(*args):
    return subprocess.run([sys.executable, str(REPO / "predict.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


# predict.py runs stay here, marked cli: they share the module fixture `weights` with
# in-process tests (the usage error without a model: tests/cli/test_predict.py).
@pytest.mark.cli
def test_predict_folder_with_detector(tmp_path, coco_mini, weights):
    coco_image = sorted((coco_mini / "images").glob("*.jpg"))[0]
    good, bad = _inputs(tmp_path / "in", coco_image)
    out = tmp_path / "out"
    proc = _run(f"--source={tmp_path / 'in'}", f"--output={out}",
                "--config=configs/synthetic_tiny.py", f"--checkpoint={weights['kpt']}",
                "--detector_config=configs/synthetic_detector_tiny.py",
                f"--detector_checkpoint={weights['det']}", "--kpt_thr=0.0", "--max_frames=2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    total = len(good) + len(bad) + 1
    assert f"[{total}/{total}]" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    frames = [r for r in results if os.path.basename(r["file"]) == "anim.mp4"]
    assert [r["frame"] for r in frames] == [0, 1]                  # --max_frames=2
    for r in frames:
        assert (r["width"], r["height"]) == (50, 40) and r["persons"]
        assert Image.open(out / r["annotated"]).size == (50, 40)
    by_name = {os.path.basename(r["file"]): r for r in results if "frame" not in r}
    assert set(by_name) == set(good)
    for name, path in good.items():
        entry = by_name[name]
        assert entry["persons"], name           # thresholds 0: every DETR query is a box
        annotated = Image.open(out / entry["annotated"])
        assert annotated.size == (entry["width"], entry["height"]), name
        for person in entry["persons"]:
            assert len(person["box"]) == 4
            kpts = np.asarray(person["keypoints"])
            assert kpts.shape == (17, 3) and np.isfinite(kpts).all()
    # EXIF orientation 6: stored 120x80, processed and reported as 80x120.
    assert (by_name["rotated.jpg"]["width"], by_name["rotated.jpg"]["height"]) == (80, 120)
    # Each bad file is reported by name with its reason, after the others ran.
    for name in bad:
        assert name in proc.stderr
    assert "empty file (0 bytes)" in proc.stderr
    assert "not an image" in proc.stderr
    assert "video" in proc.stderr
    failures = {os.path.basename(f["file"]) for f in
                json.loads((out / "failures.json").read_text())}
    assert failures == set(bad)


@pytest.mark.cli
def test_predict_boxes_json_max_side_and_exif(tmp_path, coco_mini, weights):
    coco_image = sorted((coco_mini / "images").glob("*.jpg"))[0]
    image_id = int(coco_image.stem)
    detections = json.loads((coco_mini / "person_detections.json").read_text())
    given = [d for d in detections if d["image_id"] == image_id][:2]
    assert given
    src = tmp_path / "in"
    src.mkdir()
    (src / coco_image.name).write_bytes(coco_image.read_bytes())
    _exif_jpeg(src / "rotated.jpg")
    (src / "nobox.png").write_bytes((src / coco_image.name).read_bytes())
    # Rotated image: 80x120 as displayed; this box's crop lies inside it but reaches
    # below y = 80, outside the image as stored (120x80).
    boxes = {coco_image.name: [d["bbox"] + [d["score"]] for d in given],
             "rotated.jpg": [[20.0, 30.0, 40.0, 60.0, 0.8]]}
    boxes_json = tmp_path / "boxes.json"
    boxes_json.write_text(json.dumps(boxes))
    out = tmp_path / "out"
    proc = _run(f"--source={src}/*", f"--output={out}", "--config=configs/synthetic_tiny.py",
                f"--checkpoint={weights['kpt']}", f"--boxes_json={boxes_json}",
                "--max_side=100", "--flip_test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "downscaled" in proc.stdout
    results = {os.path.basename(r["file"]): r for r in
               json.loads((out / "results.json").read_text())}
    assert set(results) == {coco_image.name, "rotated.jpg", "nobox.png"}
    assert results["nobox.png"]["persons"] == []
    # The given boxes are used, mapped back from the 100-pixel working size.
    width, height = Image.open(coco_image).size
    entry = results[coco_image.name]
    assert (entry["width"], entry["height"]) == (width, height)
    assert max(Image.open(out / entry["annotated"]).size) == 100
    expected = [[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in given)]
    assert entry["persons"]
    for person in entry["persons"]:
        assert any(np.allclose(person["box"], e, atol=0.02) for e in expected)
        assert any(np.isclose(person["box_score"], d["score"]) for d in given)
    rotated = results["rotated.jpg"]
    assert (rotated["width"], rotated["height"]) == (80, 120)
    (person,) = rotated["persons"]
    assert np.allclose(person["box"], [20, 30, 60, 90], atol=0.02)
    assert person["box_score"] == pytest.approx(0.8)
    kpts = np.asarray(person["keypoints"])
    assert (kpts[:, 0] >= 0).all() and (kpts[:, 0] <= 80).all()
    assert (kpts[:, 1] >= 0).all() and (kpts[:, 1] <= 120).all()


# ------------------------------------------------- exported models (--saved_model / --tflite)

# The tiny keypoint config with every joint counting in the rescoring (random weights
# give joint scores ~1/J < 0.2, which would make every person score 0: ties).
_CONFIG_FILE = """
from prtr_tf.config import load_config


def get_config():
    c = load_config("synthetic_tiny")
    c.test.in_vis_thre = 0.0
    return c
"""
_DEFAULTS = dict(source=None, output=None, config=None, checkpoint=None, detector_config=None,
                 detector_checkpoint=None, boxes_json=None, kpt_thr=0.3, box_thr=None,
                 flip_test=None, max_side=4096, max_pixels=None, max_frames=0,
                 saved_model=None, tflite=None, detector_tflite=None, precision="float32")


def _main(**values):
    """prtr_tf.cli.predict.main in-process with these flag values (the others at their
    defaults)."""
    from types import SimpleNamespace
    unknown = set(values) - set(_DEFAULTS)
    assert not unknown, unknown
    flags_ = {k: SimpleNamespace(value=v) for k, v in {**_DEFAULTS, **values}.items()}
    return predict.main(["predict.py"], flags_)


def test_flag_defaults_match_the_script():
    """_DEFAULTS above mirrors prtr_tf.cli.predict.define_flags (checked in a fresh
    process)."""
    code = ("import json; from prtr_tf.cli import predict; "
            "f = predict.define_flags(); print(json.dumps({k: h.default for k, h in "
            "f.items()}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == _DEFAULTS


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Tiny random models as Keras weights, a SavedModel (export/to_saved_model.py's
    code), keypoint .tflite files (flip test, as the config) and a detector .tflite at
    the DETR input size of the first test image, plus two coco_mini images with boxes."""
    import keras

    from prtr_tf.export import tflite
    from prtr_tf.config import load_config
    from prtr_tf.models.detector.resize import resize_size
    from prtr_tf.models.keypoint.model import build_model
    from prtr_tf.models.detector.model import build_detector
    from prtr_tf.models.keypoint.serving import PoseServing
    from prtr_tf.serving.saved_model import export_saved_model

    from tests.conftest import require_shared

    coco_mini = require_shared("data", "coco_mini")
    tmp = tmp_path_factory.mktemp("exported")
    (tmp / "tiny_all_joints.py").write_text(_CONFIG_FILE)
    config = load_config(str(tmp / "tiny_all_joints.py"))
    det_config = load_config("synthetic_detector_tiny")
    keras.utils.set_random_seed(3)
    model = build_model(config.model)
    model.save_weights(str(tmp / "kp.weights.h5"))
    detector = build_detector(det_config.model)
    # Spread the random detector's boxes and scores (as tests/serving/test_saved_model.py).
    detector.bbox_embed.weights[-2].assign(detector.bbox_embed.weights[-2] * 100.0)
    for w in detector.class_embed.weights:
        w.assign(w * 10.0)
    detector.save_weights(str(tmp / "det.weights.h5"))
    serving = PoseServing(model, config, detector, det_config, score_threshold=0.0,
                          max_persons=20)
    export_saved_model(serving, str(tmp / "saved_model"))
    assert config.test.flip_test
    tflite.save_tflite(tflite.convert_keypoint_model(model, config, "fp32", flip_test=True,
                                                     batch_size=2), str(tmp / "kp.tflite"))
    tflite.save_tflite(tflite.convert_keypoint_model(model, config, "fp32"),
                       str(tmp / "kp_noflip.tflite"))
    src = tmp / "images"
    src.mkdir()
    images = sorted((coco_mini / "images").glob("*.jpg"))[:2]
    for path in images:
        (src / path.name).write_bytes(path.read_bytes())
    first = np.asarray(Image.open(images[0]))
    size = [int(v) for v in resize_size(first.shape[0], first.shape[1],
                                        det_config.data.test_size, det_config.data.max_size)]
    tflite.save_tflite(tflite.convert_detector(detector, det_config, size, "fp32"),
                       str(tmp / "det.tflite"))
    detections = json.loads((coco_mini / "person_detections.json").read_text())
    boxes = {p.name: [d["bbox"] + [d["score"]] for d in detections
                      if d["image_id"] == int(p.stem)][:5] for p in images}
    assert all(boxes.values())
    (tmp / "boxes.json").write_text(json.dumps(boxes))
    return {"dir": tmp, "config": config, "det_config": det_config, "src": src,
            "images": images, "model": model, "detector": detector}


def _results(out):
    entries = json.loads((out / "results.json").read_text())
    return {os.path.basename(e["file"]): e for e in entries}


def _persons_by_score(entry):
    return sorted(entry["persons"], key=lambda p: -p["score"])


def _assert_same_persons(got, ref, kpt_atol):
    assert set(got) == set(ref)
    for name in ref:
        a, b = _persons_by_score(got[name]), _persons_by_score(ref[name])
        assert len(a) == len(b) >= 1, name
        ka = np.array([p["keypoints"] for p in a])
        kb = np.array([p["keypoints"] for p in b])
        np.testing.assert_allclose(ka[..., :2], kb[..., :2], atol=kpt_atol, rtol=0)
        np.testing.assert_allclose(ka[..., 2], kb[..., 2], atol=1e-5)
        np.testing.assert_allclose([p["box"] for p in a], [p["box"] for p in b], atol=0.011)
        np.testing.assert_allclose([p["score"] for p in a], [p["score"] for p in b],
                                   atol=1e-5)


def test_saved_model_equals_checkpoint(exported, tmp_path):
    e = exported
    assert _main(source=str(e["src"]), output=str(tmp_path / "ckpt"), config=e["config"],
                 checkpoint=str(e["dir"] / "kp.weights.h5"), detector_config=e["det_config"],
                 detector_checkpoint=str(e["dir"] / "det.weights.h5"), box_thr=0.0) == 0
    assert _main(source=str(e["src"]), output=str(tmp_path / "sm"),
                 saved_model=str(e["dir"] / "saved_model")) == 0
    ref, got = _results(tmp_path / "ckpt"), _results(tmp_path / "sm")
    assert all(len(r["persons"]) >= 2 for r in ref.values())
    # results.json rounds coordinates to 0.01 px: equal up to that rounding.
    _assert_same_persons(got, ref, kpt_atol=0.01 + 1e-6)
    for name, entry in got.items():
        # The SavedModel's box_scores output: the Keras detector's score of each person.
        a, b = _persons_by_score(entry), _persons_by_score(ref[name])
        np.testing.assert_allclose([p["box_score"] for p in a], [p["box_score"] for p in b],
                                   atol=1e-6)
        assert (tmp_path / "sm" / entry["annotated"]).is_file()


def test_old_saved_model_without_box_scores(exported, tmp_path):
    """A SavedModel whose serving_default lacks box_scores (exported before it existed):
    box_score null, one warning naming the folder; everything else as before."""
    from prtr_tf.serving.backends import SavedModelEstimator
    from prtr_tf.models.keypoint.serving import PoseServing
    from prtr_tf.serving.saved_model import export_saved_model

    class OldServing(PoseServing):
        def serve_image(self, image):
            out = super().serve_image(image)
            del out["box_scores"]
            return out

    e = exported
    old_dir = str(tmp_path / "old_saved_model")
    export_saved_model(OldServing(e["model"], e["config"], e["detector"], e["det_config"],
                                  score_threshold=0.0, max_persons=20), old_dir)
    with pytest.warns(UserWarning, match=r"old_saved_model'?: serving_default has no "
                                         r"'box_scores' output") as record:
        old = SavedModelEstimator(old_dir)
    assert len(record) == 1
    image = np.asarray(Image.open(e["images"][0]).convert("RGB"))
    new = SavedModelEstimator(str(e["dir"] / "saved_model"))(image)
    got = old(image)
    assert len(got) == len(new) >= 2
    assert all(p["box_score"] is None for p in got)
    np.testing.assert_allclose([p["score"] for p in got], [p["score"] for p in new],
                               atol=1e-6)


def test_exported_backends_before_rounding(exported):
    """The estimators themselves (no JSON rounding): SavedModel and TFLite fp32 vs
    the Keras PoseEstimator, keypoints within 1e-3 image pixels."""
    from prtr_tf.models.detector.predict import DetrPersonDetector
    from prtr_tf.serving.estimator import PoseEstimator
    from prtr_tf.serving.backends import SavedModelEstimator, TFLiteEstimator

    e = exported
    image = np.asarray(Image.open(e["images"][0]).convert("RGB"))
    keras_det = DetrPersonDetector(e["detector"], e["det_config"], 0.0)
    ref = PoseEstimator(e["model"], e["config"], detector=keras_det)(image)
    saved = SavedModelEstimator(str(e["dir"] / "saved_model"))(image)
    lite = TFLiteEstimator(str(e["dir"] / "kp.tflite"), detector=keras_det,
                           box_threshold=0.0)(image)
    ref = sorted(ref, key=lambda p: -p["score"])
    assert len(ref) >= 2
    for other in (saved, lite):
        other = sorted(other, key=lambda p: -p["score"])
        assert len(other) == len(ref)
        dev = np.abs(np.array([p["keypoints"][:, :2] for p in other])
                     - np.array([p["keypoints"][:, :2] for p in ref])).max()
        print(f"max keypoint deviation {dev:.2e} px")
        assert dev <= 1e-3
        np.testing.assert_allclose([p["keypoints"][:, 2] for p in other],
                                   [p["keypoints"][:, 2] for p in ref], atol=1e-5)
        np.testing.assert_allclose([p["box_score"] for p in other],
                                   [p["box_score"] for p in ref], atol=1e-6)


def test_tflite_equals_checkpoint(exported, tmp_path):
    e = exported
    boxes = str(e["dir"] / "boxes.json")
    assert _main(source=str(e["src"]), output=str(tmp_path / "ckpt"), config=e["config"],
                 checkpoint=str(e["dir"] / "kp.weights.h5"), boxes_json=boxes) == 0
    # No --config: crop size, normalisation, flip test and thresholds from the metadata.
    assert _main(source=str(e["src"]), output=str(tmp_path / "lite"),
                 tflite=str(e["dir"] / "kp.tflite"), boxes_json=boxes) == 0
    ref = _results(tmp_path / "ckpt")
    _assert_same_persons(_results(tmp_path / "lite"), ref, kpt_atol=0.01 + 1e-6)
    for entry in ref.values():                      # the given boxes were used
        for person in entry["persons"]:
            assert person["box_score"] is not None
    # Keypoint .tflite + the Keras detector, and + the detector .tflite (exported at the
    # first image's DETR input size, so that its input equals DetrPersonDetector's).
    first = {e["images"][0].name}
    assert _main(source=str(e["images"][0]), output=str(tmp_path / "ckpt_det"),
                 config=e["config"], checkpoint=str(e["dir"] / "kp.weights.h5"),
                 detector_config=e["det_config"],
                 detector_checkpoint=str(e["dir"] / "det.weights.h5"), box_thr=0.0) == 0
    ref = _results(tmp_path / "ckpt_det")
    assert set(ref) == first and len(ref[e["images"][0].name]["persons"]) >= 2
    assert _main(source=str(e["images"][0]), output=str(tmp_path / "lite_det"),
                 tflite=str(e["dir"] / "kp.tflite"), config=e["config"],
                 detector_config=e["det_config"],
                 detector_checkpoint=str(e["dir"] / "det.weights.h5"), box_thr=0.0) == 0
    _assert_same_persons(_results(tmp_path / "lite_det"), ref, kpt_atol=0.01 + 1e-6)
    assert _main(source=str(e["images"][0]), output=str(tmp_path / "lite_lite"),
                 tflite=str(e["dir"] / "kp.tflite"),
                 detector_tflite=str(e["dir"] / "det.tflite"), box_thr=0.0) == 0
    got = _results(tmp_path / "lite_lite")
    # Detector fp32 TFLite vs Keras: box coordinates within ~1e-3 px, so the crops
    # (rounded to integers) may differ in a pixel: a looser bound for keypoints.
    _assert_same_persons(got, ref, kpt_atol=0.05)


def test_exported_usage_errors(exported, tmp_path):
    from absl import app

    e = exported
    src, out = str(e["src"]), str(tmp_path / "o")
    kp, sm = str(e["dir"] / "kp.tflite"), str(e["dir"] / "saved_model")
    cases = [
        (dict(saved_model=sm, checkpoint="x.weights.h5"), "drop --checkpoint"),
        (dict(saved_model=sm, boxes_json="b.json", config=e["config"]),
         "drop --boxes_json, --config"),
        (dict(saved_model=sm, flip_test=True), "drop --flip_test"),
        (dict(saved_model=str(tmp_path / "nowhere")), "nowhere'?: no such folder"),
        (dict(saved_model=str(e["dir"])), "has no saved_model.pb"),
        (dict(tflite=kp), "person boxes are needed: .*--detector_tflite"),
        (dict(tflite=kp, checkpoint="x.weights.h5", boxes_json="b.json"), "not both"),
        (dict(tflite=str(tmp_path / "missing.tflite"), boxes_json=str(e["dir"] / "boxes.json")),
         "missing.tflite'?: no such file"),
        (dict(tflite=str(e["dir"] / "boxes.json"), boxes_json=str(e["dir"] / "boxes.json")),
         "is not a TFLite model"),
        (dict(tflite=str(e["dir"] / "det.tflite"), boxes_json=str(e["dir"] / "boxes.json")),
         "no prtr_tf.keypoints metadata"),
        (dict(tflite=kp, boxes_json=str(e["dir"] / "boxes.json"),
              detector_tflite=str(e["dir"] / "det.tflite")), "one source of person boxes"),
        (dict(config=e["config"], checkpoint="x.weights.h5",
              detector_tflite=str(e["dir"] / "det.tflite")), "goes with --tflite"),
        (dict(tflite=kp, boxes_json=str(e["dir"] / "boxes.json"), flip_test=False),
         "exported with flip_test=True"),
        (dict(tflite=kp, boxes_json=str(e["dir"] / "boxes.json"),
              config=load_mpii_config()), "data.dataset = mpii but"),
    ]
    for values, message in cases:
        with pytest.raises(app.UsageError, match=message):
            _main(source=src, output=out, **values)


def load_mpii_config():
    from prtr_tf.config import load_config
    c = load_config("synthetic_tiny")
    c.data.dataset = "mpii"
    return c


def test_load_image_conversions(tmp_path):
    sixteen = np.array([[0, 257 * 128, 65535]], np.uint16).repeat(4, axis=0)
    Image.fromarray(sixteen).save(tmp_path / "a.png")
    rgb, size, scale, notes = media.load_image(str(tmp_path / "a.png"))
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 3, 3)
    assert rgb[0, :, 0].tolist() == [0, 128, 255] and "16-bit" in notes[0]

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)                 # opaque: kept; transparent: white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    rgb = media.load_image(str(tmp_path / "b.png"))[0]
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[1, 1].tolist() == [255, 255, 255]

    _exif_jpeg(tmp_path / "r.jpg")
    rgb, size, scale, notes = media.load_image(str(tmp_path / "r.jpg"))
    assert rgb.shape == (120, 80, 3) and size == (80, 120) and scale == (1.0, 1.0)
    # Orientation 6 turns the stored image 90 degrees clockwise: left (red) goes on top.
    assert rgb[5, 40, 0] > 200 and rgb[5, 40, 2] < 60
    assert rgb[-5, 40, 2] > 200 and rgb[-5, 40, 0] < 60

    rgb, size, scale, notes = media.load_image(str(tmp_path / "r.jpg"), max_side=60)
    assert rgb.shape == (60, 40, 3) and size == (80, 120) and scale == (2.0, 2.0)


def test_load_image_rejections(tmp_path, monkeypatch):
    (tmp_path / "e.png").write_bytes(b"")
    (tmp_path / "t.png").write_text("hello")
    Image.new("RGB", (300, 300)).save(tmp_path / "big.png")
    with pytest.raises(media.InputError, match="0 bytes"):
        media.load_image(str(tmp_path / "e.png"))
    with pytest.raises(media.InputError, match="not an image"):
        media.load_image(str(tmp_path / "t.png"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(media.InputError, match="decompression-bomb"):
        media.load_image(str(tmp_path / "big.png"))
    (tmp_path / "v.mp4").write_bytes(b"junk" * 10)
    with pytest.raises(media.InputError, match="video"):
        list(media.iter_video_frames(str(tmp_path / "v.mp4")))


def test_boxes_json_coco_layout(tmp_path, coco_mini):
    lookup = load_boxes_json(str(coco_mini / "person_detections.json"))
    detections = json.loads((coco_mini / "person_detections.json").read_text())
    image_id = detections[0]["image_id"]
    mine = [d for d in detections if d["image_id"] == image_id and d.get("category_id", 1) == 1]
    boxes, scores = lookup(f"some/dir/{image_id:012d}.jpg")
    assert boxes.shape == (len(mine), 4)
    assert np.allclose(boxes, [d["bbox"] for d in mine])
    assert np.allclose(scores, [d["score"] for d in mine])
    assert lookup("unrelated.jpg") is None


def test_draw_poses_pixels():
    from prtr_tf.drawing.visualize import draw_poses

    image = np.zeros((200, 200, 3), np.uint8)
    kpts = np.zeros((17, 3))
    kpts[:] = (150, 20, 0.1)                        # everything else below threshold
    kpts[5] = (50, 50, 0.9)                         # left_shoulder, visible
    kpts[6] = (120, 120, 0.1)                       # right_shoulder, below threshold
    person = {"box": [10, 10, 190, 190], "score": 0.7, "keypoints": kpts}
    out = np.asarray(draw_poses(image, [person], [(5, 6)], kpt_thr=0.3))
    assert out.shape == image.shape
    assert out[50, 50].any()                        # joint drawn where it is
    # Below kpt_thr: drawn faint (the model's guess stays visible), as is the limb to it.
    for y, x in ((120, 120), (85, 85), (20, 150)):
        assert 0 < out[y, x].max() < 0.6 * out[50, 50].max()
    hidden = np.asarray(draw_poses(image, [person], [(5, 6)], kpt_thr=0.3, faint=0.0))
    assert hidden[50, 50].any()
    assert not hidden[120, 120].any() and not hidden[85, 85].any()  # faint=0: not drawn
    assert not hidden[20, 150].any()
    assert out[100, 10].any()                       # box outline
    assert not image.any()                          # input untouched
    # box_thr drops the whole person.
    assert not np.asarray(draw_poses(image, [person], [(5, 6)], box_thr=0.8)).any()
    # Left and right limbs get different colours.
    kpts2 = np.zeros((17, 3))
    kpts2[:, 2] = 0.0
    kpts2[7], kpts2[9] = (30, 100, 1), (30, 180, 1)        # left elbow -> left wrist
    kpts2[8], kpts2[10] = (170, 100, 1), (170, 180, 1)     # right elbow -> right wrist
    out = np.asarray(draw_poses(image, [{"score": 1.0, "keypoints": kpts2}],
                                [(7, 9), (8, 10)]))
    assert out[140, 30].any() and out[140, 170].any()
    assert out[140, 30].tolist() != out[140, 170].tolist()


def test_figures(tmp_path, weights):
    import tensorflow as tf

    from prtr_tf.config import load_config
    from prtr_tf.models.keypoint.readout import readout
    from prtr_tf.drawing.visualize import (denormalize_crop, plot_decoder_refinement, plot_query_class_distribution)

    config = load_config(str(REPO / "configs/synthetic_tiny.py"))
    model = weights["model"]
    crops = tf.random.stateless_normal((5, 128, 96, 3), seed=(1, 2))
    out = {k: v.numpy() for k, v in model(crops, training=False).items()}
    num_layers = config.model.dec_layers

    path = tmp_path / "refine.png"
    traj = plot_decoder_refinement(denormalize_crop(crops[1].numpy(), config), out, str(path),
                                   index=1)
    assert path.stat().st_size > 1000 and Image.open(path).format == "PNG"
    assert traj["coords"].shape == (17, num_layers, 2)          # L points per joint
    query = readout(out["pred_logits"][1:2], out["pred_coords"][1:2])["query"].numpy()[0]
    np.testing.assert_array_equal(traj["query"], query)
    np.testing.assert_allclose(traj["coords"][:, -1], out["pred_coords"][1, query])
    np.testing.assert_allclose(traj["coords"][:, 0], out["aux_pred_coords"][0, 1, query])
    np.testing.assert_allclose(traj["coords_px"][:, -1], out["pred_coords"][1, query] * [96, 128],
                               rtol=1e-5)

    for kind in ("heatmap", "bar"):
        path = tmp_path / f"classes_{kind}.png"
        counts = plot_query_class_distribution([out["pred_logits"][:3], out["pred_logits"][3:]],
                                               str(path), kind=kind)
        assert path.stat().st_size > 1000 and Image.open(path).format == "PNG"
        assert counts.shape == (config.model.num_queries, 18)
        assert (counts.sum(axis=1) == 5).all()
        top = out["pred_logits"].argmax(-1)
        for q in range(counts.shape[0]):
            assert counts[q, top[0, q]] >= 1
            assert counts[q].tolist() == np.bincount(top[:, q], minlength=18).tolist()


@pytest.mark.cli
def test_exit_code_when_every_file_fails(tmp_path, weights):
    src = tmp_path / "in"
    src.mkdir()
    (src / "empty.png").write_bytes(b"")
    proc = _run(f"--source={src}", f"--output={tmp_path / 'out'}",
                "--config=configs/synthetic_tiny.py", f"--checkpoint={weights['kpt']}",
                f"--boxes_json={tmp_path / 'boxes.json'}")
    assert proc.returncode == 2 and "boxes.json" in proc.stderr      # usage error
    (tmp_path / "boxes.json").write_text("{}")
    proc = _run(f"--source={src}", f"--output={tmp_path / 'out'}",
                "--config=configs/synthetic_tiny.py", f"--checkpoint={weights['kpt']}",
                f"--boxes_json={tmp_path / 'boxes.json'}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "empty.png: empty file (0 bytes)" in proc.stderr
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == []
