"""predict.py on videos (`prtr_tf.inference.video_predict`, `prtr_tf.cli.predict`): an
annotated mp4 and per-frame JSON Lines from a generated clip of moving stick figures
(`prtr_tf.inference.synthetic_clip`), tracking through the whole prediction path,
batched frames, a truncated video.

Models: the tiny keypoint model and the tiny DETR with random weights (the detector's
class head set to P(person) = 0.9 for every query). The SavedModel and TFLite
backends run on a clip in tests/serving/test_predict.py
(``test_exported_backends_on_video``, its export fixture); the absent webcam in
tests/cli/test_predict.py.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from prtr_tf.inference.synthetic_clip import detections, make_clip
from prtr_tf.inference.tracking import PoseTracker, count_id_switches
from prtr_tf.inference.video import open_source
from prtr_tf.inference.video_out import VideoWriter
from prtr_tf.inference.video_predict import VideoOptions, output_stem, predict_video
from tests.conftest import REPO

FRAMES, SIZE, FPS = 24, (240, 144), 15.0
CLI_FRAMES = 10
DETECTOR_CONFIG = """
from prtr_tf.config import load_config


def get_config():
    c = load_config("synthetic_detector_tiny")
    c.model.num_queries = 2
    return c
"""


def write_clip(path, clip):
    with VideoWriter(path, fps=clip.fps) as writer:
        for frame in clip.frames:
            writer.write(frame)
    return str(path)


def check_video_outputs(folder, stem, frames, fps=FPS, size=SIZE, times=True):
    """The annotated mp4 read back (frame count, fps, size) and the JSON Lines (one line
    per frame, in order; ``times``: at k / fps); returns the JSONL records."""
    with open_source(os.path.join(folder, f"{stem}_pose.mp4")) as source:
        shapes = [f.rgb.shape for f in source]
        assert source.problem is None
        assert source.info.fps == pytest.approx(fps)
    assert shapes == [(size[1], size[0], 3)] * frames
    lines = open(os.path.join(folder, f"{stem}_pose.jsonl")).read().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["frame"] for r in records] == list(range(frames))
    if times:
        assert [r["time_s"] for r in records] == pytest.approx(
            [k / fps for k in range(frames)], abs=1e-3)
    assert not [n for n in os.listdir(folder) if ".partial-" in n]   # nothing half-written
    return records


@pytest.fixture(scope="module")
def clip():
    return make_clip(num_frames=FRAMES, size=SIZE, fps=FPS)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras

    from prtr_tf.config import load_config
    from prtr_tf.models.detector.model import build_detector
    from prtr_tf.models.detector.records import person_label
    from prtr_tf.models.keypoint.model import build_model

    root = tmp_path_factory.mktemp("video_models")
    config = load_config("synthetic_tiny")
    config.test.in_vis_thre = 0.0  # random joint scores ~1/J: every joint counts
    config.test.flip_test = False
    keras.utils.set_random_seed(5)
    model = build_model(config.model)
    model.save_weights(str(root / "kpt.weights.h5"))
    # Two queries (two persons per frame at most: fewer crops, a faster test).
    (root / "det2.py").write_text(DETECTOR_CONFIG)
    det_config = load_config(str(root / "det2.py"))
    detector = build_detector(det_config.model)
    # A random DETR's P(person) is all ~0 or all ~1 (seed-dependent): the class head is
    # set to P(person) = 0.9 for every query instead (confident persons start tracks).
    kernel, bias = detector.class_embed.weights
    kernel.assign(np.zeros(kernel.shape))
    logits = np.zeros(bias.shape)
    logits[person_label(det_config)] = np.log(0.9 * (len(logits) - 1) / 0.1)
    bias.assign(logits)
    detector.save_weights(str(root / "det.weights.h5"))
    return {"kpt": str(root / "kpt.weights.h5"), "det": str(root / "det.weights.h5"),
            "det_config": str(root / "det2.py"),
            "model": model, "config": config}


@pytest.mark.cli
def test_cli_video_track_and_truncated(models, clip, tmp_path):
    # prtr-predict as a user runs it, on a folder with the clip and a truncated copy:
    # each gets an annotated mp4 of the source's frame count, fps and size and a JSONL
    # with a record per frame and track ids; the truncated one is reported with the
    # frames decoded kept (rules out: JPEG folders instead of a video, lost or reordered
    # frames, a wrong rate or size, no ids, a broken file failing the whole run).
    src = tmp_path / "in"
    src.mkdir()
    short = make_clip(num_frames=CLI_FRAMES, size=SIZE, fps=FPS)
    data = open(write_clip(src / "clip.mp4", short), "rb").read()
    (src / "cut.mp4").write_bytes(data[:int(len(data) * 0.55)])
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(REPO / "predict.py"), f"--source={src}", f"--output={out}",
         "--config=configs/synthetic_tiny.py", f"--checkpoint={models['kpt']}",
         f"--detector_config={models['det_config']}", "--noflip_test",
         f"--detector_checkpoint={models['det']}", "--track", "--batch=4"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "frames/s" in proc.stdout                                 # progress lines
    results = {os.path.basename(r["file"]): r for r in
               json.loads((out / "results.json").read_text())}
    assert set(results) == {"clip.mp4", "cut.mp4"}
    full = results["clip.mp4"]
    assert (full["frames"], full["width"], full["height"], full["fps"]) == (CLI_FRAMES, *SIZE,
                                                                            FPS)
    assert "problem" not in full
    records = check_video_outputs(out, "clip", CLI_FRAMES)
    ids = [p["track_id"] for r in records for p in r["persons"]]
    assert any(i is not None for i in ids) and full["track_ids"] >= 1
    cut = results["cut.mp4"]
    assert 0 < cut["frames"] < CLI_FRAMES and "cut.mp4" in cut["problem"]
    assert cut["problem"] in proc.stderr and "kept" in cut["problem"]
    check_video_outputs(out, "cut", cut["frames"], times=False)  # the decoder's times
    assert not (out / "failures.json").exists()


def _gt_boxes(clip):
    """Per frame: the GT persons as detections (boxes xywh, scores, true ids), those
    almost outside the picture left out as a detector would (`detections`)."""
    persons, ids = detections(clip.gt, rng=np.random.default_rng(1))
    boxes = [np.array([[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in
                       (p["box"] for p in frame)]).reshape(-1, 4) for frame in persons]
    scores = [np.array([p["box_score"] for p in frame]) for frame in persons]
    return boxes, scores, ids


def _run_video(estimator, clip_path, out, batch, boxes, scores, max_frames=0):
    options = VideoOptions(batch=batch, make_tracker=lambda: PoseTracker(score_key="box_score"),
                           progress_every_s=1e9)
    with open_source(clip_path, max_frames=max_frames) as source:
        return predict_video(estimator, source, str(out), "clip", options=options,
                             boxes_for_frame=lambda k: (boxes[k], scores[k]),
                             log=lambda line: None)


def test_gt_boxes_no_id_switch_and_batches_equal(models, clip, tmp_path):
    # The whole video path (decode -> keypoint model on the given boxes -> tracker ->
    # JSONL) with the true boxes as detections: the ids read back from the JSONL make 0
    # switches and 0 merges over the crossing and the re-entry (4 ids for 4 persons);
    # batches of 5 frames give the records of batch 1 (12 frames; rules out reordered or mixed-up
    # frames and crops in `PoseEstimator.predict_batch`).
    from prtr_tf.serving.estimator import PoseEstimator

    estimator = PoseEstimator(models["model"], models["config"])
    clip_path = write_clip(tmp_path / "clip.mp4", clip)
    boxes, scores, true_ids = _gt_boxes(clip)
    runs = {}
    for batch, frames in ((1, FRAMES), (5, 12)):   # batches of 5: the last one shorter
        out = tmp_path / f"b{batch}"
        summary = _run_video(estimator, clip_path, out, batch, boxes, scores, frames)
        assert summary["frames"] == frames
        runs[batch] = check_video_outputs(out, "clip", frames)
    got_true, got_track = [], []
    for k, record in enumerate(runs[1]):
        truth, tracks = [], []
        for p in record["persons"]:
            xywh = [p["box"][0], p["box"][1], p["box"][2] - p["box"][0],
                    p["box"][3] - p["box"][1]]
            (match,) = np.flatnonzero(np.all(np.abs(boxes[k] - xywh) < 0.02, axis=1))
            truth.append(true_ids[k][match])
            tracks.append(p["track_id"])
        got_true.append(truth)
        got_track.append(tracks)
    assert sum(map(len, got_true)) >= 0.9 * sum(map(len, true_ids))  # few lost to OKS-NMS
    found = count_id_switches(got_true, got_track)
    assert found == {"switches": 0, "merges": 0, "unassigned": 0, "track_ids": 4}, found
    for a, b in zip(runs[1], runs[5]):
        assert len(a["persons"]) == len(b["persons"])
        for p, q in zip(a["persons"], b["persons"]):
            assert p["track_id"] == q["track_id"] and p["box"] == q["box"]
            np.testing.assert_allclose(p["keypoints"], q["keypoints"], atol=0.05)


def test_batched_detector_equals_single(models, clip):
    # One DETR call over 3 frames (`detect_batch`) gives each frame's boxes and scores of
    # one call per frame (rules out frames swapped, or boxes scaled by another frame's
    # size, in the batched detector).
    from prtr_tf.config import load_config
    from prtr_tf.models.detector.model import build_detector
    from prtr_tf.models.detector.predict import DetrPersonDetector
    from prtr_tf.serving.estimator import detect_batch

    config = load_config(models["det_config"])
    model = build_detector(config.model)
    model.load_weights(models["det"])
    # Box scores spread (the fixture's are all 0.9): some frames keep fewer boxes.
    kernel = model.class_embed.weights[0]
    kernel.assign(np.random.default_rng(0).normal(0.0, 0.5, kernel.shape))
    detector = DetrPersonDetector(model, config, score_threshold=0.3)
    frames = [clip.frames[k] for k in (0, 9, 18)]
    for (b, s), image in zip(detect_batch(detector, frames), frames):
        b1, s1 = detector(image)
        np.testing.assert_allclose(b, b1, atol=1e-2)
        np.testing.assert_allclose(s, s1, atol=1e-4)


def test_video_flag_errors(tmp_path):
    # Out-of-range video flags and --boxes_json as the only box source for a video are
    # usage errors naming the flag, before any model loads (prtr_tf.cli.predict.main
    # in-process with the flags' defaults; the checkpoint given does not exist).
    from types import SimpleNamespace

    from absl import app

    from prtr_tf.cli import predict
    from tests.serving.test_predict import _DEFAULTS

    (tmp_path / "v.mp4").write_bytes(b"0")
    (tmp_path / "b.json").write_text("{}")
    base = dict(source=str(tmp_path / "v.mp4"), output=str(tmp_path / "o"),
                config=load_config_file(), checkpoint="nope.weights.h5",
                boxes_json=str(tmp_path / "b.json"))
    cases = [(dict(batch=0), "--batch must be >= 1"), (dict(fps=0.0), "--fps must be > 0"),
             (dict(track=True, track_low_thr=0.7), "--track: need 0 <= low_thr <= high_thr"),
             (dict(track_max_lost=-1), "--track_max_lost must be >= 0"),
             (dict(smooth=True, smooth_min_cutoff=0.0), "--smooth: need min_cutoff > 0"),
             ({}, "videos, webcams, streams and sequences need a person detector")]
    for values, message in cases:
        flags_ = {k: SimpleNamespace(value=v) for k, v in {**_DEFAULTS, **base, **values}.items()}
        with pytest.raises(app.UsageError, match=message):
            predict.main(["predict.py"], flags_)


def load_config_file():
    from prtr_tf.config import load_config
    return load_config("synthetic_tiny")


def test_output_stem():
    assert output_stem("videos/walk.mp4") == "walk"
    assert output_stem("0") == output_stem("webcam 0") == "webcam0"
    assert output_stem("rtsp://cam.local:554/live") == "stream_cam_local_554_live"
    assert output_stem("frames/%06d.png") == "frames"
