"""The deformable transformer (prtr_tf/nn/deformable_transformer.py) and its encodings
(prtr_tf/nn/deformable_position.py) against the official fixtures
``deform_prtr_res50_384x288`` (deformable PRTR) and ``deformable_detr_r50`` (Deformable
DETR, padding masks), plus the official-name import and the exports of a small block.

What the fixtures check here (|Δ| ≤ 1e-4 unless said):
- the import of all 231 official ``transformer.*`` tensors (names, transposes, the
  decoder's out-of-order norm names);
- sine encodings (PRTR: no offset, no mask; DDETR: cumsum - 0.5 over the mask), nearest
  level masks (exact) and valid ratios (DDETR);
- decoder reference points and decoder layer 0's sampling locations / attention weights,
  encoder layer 0's for the level-3 queries (from the fixture's ``src_proj_l3``);
- end to end: the parity tool's runners over the whole models (see the note before the
  Deformable DETR tests), not repeated here.
"""
import importlib.util
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.nn.deformable_position import (DDETR_OFFSET, nearest_level_mask, sine_encoding,
                                            valid_ratio)
from prtr_tf.checkpoints.deformable_import import (OfficialWeightsError, load_official,
                                                 official_mapping)
from prtr_tf.nn.deformable_transformer import DeformableTransformer, encoder_reference_points
from tests.conftest import require_shared

TOL = 1e-4


def _fixture(name):
    golden = require_shared("golden")
    spec = importlib.util.spec_from_file_location("synth_weights", golden / "synth_weights.py")
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    with open(golden / f"{name}.json") as f:
        manifest = json.load(f)
    arrays = dict(np.load(golden / f"{name}.npz"))
    return manifest, arrays, synth.state_dict(manifest), synth.inputs(manifest)


def _build(manifest, state_dict):
    m = manifest["model"]
    dropout = 0.1 if manifest["format"] == "deformable-detr" else 0.0
    keras.utils.set_random_seed(0)
    tr = DeformableTransformer(m["hidden_dim"], m["nheads"], m["enc_layers"], m["dec_layers"],
                               m["dim_feedforward"], dropout, m["num_feature_levels"],
                               m["dec_n_points"], m["enc_n_points"])
    shapes = [tuple(s) for s in m["spatial_shapes"]]
    # the weights do not depend on the map sizes: built on 2x2 maps and 1 query (fast)
    srcs = [tf.zeros((1, 2, 2, m["hidden_dim"]))] * len(shapes)
    tr(srcs, srcs, tf.zeros((2, 2 * m["hidden_dim"])))
    loaded = load_official(tr, state_dict)
    return tr, shapes, loaded


@pytest.fixture(scope="module")
def prtr():
    manifest, arrays, sd, inputs = _fixture("deform_prtr_res50_384x288")
    tr, shapes, loaded = _build(manifest, sd)
    return dict(manifest=manifest, f=arrays, sd=sd, inputs=inputs, tr=tr, shapes=shapes,
                loaded=loaded)


@pytest.fixture(scope="module")
def ddetr():
    manifest, arrays, sd, inputs = _fixture("deformable_detr_r50")
    tr, shapes, loaded = _build(manifest, sd)
    return dict(manifest=manifest, f=arrays, sd=sd, inputs=inputs, tr=tr, shapes=shapes,
                loaded=loaded)


def _nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def _tokens(x):
    """(B, C, H, W) -> (B, H W, C) row-major, as the official flatten(2).transpose(1, 2)."""
    b, c = x.shape[:2]
    return np.transpose(x.reshape(b, c, -1), (0, 2, 1))


# ------------------------------------------------------------------ import


def test_import_maps_every_transformer_tensor(prtr):
    """All 231 official ``transformer.*`` tensors are assigned, with torch Linear weights
    transposed, the packed decoder self-attention split into q/k/v and the decoder's
    norm names kept (norm2 after self-attention, norm1 after cross-attention)."""
    sd, tr = prtr["sd"], prtr["tr"]
    official = sorted(k for k in sd if k.startswith("transformer."))
    assert len(official) == 231 and sorted(prtr["loaded"]) == official
    enc, dec = tr.encoder_layers[3], tr.decoder_layers[5]
    p = "transformer.encoder.layers.3.self_attn."
    np.testing.assert_array_equal(enc.self_attn.sampling_offsets.kernel.numpy(),
                                  sd[p + "sampling_offsets.weight"].T)
    np.testing.assert_array_equal(enc.self_attn.value_proj.bias.numpy(),
                                  sd[p + "value_proj.bias"])
    p = "transformer.decoder.layers.5."
    np.testing.assert_array_equal(dec.norm2.gamma.numpy(), sd[p + "norm2.weight"])
    np.testing.assert_array_equal(dec.norm1.gamma.numpy(), sd[p + "norm1.weight"])
    wk = sd[p + "self_attn.in_proj_weight"][256:512]
    np.testing.assert_array_equal(dec.self_attn._key_dense.kernel.numpy().reshape(256, 256),
                                  wk.T)
    np.testing.assert_array_equal(tr.level_embed.embeddings.numpy(),
                                  sd["transformer.level_embed"])
    assert set(official_mapping(tr)) == set(official)


