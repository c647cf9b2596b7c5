"""The smaller tools run as users run them: python -m tools.parity and
python -m prtr_tf.data.synthetic. (The benchmark scripts: test_benchmark.py.)"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from prtr_tf.data.synthetic import ANN_FILE
from tests.conftest import require_shared


def test_cli_fails_when_an_official_output_differs(tmp_path):
    """A fixture whose expected logits were nudged by 2e-4 must fail (exit 1)."""
    golden = require_shared("golden")
    name = "prtr_res50_mpii_256x256"
    shutil.copy(golden / f"{name}.json", tmp_path / f"{name}.json")
    shutil.copy(golden / "synth_weights.py", tmp_path / "synth_weights.py")
    with np.load(golden / f"{name}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["pred_logits"] = arrays["pred_logits"].copy()
    arrays["pred_logits"][1, 7, 3] += 2e-4
    np.savez(tmp_path / f"{name}.npz", **arrays)
    proc = subprocess.run([sys.executable, "-m", "tools.parity",
                           str(tmp_path / f"{name}.json")], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL pred_logits" in proc.stdout
    assert "ok   pred_coords" in proc.stdout


def test_cli_reports_a_broken_fixture(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"format": "prtr-two-stage"}))
    proc = subprocess.run([sys.executable, "-m", "tools.parity", str(tmp_path / "x.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "x.npz is missing" in proc.stderr


def test_command_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    run = [sys.executable, "-m", "prtr_tf.data.synthetic"]
    out = subprocess.run(run + ["--help"], capture_output=True, text=True, env=env, check=True)
    assert "--num_images" in out.stdout and "--seed" in out.stdout
    subprocess.run(run + ["--out", str(tmp_path), "--num_images", "2", "--seed", "5",
                          "--quiet"], capture_output=True, text=True, env=env, check=True)
    assert len(json.loads((tmp_path / ANN_FILE).read_text())["images"]) == 2
