"""Numerical parity with the official PyTorch code on the ../shared/golden fixtures.

Each fixture's weights go through the checkpoint importer; the tool compares the
backbone features, positional encoding, logits, coordinates, auxiliary layers and
the readout with the official outputs (|Δ| <= 1e-4, identical readout queries).
The command line (python -m prtr_tf.tools.parity): tests/cli/test_tools.py.
"""
import io

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

