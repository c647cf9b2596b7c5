"""Numerical parity with the official PyTorch code on the ../shared/golden fixtures.

Each fixture's weights go through the checkpoint importer; the tool compares the
backbone features, positional encoding, logits, coordinates, auxiliary layers and
the readout with the official outputs (|Δ| <= 1e-4, identical readout queries).
"""
import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from prtr_tf.tools import parity
from tests.conftest import SHARED, require_shared

FIXTURES = sorted(p.name for p in (SHARED / "golden").glob("prtr_*.json"))


@pytest.mark.parametrize("name", FIXTURES or ["prtr_res50_384x288.json"])
def test_two_stage_fixture_parity(name):
    manifest = require_shared("golden", name)
    out = io.StringIO()
    passed = parity.check(str(manifest), out=out)
    report = out.getvalue()
    print(report)
    assert passed, report
    for array in ("backbone_features", "pos_embed", "pred_logits", "pred_coords",
                  "aux_pred_logits", "aux_pred_coords", "readout_query", "readout_scores",
                  "readout_coords"):
        assert f"ok   {array}" in report, f"{array} was not compared:\n{report}"


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
    proc = subprocess.run([sys.executable, "-m", "prtr_tf.tools.parity",
                           str(tmp_path / f"{name}.json")], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL pred_logits" in proc.stdout
    assert "ok   pred_coords" in proc.stdout


def test_cli_reports_a_broken_fixture(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"format": "prtr-two-stage"}))
    proc = subprocess.run([sys.executable, "-m", "prtr_tf.tools.parity", str(tmp_path / "x.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "x.npz is missing" in proc.stderr
