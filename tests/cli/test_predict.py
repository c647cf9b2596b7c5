"""predict.py (= prtr-predict) run as users run it.

Also: the predict.py runs on the tiny random models in tests/serving/test_predict.py
(they share its module fixture ``weights`` with in-process tests), on videos in
tests/inference/test_predict_video.py, and on the trained end-to-end model in
tests/end_to_end/test_training.py.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO
from tests.inference.test_media_drawing import _exif_jpeg


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random weights of the tiny keypoint model, saved to tmp."""
    from prtr_tf.config import load_config
    from prtr_tf.models.keypoint.model import build_model

    root = tmp_path_factory.mktemp("weights")
    model = build_model(load_config(str(REPO / "configs/synthetic_tiny.py")).model)
    model.save_weights(str(root / "kpt.weights.h5"))
    return {"kpt": str(root / "kpt.weights.h5")}


def _run(*args):
    return subprocess.run([sys.executable, str(REPO / "predict.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_usage_errors(tmp_path):
    proc = _run(f"--source={tmp_path}", f"--output={tmp_path / 'o'}",
                "--config=configs/synthetic_tiny.py", "--checkpoint=x.weights.h5")
    assert proc.returncode == 2 and "--boxes_json" in proc.stderr


def test_webcam_absent(tmp_path):
    # --source=63 (no /dev/video63): one "error:" line naming the camera, exit 2 like the
    # other usage errors, before any model loads (the weights given do not exist) and
    # without creating --output (rules out a traceback, or a run that loads the models
    # and then fails on the first frame).
    proc = _run("--source=63", f"--output={tmp_path / 'o'}", "--track",
                "--config=configs/synthetic_tiny.py", "--checkpoint=x.weights.h5",
                "--detector_config=configs/synthetic_detector_tiny.py",
                "--detector_checkpoint=y.weights.h5")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and errors[0].startswith(
        "error: --source: webcam 63: no such camera (/dev/video63 does not exist")
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


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