def test_import_errors_name_every_problem(prtr):
    """A missing, an unknown and a mis-shaped tensor give one error naming all three, and
    nothing is assigned (an import never half-loads)."""
    sd, tr = dict(prtr["sd"]), prtr["tr"]
    before = tr.reference_points.kernel.numpy().copy()
    sd.pop("transformer.decoder.layers.2.norm3.bias")
    sd["transformer.decoder.layers.2.norm4.bias"] = np.zeros(256, np.float32)
    sd["transformer.reference_points.weight"] = np.zeros((4, 256), np.float32)
    sd["transformer.level_embed"] = np.zeros((4, 256), np.float32)  # must not be applied
    with pytest.raises(OfficialWeightsError) as err:
        load_official(tr, sd)
    text = str(err.value)
    for name in ("decoder.layers.2.norm3.bias", "decoder.layers.2.norm4.bias",
                 "reference_points.weight"):
        assert name in text
    np.testing.assert_array_equal(tr.reference_points.kernel.numpy(), before)
    np.testing.assert_array_equal(tr.level_embed.embeddings.numpy(),
                                  prtr["sd"]["transformer.level_embed"])


# ------------------------------------------------------------------ deformable PRTR


def test_prtr_position_encoding(prtr):
    """PRTR's sine encoding: (k + 1) / (n + 1e-6) 2π, no mask. DDETR's -0.5 offset on the
    same maps is far off (the check can tell the two variants apart)."""
    f = prtr["f"]
    for lvl in (2, 3):
        h, w = prtr["shapes"][lvl]
        pos = sine_encoding((2, h, w)).numpy()
        assert np.abs(pos - _nhwc(f[f"pos_embed_l{lvl}"])).max() <= 1e-5
        shifted = sine_encoding((2, h, w), DDETR_OFFSET).numpy()
        assert np.abs(shifted - _nhwc(f[f"pos_embed_l{lvl}"])).max() > 1e-2


def test_prtr_reference_points_and_decoder_layer0_sampling(prtr):
    """sigmoid(reference_points(query_pos)) with query_pos = query_embed[:, :256] and
    decoder layer 0's self-attention -> norm2 -> offsets / softmax weights
    (rules out swapped query_embed halves, norm1/norm2 swapped, (H, W) normaliser)."""
    f, tr, sd = prtr["f"], prtr["tr"], prtr["sd"]
    tgt, qpos, ref = tr.decoder_inputs(sd["query_embed.weight"], 2)
    assert np.abs(ref.numpy() - f["reference_points"]).max() <= TOL
    layer = tr.decoder_layers[0]
    tgt = layer.self_attention(tgt, qpos)
    ref_in = tf.tile(tf.expand_dims(ref, 2), [1, 1, 4, 1])
    loc, attw = layer.cross_attn.sampling(tgt + qpos, ref_in, prtr["shapes"])
    d_loc = np.abs(loc.numpy() - f["dec0_sampling_locations"]).max()
    d_att = np.abs(attw.numpy() - f["dec0_attention_weights"]).max()
    print(f"PRTR dec0 sampling locations {d_loc:.2e}, attention weights {d_att:.2e}")
    assert d_loc <= TOL and d_att <= TOL


