"""The deformable keypoint Transformer (prtr_tf/models/keypoint/deformable.py,
``model.kind = "prtr_deformable"``): parameter counts of the official configs, the
official import through prtr-convert (the shared fixture ``deform_prtr_res50_384x288``
end to end, and a tiny made-up state_dict for the head-copy checks), and the tiny
config trained, evaluated and exported (SavedModel serve_crops, TFLite fp32 builtin
ops only, ONNX), each export against Keras on the same crops.
The parity tool on the fixture (every intermediate array): tests/tools/test_parity.py
style, here `test_parity_tool_on_fixture`.
"""
import io
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.checkpoints import weights
from prtr_tf.checkpoints.convert import convert
from prtr_tf.config import load_config
from prtr_tf.data.keypoint_sets import DATASETS
from prtr_tf.export import onnx as onnx_export
from prtr_tf.export.tflite import convert as tflite_convert
from prtr_tf.export.tflite import flatbuffer, runtime
from prtr_tf.models import registry
from prtr_tf.models.keypoint.deformable import (DeformablePoseTransformer,
                                                import_official_state_dict)
from prtr_tf.models.keypoint.predict import predict_crops
from prtr_tf.models.keypoint.readout import readout
from prtr_tf.checkpoints.deformable_import import OfficialWeightsError, official_mapping
from prtr_tf.nn.layers import count_parameters
from prtr_tf.serving.saved_model import export_saved_model
from tests.conftest import require_shared

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)


@pytest.mark.slow
@pytest.mark.parametrize("name, total, trainable", [
    ("coco_deform_res50_384x288", 46_251_734, 46_029_334),
    ("coco_deform_res101_384x288", 65_191_638, 64_969_238)])
def test_official_config_parameter_counts(name, total, trainable):
    """Official counts (deformable-spec.md §0): all parameters, and trainable with the
    stem and layer1 frozen; the sampling offsets and reference points of all 12
    attention layers go to the backbone LR group (spec §1.9)."""
    config = load_config(name)
    assert registry.get(config).name == "prtr_deformable"
    assert config.train.epochs == 100 and tuple(config.train.lr_steps) == (50, 70)
    assert (config.train.lr, config.train.lr_backbone) == (1e-4, 1e-5)
    model = registry.build_model(config)
    assert isinstance(model, DeformablePoseTransformer)
    assert count_parameters(model) == total
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == trainable
    extra = [v.path for v in model.backbone_lr_variables()
             if not any(v is b for b in model.backbone.trainable_variables)]
    assert len(extra) == 2 * 12 + 2
    assert sum("sampling_offsets" in p for p in extra) == 24


# ------------------------------------------------------------------ official import


def _tiny_official_state_dict(seed=0):
    """A state_dict with the official names of the tiny deformable model (heads stored
    once per decoder layer, as the official file does), random values."""
    config = load_config("deform_tiny")
    model = registry.build_model(config)
    rng = np.random.default_rng(seed)
    sd = {name: rng.normal(scale=0.2, size=shape).astype(np.float32)
          for name, (shape, _) in official_mapping(model).items()}
    for name in [k for k in sd if k.endswith("running_var")]:  # a variance, >= 0
        sd[name] = np.abs(sd[name]) + 0.5
    for name in [k for k in sd if k.startswith(("class_embed.0.", "kpt_embed.0."))]:
        head, _, tail = name.split(".", 2)
        for k in range(1, config.model.dec_layers):
            sd[f"{head}.{k}.{tail}"] = sd[name].copy()
    return config, sd


