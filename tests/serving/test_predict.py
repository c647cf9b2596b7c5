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

from prtr_tf.inference import media, video  # noqa: E402
from prtr_tf.inference.synthetic_clip import make_clip  # noqa: E402
from prtr_tf.cli import predict  # noqa: E402  (flags are defined only when it runs)
from tests.inference.test_media_drawing import _exif_jpeg  # noqa: E402


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
    # A "video" of GIF content under an .mp4 name (FFmpeg probes the content): 3 frames.
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
                f"--detector_checkpoint={weights['det']}", "--kpt_thr=0.0", "--max_frames=2",
                "--box_thr=0.0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    total = len(good) + len(bad) + 1
    assert f"[{total}/{total}]" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    # A video in the folder: an annotated mp4 of --max_frames=2 frames and its JSON Lines.
    (anim,) = [r for r in results if os.path.basename(r["file"]) == "anim.mp4"]
    assert (anim["frames"], anim["width"], anim["height"]) == (2, 50, 40)
    with video.open_source(str(out / anim["annotated"])) as source:
        assert [f.rgb.shape for f in source] == [(40, 50, 3)] * 2
    lines = [json.loads(x) for x in (out / anim["jsonl"]).read_text().splitlines()]
    assert [x["frame"] for x in lines] == [0, 1] and all(x["persons"] for x in lines)
    by_name = {os.path.basename(r["file"]): r for r in results if "frames" not in r}
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
                 saved_model=None, tflite=None, detector_tflite=None, precision="float32",
                 sequence=False, fps=None, batch=predict.DEFAULT_BATCH, track=False,
                 track_high_thr=0.5, track_low_thr=0.1, track_new_thr=0.6,
                 track_match_thr=0.2, track_max_lost=30, smooth=False,
                 smooth_min_cutoff=1.0, smooth_beta=2.0, show=False, overwrite=False, model=None, detector=None,
                 force_config=False)


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


def test_exported_backends_on_video(exported, tmp_path):
    # The SavedModel and the TFLite models (keypoint + detector .tflite: batched crops
    # and detector calls) on an mp4 with --track (--smooth on TFLite): the annotated video
    # and a JSONL record per frame, with track ids (rules out a backend the video path
    # cannot run, or one whose persons the tracker cannot read).
    from tests.inference.test_predict_video import SIZE, check_video_outputs, write_clip
    clip = write_clip(tmp_path / "walk.mp4", make_clip(num_frames=5, size=SIZE))
    e = exported
    for name, values in (("sm", dict(saved_model=str(e["dir"] / "saved_model"))),
                         ("lite", dict(tflite=str(e["dir"] / "kp.tflite"), smooth=True,
                                       detector_tflite=str(e["dir"] / "det.tflite")))):
        # Track thresholds 0: the random detector's box scores are arbitrary.
        assert _main(source=clip, output=str(tmp_path / name), track=True, batch=3,
                     track_high_thr=0.0, track_low_thr=0.0, track_new_thr=0.0, **values) == 0
        records = check_video_outputs(str(tmp_path / name), "walk", 5)
        assert any(p["track_id"] is not None for r in records for p in r["persons"]), name


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
    (tmp_path / "v.mp4").write_bytes(b"junk" * 10)   # videos: PyAV (prtr_tf.inference.video)
    with pytest.raises(video.SourceError, match="not a readable video"):
        video.open_source(str(tmp_path / "v.mp4"))


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