def test_prtr_encoder_layer0_sampling_level3(prtr):
    """Encoder layer 0 for the 30 level-3 queries, from the fixture's src_proj_l3:
    q = src + pos + level_embed[3], reference = own pixel centre (+0.5)."""
    f, tr, sd = prtr["f"], prtr["tr"], prtr["sd"]
    query = _tokens(f["src_proj_l3"]) + _tokens(f["pos_embed_l3"]) + \
        sd["transformer.level_embed"][3]
    ref = encoder_reference_points(prtr["shapes"])[:, -30:]
    loc, attw = tr.encoder_layers[0].self_attn.sampling(query, tf.tile(ref, [2, 1, 1, 1]),
                                                        prtr["shapes"])
    assert np.abs(loc.numpy() - f["enc0_sampling_locations_l3"]).max() <= TOL
    assert np.abs(attw.numpy() - f["enc0_attention_weights_l3"]).max() <= TOL


# The whole model (backbone, input_proj, this transformer, the heads) against the
# fixture's outputs: the parity tool's runners, run by
# tests/keypoint/test_deformable.py::test_parity_tool_on_fixture and
# tests/detector/test_deformable_detr.py::test_parity_tool_passes_the_fixture (memory,
# decoder output, logits and coordinates of every layer; masks and valid ratios).


# ------------------------------------------------------------------ Deformable DETR


def test_ddetr_masks_valid_ratios_and_position_encoding(ddetr):
    """Per-level masks = torch nearest (legacy) resize of the image mask (exact), valid
    ratios in (w, h) order per level, and the sine encoding with the -0.5 offset over the
    valid pixels (compared where the level is unpadded)."""
    f = ddetr["f"]
    mask = tf.constant(f["mask"])
    ratios = []
    for lvl, (h, w) in enumerate(ddetr["shapes"]):
        level = nearest_level_mask(mask, (h, w)).numpy()
        np.testing.assert_array_equal(level, f[f"mask_l{lvl}"])
        ratios.append(valid_ratio(level).numpy())
    np.testing.assert_allclose(np.stack(ratios, 1), f["valid_ratios"], atol=1e-7)
    for lvl in (2, 3):
        valid = ~f[f"mask_l{lvl}"]
        pos = sine_encoding(f[f"mask_l{lvl}"], DDETR_OFFSET).numpy()
        assert np.abs(pos - _nhwc(f[f"pos_embed_l{lvl}"]))[valid].max() <= 1e-5
        unshifted = sine_encoding(f[f"mask_l{lvl}"]).numpy()
        assert np.abs(unshifted - _nhwc(f[f"pos_embed_l{lvl}"]))[valid].max() > 1e-3


def test_ddetr_sampling_with_valid_ratios(ddetr):
    """Decoder layer 0 (reference x valid ratios per level) and encoder layer 0's level-3
    queries (reference normalised by the valid extent, rescaled per level)."""
    f, tr, sd, shapes = ddetr["f"], ddetr["tr"], ddetr["sd"], ddetr["shapes"]
    vr = tf.constant(f["valid_ratios"])
    tgt, qpos, ref = tr.decoder_inputs(sd["query_embed.weight"], 2)
    assert np.abs(ref.numpy() - f["reference_points"]).max() <= TOL
    layer = tr.decoder_layers[0]
    tgt = layer.self_attention(tgt, qpos)
    ref_in = tf.expand_dims(ref, 2) * tf.expand_dims(vr, 1)
    loc, attw = layer.cross_attn.sampling(tgt + qpos, ref_in, shapes)
    d_loc = np.abs(loc.numpy() - f["dec0_sampling_locations"]).max()
    assert d_loc <= TOL
    assert np.abs(attw.numpy() - f["dec0_attention_weights"]).max() <= TOL
    n3 = shapes[3][0] * shapes[3][1]
    query = _tokens(f["src_proj_l3"]) + _tokens(f["pos_embed_l3"]) + \
        sd["transformer.level_embed"][3]
    ref = encoder_reference_points(shapes, vr)[:, -n3:]
    loc, attw = tr.encoder_layers[0].self_attn.sampling(query, ref, shapes)
    assert np.abs(loc.numpy() - f["enc0_sampling_locations_l3"]).max() <= TOL
    assert np.abs(attw.numpy() - f["enc0_attention_weights_l3"]).max() <= TOL


# ------------------------------------------------------------------ a small block's exports


SMALL = [(6, 5), (3, 3)]


def _small_transformer(seed=0):
    keras.utils.set_random_seed(seed)
    tr = DeformableTransformer(32, 4, 1, 1, 64, 0.0, 2, 2, 2)
    rng = np.random.default_rng(seed)
    srcs = [rng.normal(size=(1, h, w, 32)).astype(np.float32) for h, w in SMALL]
    query = rng.normal(size=(7, 64)).astype(np.float32)
    tr([tf.constant(s) for s in srcs], [sine_encoding((1, h, w), num_pos_feats=16)
                                        for h, w in SMALL], query)
    for v in tr.weights:   # non-trivial offsets / attention so that the samples move
        if "sampling_offsets" in v.path or "attention_weights" in v.path:
            v.assign(rng.normal(scale=0.3, size=v.shape).astype(np.float32))
    return tr, srcs, query


