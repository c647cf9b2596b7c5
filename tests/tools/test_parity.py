"""Numerical parity with the official PyTorch code on the ../shared/golden fixtures.

Each fixture's weights go through the checkpoint importer; the tool compares the
backbone features, positional encoding, logits, coordinates, auxiliary layers and
the readout with the official outputs (|Δ| <= 1e-4, identical readout queries).
The ImageNet backbone fixtures (format imagenet-backbone) go through the ImageNet
importer: every listed array within 1e-4 of its largest magnitude, the head skipped,
every other tensor used. The command line (python -m tools.parity):
tests/cli/test_tools.py.
"""
import io

import pytest

from tools import parity
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
    # ResNet fixtures again with frozen BatchNorm folded (as inference loads them).
    folded = [f"ok   folded {a}" in report for a in parity.FOLDED["prtr-two-stage"]]
    assert all(folded) if "resnet" in report.splitlines()[0] else not any(folded), report



@pytest.mark.parametrize("name", ["imagenet_resnet50", "imagenet_hrnet_w32"])
def test_imagenet_backbone_fixture_parity(golden_dir, name):
    """An ImageNet classification state_dict (torchvision ResNet-50, HRNet-W32's
    ImageNet release) through the ImageNet importer gives the official backbone's
    outputs (every array of the fixture, relative to its largest magnitude); the head is
    skipped, every other tensor is used."""
    import json

    manifest = golden_dir / f"{name}.json"
    arrays = json.loads(manifest.read_text())["arrays"]
    out = io.StringIO()
    passed = parity.check(str(manifest), out=out)
    report = out.getvalue()
    print(report)
    assert passed, report
    for array in arrays:
        assert f"ok   {array}" in report, f"{array} was not compared:\n{report}"
    assert "ok   tensors              every other tensor used" in report, report


def test_imagenet_backbone_format_checks_tensor_use_and_every_array(golden_dir, tmp_path):
    """The tool itself on a small made-up fixture (resnet_tiny, expected arrays from
    this model): it passes; an array it cannot compute fails; a tensor left unused
    (an entry missing from head_tensors then counts as one to load) fails, named."""
    import json
    import shutil

    import numpy as np
    import tensorflow as tf

    from prtr_tf.nn.backbones import build_backbone
    from prtr_tf.checkpoints.torch_import import backbone_mapping

    backbone = build_backbone("resnet_tiny")
    backbone(tf.zeros((1, 32, 32, 3)))
    kinds = {"weight": "fan_in", "bias": "norm_b", "running_mean": "bn_mean",
             "running_var": "bn_var"}
    tensors = [{"name": n, "shape": list(shape),
                "kind": "norm_w" if n.endswith("weight") and len(shape) == 1
                else kinds[n.rsplit(".", 1)[1]]}
               for n, (shape, _) in backbone_mapping(backbone).items()]
    tensors += [{"name": "bn1.num_batches_tracked", "shape": [], "kind": "zero"},
                {"name": "fc.weight", "shape": [10, 256], "kind": "fan_in"},
                {"name": "fc.bias", "shape": [10], "kind": "bias"}]
    manifest = {"format": "imagenet-backbone", "seed": 5,
                "model": {"backbone": "resnet_tiny", "image_size": [64, 32]},
                "tensors": tensors, "head_tensors": ["fc.weight", "fc.bias"],
                "inputs": [{"name": "images", "shape": [1, 3, 64, 32]}],
                "arrays": {"backbone_features": [1, 256, 4, 2], "c3": [1, 128, 8, 4]}}
    shutil.copy(golden_dir / "synth_weights.py", tmp_path / "synth_weights.py")
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(manifest))
    np.savez(tmp_path / "tiny.npz", placeholder=np.zeros(1))
    _, state_dict, inputs, _ = parity.load_fixture(str(path))
    expected, _ = parity.run_imagenet_backbone(manifest, state_dict, inputs)
    assert sorted(expected) == ["backbone_features", "c3"]

    def run(arrays, **changes):
        path.write_text(json.dumps({**manifest, **changes}))
        np.savez(tmp_path / "tiny.npz", **arrays)
        out = io.StringIO()
        return parity.check(str(path), out=out), out.getvalue()

    passed, report = run(expected)
    assert passed, report
    assert "ok   tensors              every other tensor used: 65 of 68 loaded" in report
    passed, report = run({**expected, "c9": np.zeros((1, 2, 1, 1), np.float32)})
    assert not passed and "FAIL c9" in report and "not computed" in report
    passed, report = run(expected, head_tensors=["fc.weight"])
    assert not passed and "FAIL tensors" in report and "NOT USED: fc.bias" in report
    nudged = {**expected, "c3": expected["c3"] * (1 + 2e-4)}
    passed, report = run(nudged)
    assert not passed and "FAIL c3" in report
