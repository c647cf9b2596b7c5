"""python -m prtr_tf.convert (= prtr-convert) run as users run it.

(The DETR checkpoint reduction through this CLI stays in tests/detector/test_detr.py,
marked ``cli``: it uses that file's module fixture of the synthetic DETR R50 weights.)
"""
import subprocess
import sys

import numpy as np


def test_convert_cli_reports_mismatch(tmp_path):
    np.savez(tmp_path / "bad.npz", **{"foo.weight": np.zeros(2, np.float32)})
    proc = subprocess.run(
        [sys.executable, "-m", "prtr_tf.convert", "--config=configs/tiny.py",
         f"--checkpoint={tmp_path / 'bad.npz'}", f"--output={tmp_path / 'o.weights.h5'}"],
        capture_output=True, text=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert proc.returncode == 1
    assert "unknown tensor(s)" in proc.stderr and "foo.weight" in proc.stderr
    assert not (tmp_path / "o.weights.h5").exists()