def test_convert_tiny_state_dict_and_refuse_differing_head_copies(tmp_path):
    """prtr-convert's library path: an official-layout state_dict (with ``module.``
    prefixes) converts and loads back exactly; a file whose head copies differ, or lack
    one, is refused with a message naming them, and no output is written."""
    config, sd = _tiny_official_state_dict()
    path, out = str(tmp_path / "tiny.npz"), str(tmp_path / "tiny.weights.h5")
    np.savez(path, **{f"module.{k}": v for k, v in sd.items()})
    convert(config, path, out)
    model, _, _ = weights.load_model(config, out, fold=False)
    np.testing.assert_array_equal(model.query_embed.embeddings.numpy(),
                                  sd["query_embed.weight"])
    np.testing.assert_array_equal(model.transformer.level_embed.embeddings.numpy(),
                                  sd["transformer.level_embed"])
    np.testing.assert_array_equal(model.class_embed.kernel.numpy(),
                                  sd["class_embed.1.weight"].T)
    np.testing.assert_array_equal(model.input_proj.norms[3].gamma.numpy(),
                                  sd["input_proj.3.1.weight"])
    # A self-contained model file: loaded with no config, the same outputs.
    convert(config, path, str(tmp_path / "tiny.keras"))
    loaded, recorded, _ = weights.load_model(None, str(tmp_path / "tiny.keras"), fold=False)
    assert recorded.model.to_dict() == config.model.to_dict()
    crops = tf.random.stateless_uniform((2, *config.model.image_size, 3), (3, 4))
    for k in ("pred_logits", "pred_coords"):
        expected = model(crops, training=False)[k].numpy()
        assert np.isfinite(expected).all()
        np.testing.assert_array_equal(loaded(crops, training=False)[k].numpy(), expected)

    bad = dict(sd)
    bad["class_embed.1.bias"] = bad["class_embed.1.bias"] + 1e-3
    np.savez(path, **bad)
    with pytest.raises(OfficialWeightsError, match=r"differ from copy 0.*class_embed\.1\.bias"):
        convert(config, path, str(tmp_path / "bad.weights.h5"))
    bad = {k: v for k, v in sd.items() if k != "kpt_embed.1.layers.2.bias"}
    np.savez(path, **bad)
    with pytest.raises(OfficialWeightsError, match=r"missing: kpt_embed\.1\.layers\.2\.bias"):
        convert(config, path, str(tmp_path / "bad.weights.h5"))
    assert not os.path.exists(tmp_path / "bad.weights.h5")
    bad = {k: v for k, v in sd.items() if k != "transformer.level_embed"}
    bad["query_embed.weight"] = np.zeros_like(sd["query_embed.weight"])
    with pytest.raises(OfficialWeightsError, match=r"missing tensor.*transformer\.level_embed"):
        import_official_state_dict(model, bad)
    np.testing.assert_array_equal(model.query_embed.embeddings.numpy(),
                                  sd["query_embed.weight"])  # nothing assigned


def _fixture():
    import importlib.util
    import json

    golden = require_shared("golden")
    spec = importlib.util.spec_from_file_location("synth_weights", golden / "synth_weights.py")
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    manifest = json.loads((golden / "deform_prtr_res50_384x288.json").read_text())
    return (manifest, synth.state_dict(manifest), synth.inputs(manifest),
            dict(np.load(golden / "deform_prtr_res50_384x288.npz")))


