"""The plain-PyTorch reference (tools.torch_reference) is the official PRTR
two-stage computation: the ../shared/golden fixtures' official state_dicts load into it
with strict=True, and on the fixtures' inputs it reproduces the official outputs
(within 1e-4 of each array's largest magnitude) and the readout's queries."""
import numpy as np
import pytest

from tests.conftest import require_shared

try:  # optional (prtr-tf[torch]); a broken wheel raises ImportError or OSError
    import torch
except (ImportError, OSError) as e:
    pytest.skip(f"torch is not importable ({type(e).__name__}: {e}): the PyTorch "
                "reference cannot be built (pip install 'prtr-tf[torch]', the CPU wheel)",
                allow_module_level=True)
from tools import torch_reference  # noqa: E402

ARRAYS = ("backbone_features", "pos_embed", "pred_logits", "pred_coords",
          "aux_pred_logits", "aux_pred_coords")


def _readout_queries(logits, coords):
    """Paper Eq. 3: softmax over the joints (background dropped), one distinct query per
    joint by min-cost assignment; (query, score, coords) per joint."""
    from scipy.optimize import linear_sum_assignment
    logits = logits[..., :-1].astype(np.float64)
    prob = np.exp(logits - logits.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    out = []
    for p, c in zip(prob, coords):
        _, query = linear_sum_assignment(-p.T)  # rows: joints, in order
        out.append((query, p[query, np.arange(p.shape[1])], c[query]))
    return [np.stack(x) for x in zip(*out)]


@pytest.mark.parametrize("name", ["prtr_res50_384x288", "prtr_res50_mpii_256x256"])
def test_reference_matches_official_fixture(name):
    from tools.parity import load_fixture

    manifest_path = require_shared("golden", f"{name}.json")
    manifest, _, inputs, expected = load_fixture(str(manifest_path))
    model = torch_reference.build_reference(manifest["model"])
    state = torch_reference.reference_state_dict(manifest_path)
    assert sorted(state) == sorted(model.state_dict())
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        got = model(torch.from_numpy(inputs["images"]), return_features=True)
    got = {k: v.numpy() for k, v in got.items()}
    errors = {}
    for array in ARRAYS:
        ref = expected[array]
        assert got[array].shape == ref.shape, array
        errors[array] = float(np.abs(got[array] - ref).max() / np.abs(ref).max())
    print(name, {k: f"{v:.2e}" for k, v in errors.items()})
    assert all(e <= 1e-4 for e in errors.values()), errors
    query, scores, coords = _readout_queries(got["pred_logits"], got["pred_coords"])
    np.testing.assert_array_equal(query, expected["readout_query"])
    np.testing.assert_allclose(scores, expected["readout_scores"], atol=1e-4)
    np.testing.assert_allclose(coords, expected["readout_coords"], atol=1e-4)


def test_official_checkpoint_layout_and_unsupported_models():
    """num_batches_tracked entries (a torchvision-style BN checkpoint) are dropped as by
    the official FrozenBatchNorm2d; a missing or extra tensor fails a strict load; HRNet
    and DETR descriptions are refused."""
    spec = {"backbone": "resnet50", "num_joints": 17, "image_size_hw": [64, 48]}
    model = torch_reference.build_reference({"model": spec})
    state = dict(model.state_dict())
    state["backbone.0.body.layer1.0.bn1.num_batches_tracked"] = torch.tensor(0)
    model.load_state_dict(state, strict=True)
    del state["input_proj.bias"]
    with pytest.raises(RuntimeError, match="input_proj.bias"):
        model.load_state_dict(state, strict=True)
    for bad in ({**spec, "backbone": "hrnet_w32"}, {**spec, "num_classes": 91}):
        with pytest.raises(ValueError):
            torch_reference.build_reference(bad)
    times = torch_reference.time_reference(model, batch=1, threads=1, repeats=2)
    assert len(times) == 2 and all(t > 0 for t in times)
