"""Deformable DETR in the detector family (prtr_tf/models/detector/deformable.py).

Fast (tiny config, random official-layout state_dicts): registry, outputs (sigmoid
classes, no no-object column), the family consumers' score hook, the backbone-LR group,
the head-copy check, the person-only derivation (its detections equal the full model's
person detections). Slow (R50, the shared fixture ``deformable_detr_r50``): parameter
count, import from an .npz state_dict, forward and postprocess against the fixture with
the README's rules, the person-only R50 against the fixture's ``person_*``.
"""
import importlib.util
import io
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.checkpoints import weights
from prtr_tf.checkpoints.torch_file import read_state_dict
from prtr_tf.config import load_config
from prtr_tf.models import registry
from prtr_tf.models.detector.deformable import (FAMILY, DeformableDETR, focal_class_cost,
                                                focal_set_loss, match_layers, official_heads,
                                                prepare_state_dict)
from prtr_tf.models.detector.predict import model_person_scores, relax_shapes
from prtr_tf.nn.boxes import box_cxcywh_to_xyxy, elementwise_generalized_box_iou
from prtr_tf.checkpoints.deformable_import import OfficialWeightsError
from prtr_tf.nn.layers import FrozenBatchNorm
from tests.conftest import require_shared
from tools.parity_deformable_detr import pad_nchw, topk_rows

TOL = 1e-4
REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def _tiny(num_classes=1):
    c = load_config("configs/deformable_detr_tiny.py")
    c.model.num_classes = num_classes
    return c


def _official_dict(model, seed=0):
    """A random state_dict in the official layout of ``model`` (heads stored once per
    decoder layer, as the official checkpoints)."""
    rng = np.random.default_rng(seed)
    sd = {k: rng.normal(scale=0.2, size=shape).astype(np.float32)
          for k, (shape, _) in model.official_mapping().items()}
    for key in [k for k in sd if k.endswith("running_var")]:
        sd[key] = np.abs(sd[key]) + 0.5
    for key in [k for k in sd if k.startswith(("class_embed.0.", "bbox_embed.0."))]:
        for i in range(1, len(model.transformer.decoder_layers)):
            sd[key.replace(".0.", f".{i}.", 1)] = sd[key].copy()
    return sd


@pytest.fixture(scope="module")
def tiny_model():
    """A freshly initialised tiny model, shared by the tests that only read it."""
    keras.utils.set_random_seed(0)
    return registry.build_model(_tiny())


@pytest.fixture(scope="module")
def tiny_batch():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 96, 128, 3)).astype(np.float32)
    mask = np.zeros((2, 96, 128), bool)
    mask[1, 70:] = True
    mask[1, :, 100:] = True
    return tf.constant(images), tf.constant(mask)


def test_registry_outputs_and_score_hook(tiny_model, tiny_batch):
    assert registry.get(_tiny()) is FAMILY and FAMILY.role == registry.DETECTOR
    model = tiny_model
    assert isinstance(model, DeformableDETR) and not relax_shapes(model)
    out = model(*tiny_batch[:1], mask=tiny_batch[1])
    assert out["pred_logits"].shape == (2, 10, 1)       # no no-object column
    assert out["aux_pred_boxes"].shape == (1, 2, 10, 4)
    np.testing.assert_allclose(model_person_scores(model, out, 0).numpy(),
                               tf.sigmoid(out["pred_logits"][..., 0]).numpy())
    # initial boxes: w = h = sigmoid(-2) (bbox_embed's last layer zero, bias -2); the
    # class bias is the focal prior
    np.testing.assert_allclose(out["pred_boxes"][..., 2:].numpy(), 1 / (1 + np.exp(2.0)),
                               rtol=1e-6)
    np.testing.assert_allclose(model.class_embed.bias.numpy(), -4.59512, atol=1e-5)
    # the padding mask matters (padded pixels are masked out of the attention)
    unmasked = model(tiny_batch[0], training=False)
    assert np.abs(np.asarray(unmasked["pred_logits"][1] - out["pred_logits"][1])).max() > 1e-4
    np.testing.assert_allclose(unmasked["pred_logits"][0].numpy(),
                               out["pred_logits"][0].numpy(), atol=1e-5)


