"""results.json coordinates pinned in ORIGINAL-image pixels (issue 27): a downscaled
input with a different factor per axis (301 x 99 -> 100 x 33: sx = 3.01, sy = 3.0),
so that a swapped axis, a dropped scale or scaling the joint scores is seen."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from prtr_tf.inference import predict


def test_persons_to_original_scales_each_axis():
    persons = [{"box": [10.0, 20.0, 30.0, 40.0], "score": np.float32(0.75),
                "box_score": None,
                "keypoints": np.array([[1.0, 2.0, 0.5], [10.3333, 0.0, 0.25]])}]
    out = predict.persons_to_original(persons, (2.0, 3.0))
    assert out == [{"box": [20.0, 60.0, 60.0, 120.0], "score": 0.75, "box_score": None,
                    "keypoints": [[2.0, 6.0, 0.5], [20.67, 0.0, 0.25]]}]
    # the input is not modified in place
    assert persons[0]["keypoints"][0].tolist() == [1.0, 2.0, 0.5]
    out = predict.persons_to_original([dict(persons[0], box_score=np.float64(0.5))],
                                      (1.0, 1.0))
    assert out[0]["box_score"] == 0.5 and type(out[0]["box_score"]) is float
    assert json.dumps(out)  # JSON-ready (no numpy scalars)


class _Estimator:
    def __init__(self):
        self.calls = []

    def __call__(self, image, boxes=None, box_scores=None):
        self.calls.append((image.shape, boxes, box_scores))
        return [{"box": [10.0, 10.0, 20.0, 30.0], "score": 0.8, "box_score": 0.9,
                 "keypoints": np.array([[10.0, 10.0, 0.9], [50.0, 20.0, 0.1]])}]


def test_results_json_is_in_original_pixels(tmp_path):
    src = tmp_path / "in" / "wide.png"
    src.parent.mkdir()
    Image.fromarray(np.full((99, 301, 3), 128, np.uint8)).save(src)
    out = tmp_path / "out"
    est = _Estimator()
    # boxes in original pixels (x, y, w, h): the estimator must get working pixels
    boxes = (np.array([[30.1, 30.0, 30.1, 60.0]]), np.array([0.7]))
    counts = predict.predict_files(est, [str(src)], str(out), None,
                                   boxes_for=lambda p: boxes, max_side=100)
    assert counts == {"total": 1, "processed": 1, "failed": 0}
    shape, given, scores = est.calls[0]
    assert shape == (33, 100, 3)
    np.testing.assert_allclose(given, [[10.0, 10.0, 10.0, 20.0]], rtol=1e-9)
    np.testing.assert_array_equal(scores, [0.7])
    with open(out / "results.json") as f:
        results = json.load(f)
    assert len(results) == 1
    r = results[0]
    assert (r["file"], r["width"], r["height"], r["annotated"]) == (
        str(src), 301, 99, "wide_pose.jpg")
    # sx = 301 / 100 = 3.01, sy = 99 / 33 = 3.0
    p = r["persons"][0]
    assert p["box"] == [30.1, 30.0, 60.2, 90.0]
    assert p["keypoints"] == [[30.1, 30.0, 0.9], [150.5, 60.0, 0.1]]
    assert p["score"] == 0.8 and p["box_score"] == 0.9
    assert os.path.exists(out / "wide_pose.jpg")
    assert not os.path.exists(out / "failures.json")


def test_failures_are_listed_and_names_are_unique(tmp_path):
    a = tmp_path / "a" / "img.png"
    b = tmp_path / "b" / "img.png"
    c = tmp_path / "img.jpg"
    for path in (a, b):
        path.parent.mkdir()
        Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(path)
    Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(c)
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    out = tmp_path / "out"
    counts = predict.predict_files(_Estimator(), [str(a), str(bad), str(b), str(c)],
                                   str(out), None)
    assert counts == {"total": 4, "processed": 3, "failed": 1}
    with open(out / "results.json") as f:
        results = json.load(f)
    assert [r["annotated"] for r in results] == ["img_pose.jpg", "img_png_pose.jpg",
                                                 "img_jpg_pose.jpg"]
    # without downscaling the coordinates are the estimator's
    assert results[0]["persons"][0]["keypoints"][1] == [50.0, 20.0, 0.1]
    with open(out / "failures.json") as f:
        assert json.load(f) == [{"file": str(bad), "reason": "empty file (0 bytes)"}]
    # a later run without failures removes the stale failures.json
    predict.predict_files(_Estimator(), [str(a)], str(out), None)
    assert not os.path.exists(out / "failures.json")


def test_names_fall_back_to_numbers():
    names = predict._Names()
    got = [names("x/a.png", "_pose.jpg"), names("y/a.png", "_pose.jpg"),
           names("z/a.png", "_pose.jpg"), names("z/a.jpg", "_pose.jpg")]
    assert got == ["a_pose.jpg", "a_png_pose.jpg", "a_2_pose.jpg", "a_jpg_pose.jpg"]


def _image(path, shape=(8, 6, 3)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(shape, np.uint8)).save(path)
    return str(path)


def test_boxes_json_branches_and_the_printed_lines(tmp_path, capsys, monkeypatch):
    """--boxes_json per image: a file without boxes runs with none (and says so), a box
    reaching past the image is clipped (and counted), a box outside it fails that file
    naming the box; an estimator error is reported as "Type: message"; a video given
    boxes fails. Each file prints one line, failures are listed on stderr, the summary
    names the estimator's threshold. Rules out dropped notes, a swapped error format,
    and a lost or wrong summary."""
    drawn = []
    monkeypatch.setattr(predict.visualize, "draw_poses",
                        lambda rgb, found, skeleton, kpt_thr, box_thr, names:
                        drawn.append((skeleton, kpt_thr, box_thr, names)) or
                        Image.fromarray(rgb))
    none = _image(tmp_path / "none.png")
    clip = _image(tmp_path / "clip.png")
    out_of = _image(tmp_path / "outside.png")
    broken = _image(tmp_path / "broken.png")
    video = str(tmp_path / "clip.mp4")
    table = {clip: (np.array([[2.0, 2.0, 10.0, 3.0]]), np.array([0.9])),
             out_of: (np.array([[50.0, 1.0, 2.0, 2.0]]), np.array([0.8])),
             broken: (np.zeros((1, 4)) + 1.0, np.array([0.5]))}

    class Est(_Estimator):
        score_threshold = 0.35

        def __call__(self, image, boxes=None, box_scores=None):
            if box_scores is not None and len(box_scores) and box_scores[0] == 0.5:
                raise TypeError("bad box")
            return super().__call__(image, boxes, box_scores)

    est = Est()
    kset = {"skeleton": ((0, 1),), "joints": ("a", "b")}
    counts = predict.predict_files(est, [none, clip, out_of, broken, video],
                                   str(tmp_path / "out"), kset, boxes_for=table.get,
                                   kpt_thr=0.45)
    assert counts == {"total": 5, "processed": 2, "failed": 3}
    # none: an empty (0, 4) box array; clip: the box clipped to the 6 x 8 image
    assert est.calls[0][1].shape == (0, 4)
    np.testing.assert_allclose(est.calls[1][1], [[2.0, 2.0, 4.0, 3.0]])
    assert drawn == [(((0, 1),), 0.45, 0.0, ("a", "b"))] * 2
    # the drawing is saved as a JPEG of quality 90
    import io
    expected = io.BytesIO()
    Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(expected, format="JPEG", quality=90)
    assert (tmp_path / "out" / "none_pose.jpg").read_bytes() == expected.getvalue()
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"[1/5] {none}: 1 person(s) (")
    assert lines[0].endswith("s) [no boxes for this file in --boxes_json]")
    assert lines[1].endswith("s) [1 --boxes_json box(es) clipped to the image]")
    for line in lines[:2]:  # the seconds this file took, one decimal
        seconds = re.search(r" person\(s\) \((\d+\.\d)s\)", line).group(1)
        assert 0.0 <= float(seconds) < 60.0, line
    assert lines[2].startswith(f"[3/5] {out_of}: FAILED: --boxes_json box #0 [50.0, 1.0, "
                               "2.0, 2.0] of outside.png lies outside the 6x8 image")
    assert lines[3] == f"[4/5] {broken}: FAILED: TypeError: bad box"
    assert lines[4] == (f"[5/5] {video}: FAILED: videos need a person detector "
                        "(--detector_config), not --boxes_json")
    assert lines[5] == ("processed 2/5 files; person score threshold 0.35; results: "
                        f"{tmp_path / 'out' / 'results.json'}")
    err = captured.err.splitlines()
    assert err[0] == "3 file(s) failed:"
    assert err[2] == f"  {broken}: TypeError: bad box"
    with open(tmp_path / "out" / "failures.json") as f:
        text = f.read()
    assert text.startswith('[\n {\n  "file": ')  # indent=1
    assert [r["reason"] for r in json.loads(text)][1:] == [
        "TypeError: bad box", "videos need a person detector (--detector_config), not "
        "--boxes_json"]


def test_unknown_threshold_and_a_missing_video(tmp_path, capsys):
    # An estimator without a threshold: "unknown"; a video that cannot be opened fails
    # with the source's reason (not as an unexpected error), the images still run.
    img = _image(tmp_path / "a.png")
    missing = str(tmp_path / "gone.mp4")
    counts = predict.predict_files(_Estimator(), [missing, img], str(tmp_path / "out"))
    assert counts == {"total": 2, "processed": 1, "failed": 1}
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"[1/2] {missing}: FAILED: {missing}: no such file or folder"
    assert "person score threshold unknown; results:" in out[-1]
    assert out[1].startswith(f"[2/2] {img}: 1 person(s) (") and out[1].endswith("s)")


class _Source:
    """An opened source (context manager with ``info.name``) for predict_files."""

    def __init__(self, name):
        import types
        self.info = types.SimpleNamespace(name=name)
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True
        return False


def test_videos_and_opened_sources_go_to_predict_video(tmp_path, capsys, monkeypatch):
    """A video file is opened with max_frames and handed to predict_video with a
    unique stem (two clip.mp4 in different folders: clip, clip_mp4), the keypoint set,
    kpt_thr and the options; an opened source (a webcam) gets its output_stem. Its
    results entry drops None values; its line counts frames, persons (and track ids
    with a tracker). Rules out the wrong stem, max_frames not passed, None values
    kept, a wrong progress line."""
    import types
    opened, calls = [], []

    def open_source(path, max_frames=0):
        opened.append((path, max_frames))
        return _Source(path)

    def predict_video(estimator, source, output, stem, keypoint_set, kpt_thr, options,
                      log=None):
        calls.append((source.info.name, stem, keypoint_set, kpt_thr, options, log,
                      estimator, output))
        return dict(frames=3, persons=2, track_ids=None if options.make_tracker is None
                    else 4, annotated=f"{stem}_pose.mp4", jsonl=f"{stem}_pose.jsonl")
    monkeypatch.setattr(predict, "open_source", open_source)
    monkeypatch.setattr(predict, "predict_video", predict_video)
    a, b = str(tmp_path / "a" / "clip.mp4"), str(tmp_path / "b" / "clip.MP4")
    webcam = _Source("webcam 0")
    kset = {"skeleton": (), "joints": ("x",)}
    tracked = types.SimpleNamespace(make_tracker=object())
    est = _Estimator()
    counts = predict.predict_files(est, [a, b, webcam], str(tmp_path / "out"),
                                   kset, kpt_thr=0.2, max_frames=7, video=tracked)
    assert counts == {"total": 3, "processed": 3, "failed": 0}
    assert opened == [(a, 7), (b, 7)]
    assert [c[:4] for c in calls] == [(a, "clip", kset, 0.2), (b, "clip_MP4", kset, 0.2),
                                      ("webcam 0", "webcam0", kset, 0.2)]
    assert all(c[4] is tracked and c[5] is print for c in calls)
    assert all(c[6] is est and c[7] == str(tmp_path / "out") for c in calls)
    assert webcam.closed  # used as a context manager
    with open(tmp_path / "out" / "results.json") as f:
        results = json.load(f)
    assert results[2] == {"file": "webcam 0", "frames": 3, "persons": 2, "track_ids": 4,
                          "annotated": "webcam0_pose.mp4", "jsonl": "webcam0_pose.jsonl"}
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"[1/3] {a}: 3 frames, 2 person(s), 4 track id(s) -> "
                               "clip_pose.mp4, clip_pose.jsonl (")
    assert lines[2].startswith("[3/3] webcam 0: 3 frames")
    assert 0.0 <= float(re.search(r"\((\d+\.\d)s\)$", lines[0]).group(1)) < 60.0
    # without options: the defaults (no tracker: no track ids, None dropped; all
    # frames: max_frames 0; kpt_thr 0.3)
    calls.clear()
    opened.clear()
    predict.predict_files(_Estimator(), [a], str(tmp_path / "out2"), kset)
    assert calls[0][4] == predict.VideoOptions() and calls[0][4].make_tracker is None
    assert opened == [(a, 0)] and calls[0][3] == 0.3
    with open(tmp_path / "out2" / "results.json") as f:
        assert json.load(f) == [{"file": a, "frames": 3, "persons": 2,
                                 "annotated": "clip_pose.mp4", "jsonl": "clip_pose.jsonl"}]
    assert ", 2 person(s) -> clip_pose.mp4" in capsys.readouterr().out


def test_persons_to_original_rounds_both_axes_to_two_decimals():
    # Integer keypoints (any numeric input) scale to floats; box and both keypoint
    # axes are rounded to 2 decimals (x 10.3333 * 2, y 1.1111 * 3), scores kept.
    persons = [{"box": [10.3333, 1.1111, 2.0, 3.0], "score": 1, "box_score": None,
                "keypoints": np.array([[10, 20, 1], [3, 5, 0]])},
               {"box": [0.0, 0.0, 1.0, 1.0], "score": 0.5, "box_score": None,
                "keypoints": np.array([[10.3333, 1.1111, 0.123456]])}]
    out = predict.persons_to_original(persons, (2.0, 3.0))
    assert out[0]["keypoints"] == [[20.0, 60.0, 1.0], [6.0, 15.0, 0.0]]
    assert out[0]["box"] == [20.67, 3.33, 4.0, 9.0]
    assert out[1]["keypoints"] == [[20.67, 3.33, 0.123456]]


def test_names_run_out_and_keep_the_extensions_letters():
    names = predict._Names()
    # the extension's letters as they are (".Xml" -> "_Xml"), only the dot removed
    assert [names("a.Xml", "_p"), names("b/a.Xml", "_p")] == ["a_p", "a_Xml_p"]
    # every candidate taken (a_p, a_Xml_p, a_2_p .. a_99999_p): an error, not a_100000_p
    names.used |= {f"a_{i}_p" for i in range(2, 100000)}
    with pytest.raises(RuntimeError, match="^too many inputs with the same name$"):
        names("c/a.Xml", "_p")


def test_max_side_default_and_notes_joined(tmp_path, capsys):
    # 4097 pixels wide: above the default max_side 4096, so downscaled to 4096; with
    # no boxes for it either, both notes on its line, joined by "; ". The empty boxes
    # come with as many (zero) scores.
    img = _image(tmp_path / "wide.png", shape=(2, 4097, 3))
    est = _Estimator()
    predict.predict_files(est, [img], str(tmp_path / "out"), boxes_for=lambda p: None)
    assert est.calls[0][0] == (2, 4096, 3)
    assert est.calls[0][1].shape == (0, 4) and est.calls[0][2].shape == (0,)
    line = capsys.readouterr().out.splitlines()[0]
    assert line.endswith("s) [downscaled from 4097x2 to 4096x2 (--max_side); results in "
                         "original coordinates; no boxes for this file in --boxes_json]")


def test_progress_lines_are_flushed(tmp_path, monkeypatch):
    """Each file's line is flushed as it is done (a pipe or a log shows progress, not
    everything at the end): images, videos, failures of both kinds."""
    flushed = []

    def recording_print(*args, **kwargs):
        flushed.append((" ".join(map(str, args)), kwargs.get("flush", False)))
    monkeypatch.setattr(predict, "print", recording_print, raising=False)
    monkeypatch.setattr(predict, "open_source", lambda path, max_frames=0: _Source(path))
    monkeypatch.setattr(predict, "predict_video", lambda *a, **k: dict(
        frames=1, persons=0, track_ids=None, annotated="v_pose.mp4", jsonl="v_pose.jsonl"))

    class Failing(_Estimator):
        def __call__(self, image, boxes=None, box_scores=None):
            if image.shape[0] == 4:
                raise TypeError("bad")
            return super().__call__(image, boxes, box_scores)
    good, bad = _image(tmp_path / "good.png"), _image(tmp_path / "bad.png", (4, 4, 3))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    predict.predict_files(Failing(), [good, str(empty), bad, str(tmp_path / "v.mp4")],
                          str(tmp_path / "out"))
    per_file = [(text, flush) for text, flush in flushed if text.startswith("[")]
    assert len(per_file) == 4 and all(flush is True for _, flush in per_file), per_file