@pytest.mark.parametrize("masked", [False, True])
def test_small_transformer_tflite_builtin_ops(masked):
    """A 2-level, 1+1-layer block converts to TFLite with builtin ops only (no Flex /
    custom op) and matches Keras: PRTR mode (constant encodings and references) and
    DDETR mode with everything mask-dependent computed in the graph (nearest level masks,
    valid ratios, masked sine encoding, masked values). The memory is compared at
    unpadded tokens only: in fully padded rows the official encoding is sin/cos of
    ~-3e6 rad, which differs between math libraries (and never reaches an output).
    (XLA of the sampling block: tests/nn/test_ms_deform_attn.py::test_xla_matches_eager.)"""
    from tensorflow.python.framework.convert_to_constants import \
        convert_variables_to_constants_v2

    tr, srcs, query = _small_transformer()
    image_mask = np.zeros((1, 12, 10), bool)
    image_mask[:, 9:, :] = True
    image_mask[:, :, 7:] = True

    def forward(s0, s1, mask):
        if masked:
            masks = [nearest_level_mask(mask, s) for s in SMALL]
            pos = [sine_encoding(m, DDETR_OFFSET, num_pos_feats=16) for m in masks]
        else:
            masks = None
            pos = [sine_encoding((1, h, w), num_pos_feats=16) for h, w in SMALL]
        out = tr([s0, s1], pos, query, masks=masks)
        return {"hs": out["hs"], "memory": out["memory"]}

    spec = [tf.TensorSpec((1,) + SMALL[0] + (32,), tf.float32, name="s0"),
            tf.TensorSpec((1,) + SMALL[1] + (32,), tf.float32, name="s1"),
            tf.TensorSpec((1, 12, 10), tf.bool, name="mask")]
    fn = tf.function(forward, input_signature=spec)
    args = [tf.constant(srcs[0]), tf.constant(srcs[1]), tf.constant(image_mask)]
    expected = {k: v.numpy() for k, v in forward(*args).items()}
    valid = np.ones(expected["memory"].shape[1], bool)
    if masked:
        valid = ~np.concatenate([nearest_level_mask(image_mask, s).numpy().reshape(-1)
                                 for s in SMALL])
        assert 0 < valid.sum() < valid.size
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], tr)
    converter.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    flatbuffer = converter.convert()
    from tests.nn.test_ms_deform_attn import _list_ops
    ops = _list_ops(flatbuffer)
    assert not [op for op in ops if op.startswith("CUSTOM") or "Flex" in op], ops
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    runner = Interpreter(model_content=flatbuffer).get_signature_runner()
    out = runner(s0=srcs[0], s1=srcs[1], mask=image_mask)
    got = sorted(out.values(), key=lambda a: a.ndim)   # memory (3-d), hs (4-d)
    delta = max(np.abs(got[0] - expected["memory"])[:, valid].max(),
                np.abs(got[1] - expected["hs"]).max())
    print(f"small transformer (masked={masked}) TFLite vs Keras max |d| {delta:.2e}")
    assert delta <= 1e-4


def test_small_transformer_training_path():
    """training=True (memory-lean sampling gradient; dropout 0 here) gives the inference
    output, and every trainable weight receives a non-zero gradient (no layer is left out
    of the graph or cut off from the loss, e.g. the offsets' path through the sampling)."""
    tr, srcs, query = _small_transformer()
    pos = [sine_encoding((1, h, w), num_pos_feats=16) for h, w in SMALL]
    srcs = [tf.constant(s) for s in srcs]
    expected = tr(srcs, pos, query)["hs"].numpy()
    with tf.GradientTape() as tape:
        hs = tr(srcs, pos, query, training=True)["hs"]
        loss = tf.reduce_sum(tf.sin(hs))
    np.testing.assert_allclose(hs.numpy(), expected, atol=1e-6)
    grads = tape.gradient(loss, tr.trainable_weights)
    dead = [v.path for v, g in zip(tr.trainable_weights, grads)
            if g is None or not np.any(tf.convert_to_tensor(g).numpy())]
    assert not dead, dead