def test_backbone_levels_choose_the_last_maps_and_keep_the_strides(tiny_batch):
    """``model.backbone_levels`` 2 (configs/demo_deformable_detector.py): the last two
    backbone maps (tiny: C3, C4, strides 8 and 16) + two extra stride-2 levels, i.e.
    the official strides 8..64; the default 3 reads C2..C4 (strides 4..32). Rules out
    the first maps read instead of the last, and a count that is ignored."""
    images, mask = tiny_batch  # 96 x 128
    shapes = {}
    for n in (3, 2):
        c = _tiny()
        c.model.backbone_levels = n
        keras.utils.set_random_seed(0)
        model = registry.build_model(c)
        srcs, masks = model.features(images, mask)
        shapes[n] = [tuple(s.shape[1:3]) for s in srcs]
        assert [tuple(m.shape[1:]) for m in masks] == shapes[n]
        levels = model.backbone(images, return_levels=True)
        first = model.input_proj.convs[0]
        assert first.kernel.shape[2] == levels[sorted(levels)[-n]].shape[-1]
    assert shapes[3] == [(24, 32), (12, 16), (6, 8), (3, 4)]
    assert shapes[2] == [(12, 16), (6, 8), (3, 4), (2, 2)]
    c = _tiny()
    c.model.backbone_levels = 5
    with pytest.raises(ValueError, match="backbone_levels=5"):
        registry.build_model(c)
    assert load_config("configs/demo_deformable_detector.py").model.backbone_levels == 2


def test_backbone_lr_group_is_the_official_one(tiny_model):
    """Backbone trainables + every sampling_offsets + the reference-point projection."""
    model = tiny_model
    group = {id(v) for v in model.backbone_lr_variables()}
    assert {id(v) for v in model.backbone.trainable_variables} <= group
    names = [n for n, (_, targets) in model.official_mapping().items()
             if any(id(v) in group for v, _ in targets) and not n.startswith("backbone.")]
    layers = len(model.transformer.encoder_layers) + len(model.transformer.decoder_layers)
    assert sorted(names) == sorted(
        [f"transformer.{p}.layers.{i}.{a}.sampling_offsets.{w}"
         for p, n, a in (("encoder", len(model.transformer.encoder_layers), "self_attn"),
                         ("decoder", len(model.transformer.decoder_layers), "cross_attn"))
         for i in range(n) for w in ("weight", "bias")]
        + ["transformer.reference_points.weight", "transformer.reference_points.bias"])
    assert len(names) == 2 * layers + 2


def test_head_copies_are_checked_and_reduced(tiny_model):
    model = tiny_model
    sd = _official_dict(model)
    wrapped = {f"module.{k}": v for k, v in sd.items()}   # DataParallel prefix
    wrapped["module.total_params"] = np.zeros(1)          # thop counters are skipped
    reduced = prepare_state_dict(_tiny().model, wrapped)
    assert not any(k.startswith(("class_embed.1", "bbox_embed.1")) for k in reduced)
    mapping = model.official_mapping()     # exactly what the model loads, shapes included
    assert set(reduced) == set(mapping)
    assert all(np.shape(reduced[k]) == tuple(shape) for k, (shape, _) in mapping.items())
    bad = dict(sd)
    bad["bbox_embed.1.layers.2.bias"] = bad["bbox_embed.1.layers.2.bias"] + 1e-3
    with pytest.raises(OfficialWeightsError, match=r"differ.*bbox_embed\.1\.layers\.2\.bias"):
        official_heads(bad, 2)
    missing = {k: v for k, v in sd.items() if not k.startswith("class_embed.1.")}
    with pytest.raises(OfficialWeightsError, match=r"class_embed\.1\.weight \(missing\)"):
        official_heads(missing, 2)