@pytest.mark.slow
def test_prtr_convert_cli_on_the_official_fixture(tmp_path):
    """The fixture's state_dict (561 official tensors, 6 head copies) through
    ``python -m prtr_tf.cli.convert`` into a model file (.keras), loaded with no config
    as inference loads it (frozen BN folded):
    logits and coordinates of every layer within 1e-4, the readout queries identical."""
    manifest, sd, inputs, expected = _fixture()
    assert len(sd) == 561
    ckpt, out = str(tmp_path / "deform.npz"), str(tmp_path / "deform.keras")
    np.savez(ckpt, **sd)
    proc = subprocess.run(
        [sys.executable, "-m", "prtr_tf.cli.convert", "--config=coco_deform_res50_384x288",
         f"--checkpoint={ckpt}", f"--output={out}"],
        capture_output=True, text=True, env=ENV, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model, config, _ = weights.load_model(None, out)  # the model file's own config
    assert tuple(config.model.image_size) == tuple(manifest["image_size_hw"])
    got = model(tf.constant(np.transpose(inputs["images"], (0, 2, 3, 1))), training=False)
    report = {k: float(np.abs(got[k].numpy() - expected[k]).max())
              for k in ("pred_logits", "pred_coords", "aux_pred_logits", "aux_pred_coords")}
    print("prtr-convert + forward max |d|: " +
          ", ".join(f"{k} {v:.2e}" for k, v in report.items()))
    assert max(report.values()) <= 1e-4
    query = readout(got["pred_logits"], got["pred_coords"])["query"].numpy()
    np.testing.assert_array_equal(query, expected["readout_query"])


@pytest.mark.slow
def test_parity_tool_on_fixture():
    """tools/parity.py's prtr-deformable runner: every array it computes passes, every
    output array of the fixture is compared (``msda_output`` from the fixture's own
    core inputs), every tensor used."""
    from tools import parity

    manifest = require_shared("golden", "deform_prtr_res50_384x288.json")
    out = io.StringIO()
    passed = parity.check(str(manifest), out=out)
    report = out.getvalue()
    print(report)
    assert passed, report
    for array in ("backbone_features", "src_proj_l2", "src_proj_l3", "pos_embed_l3",
                  "memory_l2", "memory_l3", "memory_mean", "reference_points",
                  "decoder_output", "pred_logits", "pred_coords", "aux_pred_logits",
                  "aux_pred_coords", "dec0_sampling_locations", "enc0_attention_weights_l3",
                  "readout_query", "readout_scores", "readout_coords", "msda_output"):
        assert f"ok   {array} " in report, f"{array} was not compared:\n{report}"
    assert "ok   tensors              every tensor used: 521 copied, 40" in report


# ------------------------------------------------------------------ tiny: train, eval, export


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """deform_tiny trained a few steps on its own synthetic set, evaluated after the
    epoch; (model loaded as inference loads it, config, history, tmp dir)."""
    from prtr_tf.training.trainer import Trainer

    tmp = tmp_path_factory.mktemp("deform_tiny")
    config = load_config("deform_tiny")
    config.data.root = str(tmp / "data")
    config.data.train_ann, config.data.train_images = ("train/person_keypoints.json",
                                                       "train/images")
    config.data.val_ann, config.data.val_images = "val/person_keypoints.json", "val/images"
    config.data.synthetic = {"train": (4, 11), "val": (2, 12)}
    config.data.flip = False
    t = config.train
    t.batch_size, t.steps_per_epoch, t.epochs, t.eval_every_epochs = 4, 3, 1, 1
    t.checkpoint_every_steps, t.log_every_steps = 0, 1
    keras.utils.set_random_seed(0)
    history = Trainer(config, str(tmp / "run"), strategy="default").fit()
    model, config, _ = weights.load_model(config, str(tmp / "run"))
    return model, config, history, tmp


def _crops(config, n=3, seed=1):
    h, w = config.model.image_size
    return np.random.RandomState(seed).normal(size=(n, h, w, 3)).astype(np.float32)


def test_tiny_trains_and_evaluates(trained):
    """Finite losses of the keypoint family's terms, and an AP from its evaluation."""
    model, config, history, _ = trained
    assert isinstance(model, DeformablePoseTransformer)
    last = history[-1]
    for key in ("loss", "loss_ce", "loss_kpt"):
        assert np.isfinite(last[key]), last
    assert 0.0 <= last["AP"] <= 1.0, last


def _keras_query(model, crops):
    out = model(tf.constant(crops), training=False)
    return readout(out["pred_logits"], out["pred_coords"])["query"].numpy()


@pytest.mark.slow  # ~110 s on 2 idle cores (tf2onnx of the deformable graph)
def test_tiny_saved_model_and_onnx_match_keras(trained):
    """SavedModel ``serve_crops`` (flip test as configured) and its ONNX conversion
    against Keras on the same crops: pixels within 1e-4, scores within 1e-5, the
    readout queries identical."""
    model, config, _, tmp = trained
    h, w = config.model.image_size
    crops = _crops(config)
    serving = registry.get(config).serving(model, config)
    saved = str(tmp / "saved_model")
    export_saved_model(serving, saved)
    flip_pairs = DATASETS["coco"]["flip_pairs"] if config.test.flip_test else None
    coords, scores = predict_crops(model, tf.constant(crops), flip_pairs)
    query = _keras_query(model, crops)
    loaded = tf.saved_model.load(saved)
    got = {k: v.numpy() for k, v in
           loaded.signatures["serve_crops"](images=tf.constant(crops)).items()}
    onnx_path = str(tmp / "crops.onnx")
    onnx_export.convert(saved, onnx_path, "serve_crops")
    ort = onnx_export.run(onnx_path, {"images": crops})
    for name, other in (("saved_model", got), ("onnx", ort)):
        dev = np.abs(other["keypoints"] - coords.numpy() * [w, h]).max()
        print(f"{name} vs Keras max |d| px {dev:.2e}")
        assert dev <= 1e-4, name
        assert np.abs(other["keypoint_scores"] - scores.numpy()).max() <= 1e-5, name
        np.testing.assert_array_equal(other["query"], query)


@pytest.mark.slow
def test_tiny_tflite_fp32_builtin_ops_match_keras(trained):
    """TFLite fp32 (builtin ops only: no Flex, no custom op) against Keras on the same
    crops, without flip test: pixels within 1e-4, scores within 1e-5, queries identical."""
    model, config, _, _ = trained
    h, w = config.model.image_size
    crops = _crops(config)
    query = _keras_query(model, crops)
    lite = tflite_convert.convert_keypoint_model(model, config, "fp32")
    ops = flatbuffer.list_ops(lite)
    assert not [op for op in ops if op.startswith("CUSTOM") or "Flex" in op], ops
    coords, scores = predict_crops(model, tf.constant(crops))
    runs = [runtime.run_tflite(lite, crops[i:i + 1]) for i in range(len(crops))]
    lite_out = {k: np.concatenate([r[k] for r in runs]) for k in runs[0]}
    dev = np.abs(lite_out["keypoints_px"] - coords.numpy() * [w, h]).max()
    print(f"tflite fp32 vs Keras max |d| px {dev:.2e}")
    assert dev <= 1e-4
    np.testing.assert_allclose(lite_out["keypoint_scores"], scores.numpy(), atol=1e-5)
    np.testing.assert_array_equal(lite_out["query"], query)


def test_backbone_levels_choose_the_last_maps_and_keep_the_strides():
    """``model.backbone_levels`` 2 (configs/demo_deform_keypoints.py): the last two
    backbone maps (tiny: C3, C4, strides 8 and 16) + two extra stride-2 levels, i.e. the
    official strides 8..64; the default reads C2..C4 (strides 4..32). Rules out the
    first maps read instead of the last, and a count that is ignored."""
    crops = tf.zeros((1, 128, 96, 3))
    shapes = {}
    for n in (None, 2):
        c = load_config("deform_tiny")
        if n is not None:
            c.model.backbone_levels = n
        keras.utils.set_random_seed(0)
        model = registry.build_model(c)
        features = model.backbone_levels(crops)
        shapes[n] = [tuple(s.shape[1:3]) for s in model.input_proj(features)]
        levels = model.backbone(crops, return_levels=True)
        assert model.input_proj.convs[0].kernel.shape[2] == \
            levels[sorted(levels, key=lambda k: int(k[1:]))[-(n or 3)]].shape[-1]
    assert shapes[None] == [(32, 24), (16, 12), (8, 6), (4, 3)]
    assert shapes[2] == [(16, 12), (8, 6), (4, 3), (2, 2)]
    c = load_config("deform_tiny")
    c.model.backbone_levels = 5
    with pytest.raises(ValueError, match="backbone_levels=5"):
        registry.build_model(c)
    assert load_config("demo_deform_keypoints").model.backbone_levels == 2
