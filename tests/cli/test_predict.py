"""predict.py (= prtr-predict) run as users run it.

Stay in place, marked ``cli``: the predict.py runs on the tiny random models in
tests/serving/test_predict.py (they share its module fixture ``weights`` with in-process
tests) and on the trained end-to-end model in tests/end_to_end/test_training.py.
"""
import os
import subprocess
import sys

from tests.conftest import REPO


def _run(*args):
    return subprocess.run([sys.executable, str(REPO / "predict.py"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_usage_errors(tmp_path):
    proc = _run(f"--source={tmp_path}", f"--output={tmp_path / 'o'}",
                "--config=configs/synthetic_tiny.py", "--checkpoint=x.weights.h5")
    assert proc.returncode == 2 and "--boxes_json" in proc.stderr