def test_person_model_gives_the_full_models_person_detections(tiny_batch):
    """A 3-class checkpoint, person = row 1: the person-only model (row 1 kept) has the
    full model's person logits (to float32 rounding) and boxes, and the same top-k
    person detections."""
    keras.utils.set_random_seed(0)
    full = registry.build_model(_tiny(3))
    sd = _official_dict(full, seed=3)
    full.load_official(prepare_state_dict(_tiny(3).model, sd))
    person, person_sd = FAMILY.prepare_official(_tiny(1).model, sd)
    person.load_official(person_sd)
    a = full(tiny_batch[0], mask=tiny_batch[1])
    b = person(tiny_batch[0], mask=tiny_batch[1])
    # equal up to float32 rounding (a 1-column and a 3-column matmul accumulate alike
    # but not bit for bit); the boxes take the very same path
    np.testing.assert_allclose(b["pred_logits"][..., 0].numpy(),
                               a["pred_logits"][..., 1].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(b["pred_boxes"].numpy(), a["pred_boxes"].numpy())
    sizes = np.array([[96, 128], [70, 100]])
    pa = full.postprocess(a, sizes, 8, classes=[1])
    pb = person.postprocess(b, sizes, 8)
    np.testing.assert_allclose(pa["scores"].numpy(), pb["scores"].numpy(), atol=1e-6)
    for k in ("query", "boxes"):
        np.testing.assert_array_equal(pa[k].numpy(), pb[k].numpy())
    # and not the other rows (the row choice is tested)
    assert np.abs(np.asarray(b["pred_logits"][..., 0] - a["pred_logits"][..., 2])).max() > 1e-3


def _convert(config, checkpoint, output):
    """``python -m prtr_tf.cli.convert`` as a user runs it; (returncode, stdout + stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "prtr_tf.cli.convert", f"--config={config}",
         f"--checkpoint={checkpoint}", f"--output={output}"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.cli
@pytest.mark.slow
def test_prtr_convert_imports_and_refuses_differing_copies(tmp_path):
    """prtr-convert on an official-layout .npz (DataParallel prefix, thop counters)
    into a model file (.keras): loaded with no config, its weights equal the in-process
    import; a file whose head copies differ is refused with a message naming them, and
    nothing is written."""
    keras.utils.set_random_seed(0)
    model = registry.build_model(_tiny())
    sd = _official_dict(model, seed=5)
    np.savez(tmp_path / "sd.npz", **{f"module.{k}": v for k, v in sd.items()},
             **{"module.total_ops": np.zeros(1)})
    code, log = _convert(CONFIGS / "deformable_detr_tiny.py", tmp_path / "sd.npz",
                         tmp_path / "out.keras")
    assert code == 0, log[-2000:]
    model.load_official(prepare_state_dict(_tiny().model, sd))
    fresh, config, _ = weights.load_model(None, str(tmp_path / "out.keras"), fold=False)
    assert registry.get(config) is FAMILY and config.model.to_dict() == _tiny().model.to_dict()
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    bad = dict(sd)
    bad["class_embed.1.bias"] = bad["class_embed.1.bias"] + 0.5
    np.savez(tmp_path / "bad.npz", **bad)
    code, log = _convert(CONFIGS / "deformable_detr_tiny.py", tmp_path / "bad.npz",
                         tmp_path / "bad.weights.h5")
    assert code != 0 and "class_embed.1.bias" in log and "differ" in log, log[-2000:]
    assert not (tmp_path / "bad.weights.h5").exists()


# ------------------------------------------------------------------ the focal criterion


def _np_focal(logits, target, alpha=0.25, gamma=2.0):
    p = 1 / (1 + np.exp(-logits))
    ce = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    p_t = p * target + (1 - p) * (1 - target)
    return (alpha * target + (1 - alpha) * (1 - target)) * ce * (1 - p_t) ** gamma


def test_focal_set_loss_matches_a_numpy_reference():
    """spec §3.4 on given matches: focal over all (L, B, Q, K) / num_boxes (unmatched
    queries: all-zero targets), L1 and 1 - GIoU of matched pairs / num_boxes, weights
    2 / 5 / 2 per layer; an unmatched (-1) and a padding slot add nothing."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 2, 5, 3)).astype(np.float32)
    pred = rng.uniform(0.2, 0.6, size=(2, 2, 5, 4)).astype(np.float32)
    boxes = rng.uniform(0.2, 0.6, size=(2, 3, 4)).astype(np.float32)
    labels = np.array([[2, 0, 1], [1, 1, 0]])
    valid = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    indices = np.array([[[4, 1, 3], [0, -1, -1]], [[2, 0, 1], [3, -1, 2]]], np.int32)
    outputs = {"pred_logits": logits[-1], "pred_boxes": pred[-1],
               "aux_pred_logits": logits[:-1], "aux_pred_boxes": pred[:-1]}
    targets = {"boxes": boxes, "labels": labels, "valid": valid}
    losses = focal_set_loss(outputs, targets, indices, 3.0, _tiny().loss)
    total = 0.0
    for lay in range(2):
        target, l1, giou = np.zeros((2, 5, 3)), 0.0, 0.0
        for b in range(2):
            for n in range(3):
                q = indices[lay, b, n]
                if valid[b, n] and q >= 0:
                    target[b, q, labels[b, n]] = 1
                    l1 += np.abs(pred[lay, b, q] - boxes[b, n]).sum()
                    giou += 1 - elementwise_generalized_box_iou(
                        box_cxcywh_to_xyxy(pred[lay, b, q][None]),
                        box_cxcywh_to_xyxy(boxes[b, n][None])).numpy()[0]
        ce = _np_focal(logits[lay], target).sum() / 3.0
        name = "" if lay == 1 else "_0"
        np.testing.assert_allclose(losses[f"loss_ce{name}"].numpy(), ce, rtol=1e-5)
        np.testing.assert_allclose(losses[f"loss_bbox{name}"].numpy(), l1 / 3.0, rtol=1e-5)
        np.testing.assert_allclose(losses[f"loss_giou{name}"].numpy(), giou / 3.0, rtol=1e-5)
        total += 2 * ce + 5 * l1 / 3.0 + 2 * giou / 3.0
    np.testing.assert_allclose(losses["loss"].numpy(), total, rtol=1e-5)


def test_matcher_uses_the_focal_class_cost():
    """Two queries on the same box: the one whose sigmoid class score is high wins (a
    softmax cost over K = 1 column would be constant and could not choose)."""
    boxes = np.array([[[0.5, 0.5, 0.2, 0.2]]], np.float32)
    pred = np.array([[[[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2], [0.1, 0.1, .1, .1]]]],
                    np.float32)
    for good in (0, 1):
        logits = np.full((1, 1, 3, 1), -3.0, np.float32)
        logits[0, 0, good, 0] = 3.0
        idx = match_layers(logits, pred, boxes, np.zeros((1, 1), np.int32),
                           np.ones((1, 1), np.float32))
        assert idx.numpy().tolist() == [[[good]]]
    cost = focal_class_cost(np.array([[[0.0]]], np.float32), np.zeros((1, 1), np.int32))
    p = 0.5
    np.testing.assert_allclose(cost.numpy()[0, 0, 0], 0.25 * 0.25 * -np.log(p + 1e-8)
                               - 0.75 * 0.25 * -np.log(1 - p + 1e-8), rtol=1e-6)


def test_family_loss_gives_every_weight_a_gradient(tiny_batch):
    """The bound family's training loss (training=True, matching, global box count) on
    a tiny batch: finite, and a gradient for the sampling offsets, reference points,
    heads and backbone."""
    config = _tiny()
    task = registry.make_task(config)
    keras.utils.set_random_seed(0)
    model = task.build_model()
    # the official init zeroes bbox_embed's last layer, which leaves its first two
    # layers without gradient at step 0: move it off zero to see every path
    last = model.bbox_embed.layers_[-1]
    last.kernel.assign(tf.random.normal(last.kernel.shape, stddev=0.1, seed=1))
    batch = {"image": tiny_batch[0], "mask": tiny_batch[1],
             "boxes": tf.constant([[[0.5, 0.5, 0.3, 0.4], [0, 0, 0, 0]],
                                   [[0.3, 0.6, 0.2, 0.2], [0.7, 0.3, 0.1, 0.2]]]),
             "labels": tf.zeros((2, 2), tf.int32),
             "valid": tf.constant([[1.0, 0.0], [1.0, 1.0]])}
    with tf.GradientTape() as tape:
        losses = task.loss(model, batch)
    assert set(task.loss_keys) <= set(losses) and np.isfinite(losses["loss"].numpy())
    grads = dict(zip([v.path for v in model.trainable_variables],
                     tape.gradient(losses["loss"], model.trainable_variables)))
    dead = [k for k, g in grads.items() if g is None or not np.any(np.asarray(g))]
    assert not dead, dead


# ------------------------------------------------------------------ R50, the fixture


def _fixture():
    golden = require_shared("golden")
    spec = importlib.util.spec_from_file_location("synth_weights", golden / "synth_weights.py")
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    with open(golden / "deformable_detr_r50.json") as f:
        manifest = json.load(f)
    return (manifest, dict(np.load(golden / "deformable_detr_r50.npz")),
            synth.state_dict(manifest), synth.inputs(manifest))


@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    """The fixture's state_dict saved as an .npz, converted by prtr-convert with
    configs/deformable_detr_r50_coco.py, the weights loaded into a fresh model; one
    forward pass."""
    manifest, f, sd, inputs = _fixture()
    path = tmp_path_factory.mktemp("ddetr") / "state_dict.npz"
    np.savez(path, **sd)
    weights = path.with_name("coco.weights.h5")
    code, log = _convert(CONFIGS / "deformable_detr_r50_coco.py", path, weights)
    assert code == 0, log[-2000:]
    config = load_config("configs/deformable_detr_r50_coco.py")
    model, prepared = registry.get(config).prepare_official(config.model,
                                                            read_state_dict(str(path)))
    copied = [k for k in prepared]
    model.load_weights(str(weights))   # what prtr-convert wrote
    batch, mask, sizes = pad_nchw([inputs["image0"], inputs["image1"]])
    np.testing.assert_array_equal(mask, f["mask"])
    out = {k: v.numpy() for k, v in model(tf.constant(batch), mask=tf.constant(mask)).items()}
    return dict(manifest=manifest, f=f, sd=sd, model=model, copied=copied, out=out,
                batch=batch, mask=mask, sizes=sizes, path=path)


@pytest.mark.slow
def test_r50_parameter_count_and_import(r50):
    model = r50["model"]
    frozen = {id(v) for layer in model._flatten_layers() if isinstance(layer, FrozenBatchNorm)
              for v in layer.weights}
    count = sum(int(np.prod(v.shape)) for v in model.weights if id(v) not in frozen)
    print(f"parameters (official sum(p.numel()), FrozenBN buffers excluded): {count:,}")
    assert count == 40_069_665
    assert len(r50["copied"]) + 8 * 5 == len(r50["manifest"]["tensors"]) == 561


@pytest.mark.slow
def test_r50_forward_and_postprocess_match_the_fixture(r50):
    f, out, model = r50["f"], r50["out"], r50["model"]
    report = {k: float(np.abs(out[k] - f[k]).max()) for k in
              ("pred_logits", "pred_boxes", "aux_pred_logits", "aux_pred_boxes")}
    got = {k: v.numpy() for k, v in model.postprocess(out, r50["sizes"], 100).items()}
    report["postprocess_scores"] = float(np.abs(got["scores"] - f["postprocess_scores"]).max())
    print("Deformable DETR R50 vs fixture max |d|: "
          + ", ".join(f"{k} {v:.2e}" for k, v in report.items()))
    assert max(report.values()) <= TOL
    ref = {k: f[f"postprocess_{k}"] for k in ("scores", "labels", "query", "boxes")}
    row = topk_rows("postprocess", got, ref)
    print(row)
    assert row[2], row


@pytest.mark.slow
def test_r50_person_model_matches_the_fixtures_person_detections(r50):
    """configs/deformable_detr_r50_person.py from the same 91-class checkpoint: its
    top-100 equals the fixture's person_* (the official PostProcess on logits[..., 1:2])
    and the full model's person-column postprocess."""
    config = load_config("configs/deformable_detr_r50_person.py")
    model, sd = registry.get(config).prepare_official(config.model, r50["sd"])
    model.load_official(sd)
    out = model(tf.constant(r50["batch"]), mask=tf.constant(r50["mask"]))
    np.testing.assert_allclose(out["pred_logits"].numpy()[..., 0],   # float32 rounding
                               r50["out"]["pred_logits"][..., 1], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(out["pred_boxes"].numpy(), r50["out"]["pred_boxes"])
    got = {k: v.numpy() for k, v in model.postprocess(out, r50["sizes"], 100).items()}
    f = r50["f"]
    ref = {k: f[f"person_{k}"] for k in ("scores", "query", "boxes")}
    assert np.abs(got["scores"] - ref["scores"]).max() <= TOL
    got["labels"] = None
    row = topk_rows("person", got, ref)
    print(row)
    assert row[2], row


# ------------------------------------------------------------------ the parity tool


def test_topk_rule_allows_ties_and_the_last_place_only():
    """tools/parity_deformable_detr.topk_rows: swaps between near-equal scores and a
    different k-th entry pass; a different pair ranked above the ties, or a box off by
    more than 0.05 px, fails."""
    ref = dict(scores=np.array([[0.9, 0.8, 0.8 - 5e-6, 0.5, 0.4]]),
               query=np.array([[3, 1, 2, 7, 9]]), labels=np.array([[0, 0, 0, 1, 1]]),
               boxes=np.arange(20, dtype=np.float64).reshape(1, 5, 4))
    swapped = {k: v.copy() for k, v in ref.items()}
    for k in ("query", "labels", "boxes"):
        swapped[k][0, [1, 2]] = ref[k][0, [2, 1]]
    swapped["query"][0, 4] = 11                       # another 5th place
    assert topk_rows("t", swapped, ref)[2]
    wrong = {k: v.copy() for k, v in ref.items()}
    wrong["labels"][0, 3] = 0                         # (7, 0) instead of (7, 1)
    assert not topk_rows("t", wrong, ref)[2]
    reordered = {k: v.copy() for k, v in ref.items()}
    for k in ("query", "labels", "boxes"):           # same set, but 0.9 <-> 0.5 swapped
        reordered[k][0, [0, 3]] = ref[k][0, [3, 0]]
    assert not topk_rows("t", reordered, ref)[2]
    moved = {k: v.copy() for k, v in ref.items()}
    moved["boxes"][0, 0, 0] += 0.06
    assert not topk_rows("t", moved, ref)[2]


@pytest.mark.slow
def test_parity_tool_passes_the_fixture():
    from tools import parity
    manifest = require_shared("golden", "deformable_detr_r50.json")
    out = io.StringIO()
    passed = parity.check(str(manifest), out=out)
    report = out.getvalue()
    print(report)
    assert passed, report
    for row in ("mask_l3", "valid_ratios", "reference_points", "pred_logits", "pred_boxes",
                "aux_pred_logits", "postprocess_scores", "person_scores", "tensors",
                "postprocess sets", "person sets"):
        assert f"ok   {row}" in report, f"{row} was not compared:\n{report}"
