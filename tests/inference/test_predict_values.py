"""results.json coordinates pinned in ORIGINAL-image pixels (issue 27): a downscaled
input with a different factor per axis (301 x 99 -> 100 x 33: sx = 3.01, sy = 3.0),
so that a swapped axis, a dropped scale or scaling the joint scores is seen."""
import json
import os

import numpy as np
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
