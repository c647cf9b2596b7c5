"""eval.py (= prtr-eval) run as users run it, on the tiny keypoint model.

(eval.py on a trained end-to-end model stays in tests/end_to_end/test_training.py,
marked ``cli``: it uses that file's trained model.)
"""
import os
import subprocess
import sys

from prtr_tf.config import load_config
from prtr_tf.evaluation import coco
from prtr_tf.models.keypoint.model import build_model

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_eval_py_writes_results_that_pycocotools_loads(coco_mini, tmp_path):
    config = load_config("tiny")
    model = build_model(config.model)
    weights = tmp_path / "tiny.weights.h5"
    model.save_weights(str(weights))
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "eval.py", "--config=configs/tiny.py", f"--checkpoint={weights}",
         f"--config.data.root={coco_mini}", "--config.data.val_ann=person_keypoints.json",
         "--config.data.val_images=images", f"--det_json={coco_mini / 'person_detections.json'}",
         "--flip_test", f"--output={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| AP |" in proc.stdout.replace("| Model | AP |", "| AP |")
    gt = coco.load_coco(str(coco_mini / "person_keypoints.json"))
    loaded = gt.loadRes(str(out))
    assert len(loaded.getAnnIds()) > 0


def test_eval_py_rejects_a_missing_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, "eval.py", "--config=configs/tiny.py",
                           f"--checkpoint={tmp_path / 'nope.weights.h5'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "does not exist" in proc.stderr
