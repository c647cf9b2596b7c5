"""The plain-PyTorch references (tools.torch_reference, tools.torch_reference_deformable)
are the official PRTR two-stage computations, vanilla and deformable: the
../shared/golden fixtures' official state_dicts load into them with strict=True, and on
the fixtures' inputs they reproduce the official outputs (within 1e-4 of each array's
largest magnitude) and the readout's queries."""
import numpy as np
import pytest

from tests.conftest import require_shared

try:  # optional (prtr-tf[torch]); a broken wheel raises ImportError or OSError
    import torch
except (ImportError, OSError) as e:
    pytest.skip(f"torch is not importable ({type(e).__name__}: {e}): the PyTorch "
                "reference cannot be built (pip install 'prtr-tf[torch]', the CPU wheel)",
                allow_module_level=True)
from tools import torch_reference, torch_reference_deformable  # noqa: E402

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


def test_deformable_reference_matches_official_fixture():
    """The official deformable model with the official pure-PyTorch sampling core: its
    state_dict in the official order, every array of deform_prtr_res50_384x288 it
    computes (maps, sampling locations and weights, outputs) and the readout as the
    vanilla fixtures; the core alone on the fixture's msda_* case."""
    from tools.parity import load_fixture

    manifest_path = require_shared("golden", "deform_prtr_res50_384x288.json")
    manifest, _, inputs, expected = load_fixture(str(manifest_path))
    model = torch_reference_deformable.build_reference(manifest["model"])
    state = torch_reference.reference_state_dict(manifest_path)
    assert list(model.state_dict()) == [t["name"] for t in manifest["tensors"]]
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        got = model(torch.from_numpy(inputs["images"]), return_features=True)
    errors = {}
    for array, ref in expected.items():
        if array.startswith(("readout_", "msda_")):
            continue
        assert got[array].shape == ref.shape, array
        errors[array] = float(np.abs(got[array].numpy() - ref).max() / np.abs(ref).max())
    print({k: f"{v:.2e}" for k, v in errors.items()})
    assert len(errors) == 19 and all(e <= 1e-4 for e in errors.values()), errors
    query, scores, coords = _readout_queries(got["pred_logits"].numpy(),
                                             got["pred_coords"].numpy())
    np.testing.assert_array_equal(query, expected["readout_query"])
    np.testing.assert_allclose(scores, expected["readout_scores"], atol=1e-4)
    np.testing.assert_allclose(coords, expected["readout_coords"], atol=1e-4)
    shapes = [tuple(int(v) for v in s) for s in expected["msda_spatial_shapes"]]
    value, locations, weights = (torch.from_numpy(expected[f"msda_{k}"].astype(np.float32))
                                 for k in ("value", "sampling_locations", "attention_weights"))
    out = torch_reference_deformable.ms_deform_attn_core_pytorch(value, shapes, locations,
                                                                 weights)
    np.testing.assert_allclose(out.numpy(), expected["msda_output"], atol=1e-4)


def test_deformable_reference_layout_and_unsupported_models():
    """The heads are one module per decoder layer, repeated (6 state_dict copies of the
    same tensors, as the official file); a missing tensor fails a strict load; vanilla,
    HRNet and detector descriptions are refused; it times like the vanilla one."""
    spec = {"backbone": "resnet50", "num_joints": 17, "image_size_hw": [64, 48],
            "hidden_dim": 64, "dim_feedforward": 64, "enc_layers": 1, "dec_layers": 2,
            "num_queries": 10, "num_feature_levels": 4}
    model = torch_reference_deformable.build_reference({"model": spec})
    state = dict(model.state_dict())
    for copy, first in (("class_embed.1.weight", "class_embed.0.weight"),
                        ("kpt_embed.1.layers.2.bias", "kpt_embed.0.layers.2.bias")):
        assert state[copy].data_ptr() == state[first].data_ptr()  # the same tensor
    assert state["query_embed.weight"].shape == (10, 128)
    assert state["input_proj.3.0.weight"].shape == (64, 2048, 3, 3)
    model.load_state_dict(state, strict=True)
    del state["transformer.level_embed"]
    with pytest.raises(RuntimeError, match="transformer.level_embed"):
        model.load_state_dict(state, strict=True)
    for bad in ({k: v for k, v in spec.items() if k != "num_feature_levels"},
                {**spec, "backbone": "hrnet_w32"}, {**spec, "num_classes": 91}):
        with pytest.raises(ValueError):
            torch_reference_deformable.build_reference(bad)
    times = torch_reference.time_reference(model, batch=2, threads=1, repeats=2)
    assert len(times) == 2 and all(t > 0 for t in times)
