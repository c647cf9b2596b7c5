"""Multi-scale deformable attention (prtr_tf/nn/ms_deform_attn.py): the gather-based core
against the official core's outputs (fixture ``msda_*``) and a loop-by-loop NumPy
reference, its gradients, boundary behaviour, the `MSDeformAttn` layer (init, layouts,
padding mask) and its exports: TFLite with builtin ops only, ONNX (tf2onnx +
onnxruntime), XLA, MirroredStrategy.

Official semantics: ``ms_deform_attn_core_pytorch`` = ``F.grid_sample(bilinear,
padding_mode='zeros', align_corners=False)`` per level (deformable-spec.md §2.3).
"""
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.nn.ms_deform_attn import (MSDeformAttn, level_start_index, ms_deform_attn_core,
                                       offset_bias_grid)
from tests.conftest import REPO, require_shared

def grid_sample_reference(img, gx, gy):
    """torch ``F.grid_sample(img, grid, 'bilinear', 'zeros', align_corners=False)`` for
    one channel-last image (H, W, D) and one normalised point (gx, gy) in [-1, 1],
    written from the PyTorch documentation's formula, scalar by scalar."""
    h, w, d = img.shape
    x = ((gx + 1.0) * w - 1.0) / 2.0      # unnormalise, align_corners=False
    y = ((gy + 1.0) * h - 1.0) / 2.0
    x0, y0 = math.floor(x), math.floor(y)
    out = np.zeros(d)
    for yy in (y0, y0 + 1):
        for xx in (x0, x0 + 1):
            wgt = (1.0 - abs(x - xx)) * (1.0 - abs(y - yy))
            if 0 <= yy < h and 0 <= xx < w:
                out += wgt * img[yy, xx]
    return out


def core_reference(value, shapes, loc, attw):
    """``ms_deform_attn_core_pytorch`` by plain loops: (N, S, M, D) -> (N, Lq, M*D)."""
    n, s, m, d = value.shape
    _, lq, _, num_levels, p, _ = loc.shape
    starts = np.concatenate([[0], np.cumsum([h * w for h, w in shapes])[:-1]])
    out = np.zeros((n, lq, m, d))
    for b in range(n):
        for lvl, (h, w) in enumerate(shapes):
            img = value[b, starts[lvl]:starts[lvl] + h * w].reshape(h, w, m, d)
            for q in range(lq):
                for head in range(m):
                    for pt in range(p):
                        gx, gy = 2.0 * loc[b, q, head, lvl, pt] - 1.0
                        out[b, q, head] += attw[b, q, head, lvl, pt] * grid_sample_reference(
                            img[:, :, head], gx, gy)
    return out.reshape(n, lq, m * d)


def layer_reference(layer, query, ref, x, shapes, mask=None):
    """The official ``MSDeformAttn.forward`` in NumPy from the layer's own weights
    (kernels are torch weights transposed)."""
    def lin(dense, t):
        return t @ dense.kernel.numpy() + dense.bias.numpy()

    M, L, P = layer.n_heads, layer.n_levels, layer.n_points
    n, lq, _ = query.shape
    value = lin(layer.value_proj, x)
    if mask is not None:
        value = np.where(mask[..., None], 0.0, value)
    value = value.reshape(n, x.shape[1], M, -1)
    off = lin(layer.sampling_offsets, query).reshape(n, lq, M, L, P, 2)
    a = lin(layer.attention_weights, query).reshape(n, lq, M, L * P)
    a = np.exp(a - a.max(-1, keepdims=True))
    a = (a / a.sum(-1, keepdims=True)).reshape(n, lq, M, L, P)
    if ref.shape[-1] == 2:
        norm = np.array([[w, h] for h, w in shapes], np.float64)
        loc = ref[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
    else:
        loc = ref[:, :, None, :, None, :2] + off / P * ref[:, :, None, :, None, 2:] * 0.5
    return lin(layer.output_proj, core_reference(value, shapes, loc, a))


def random_case(rng, shapes, n=2, lq=5, m=3, d=4, p=3, low=-0.3, high=1.3):
    s = sum(h * w for h, w in shapes)
    value = rng.normal(size=(n, s, m, d))
    loc = rng.uniform(low, high, size=(n, lq, m, len(shapes), p, 2))
    attw = rng.uniform(0.0, 1.0, size=(n, lq, m, len(shapes), p))
    return value, loc, attw


SHAPES = [(5, 7), (3, 4), (2, 3), (1, 1)]   # unequal heights and widths, a 1x1 level


def test_core_matches_official_fixture():
    """The official core's output (float64) on the fixture's standalone case, whose
    locations include exact 0 and 1, pixel centres and points one pixel outside. Rules
    out align_corners=True, no -0.5 shift, border padding, (y, x) order, a wrong
    level start or heads split (all change this output by far more than 1e-4)."""
    golden = require_shared("golden")
    f = np.load(golden / "deform_prtr_res50_384x288.npz")
    loc = f["msda_sampling_locations"]
    # the case really has the boundary points (otherwise this test proves less)
    assert (loc == 0).any() and (loc == 1).any() and (loc < 0).any() and (loc > 1).any()
    shapes = f["msda_spatial_shapes"]
    out = ms_deform_attn_core(f["msda_value"], shapes, level_start_index(shapes), loc,
                              f["msda_attention_weights"]).numpy()
    delta = np.abs(out - f["msda_output"]).max()
    print(f"msda_output max |d| {delta:.2e} (float32)")
    assert out.shape == f["msda_output"].shape and out.dtype == np.float32
    assert delta <= 1e-4
    # float64 through the same graph: only the fixture's float32 storage remains
    out64 = ms_deform_attn_core(f["msda_value"].astype(np.float64), shapes, None,
                                loc.astype(np.float64),
                                f["msda_attention_weights"].astype(np.float64)).numpy()
    assert np.abs(out64 - f["msda_output"]).max() <= 1e-6


def test_core_matches_numpy_reference_unequal_levels():
    """Random locations in [-0.3, 1.3] (inside, on borders, partly and fully outside)
    over levels of unequal H != W: rules out swapped (H, W), wrong row-major token order,
    truncation instead of floor for negative coordinates and the batch/head row offsets
    of the gather table."""
    rng = np.random.default_rng(0)
    value, loc, attw = random_case(rng, SHAPES)
    out = ms_deform_attn_core(value, SHAPES, None, loc, attw).numpy()
    ref = core_reference(value, SHAPES, loc, attw)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, ref, atol=1e-12, rtol=0)


def test_core_rejects_inconsistent_shapes():
    """A wrong level_start_index or token count must not be silently reinterpreted."""
    rng = np.random.default_rng(1)
    value, loc, attw = random_case(rng, SHAPES)
    with pytest.raises(ValueError, match="level_start_index"):
        ms_deform_attn_core(value, SHAPES, [0, 35, 47, 52], loc, attw)
    with pytest.raises(ValueError, match="tokens"):
        ms_deform_attn_core(value[:, 1:], SHAPES, None, loc, attw)


def _single(value_hw, x, y):
    """Sample one (H, W) single-channel map at normalised (x, y) with weight 1."""
    h, w = value_hw.shape
    value = value_hw.reshape(1, h * w, 1, 1)
    loc = np.array([x, y], np.float64).reshape(1, 1, 1, 1, 1, 2)
    return float(ms_deform_attn_core(value, [(h, w)], None, loc, np.ones((1, 1, 1, 1, 1)))
                 .numpy().reshape(()))


def test_pixel_centre_border_and_outside():
    """Exact boundary behaviour of zero padding with align_corners=False: a pixel centre
    returns that pixel, loc 0 / 1 (half a pixel outside) half of the edge pixel, a corner
    a quarter, 0.75 px outside a quarter, >= 1 px outside 0. Rules out border padding
    (clamped coordinates), align_corners=True and truncation toward 0."""
    h, w = 3, 4
    v = np.arange(1.0, h * w + 1.0).reshape(h, w)
    for (r, c) in ((0, 0), (1, 2), (2, 3)):
        assert _single(v, (c + 0.5) / w, (r + 0.5) / h) == v[r, c]
    assert _single(v, 0.0, 1.5 / h) == pytest.approx(0.5 * v[1, 0], abs=1e-12)
    assert _single(v, 1.0, 1.5 / h) == pytest.approx(0.5 * v[1, w - 1], abs=1e-12)
    assert _single(v, 2.5 / w, 0.0) == pytest.approx(0.5 * v[0, 2], abs=1e-12)
    assert _single(v, 2.5 / w, 1.0) == pytest.approx(0.5 * v[h - 1, 2], abs=1e-12)
    assert _single(v, 0.0, 0.0) == pytest.approx(0.25 * v[0, 0], abs=1e-12)
    assert _single(v, -0.25 / w, 0.5 / h) == pytest.approx(0.25 * v[0, 0], abs=1e-12)
    for x, y in ((-1.0 / w, 0.5 / h), (1.0 + 1.0 / w, 0.5 / h), (0.5 / w, -1.0 / h),
                 (0.5 / w, 1.0 + 1.0 / h), (-5.0, 7.0), (1e6, -1e6)):
        assert _single(v, x, y) == 0.0
    # Non-finite locations sample zeros (the official op's bounds test), not an
    # out-of-range gather (NaN cast to int) nor a NaN (NaN x a zero validity).
    for x, y in ((np.nan, 0.5), (0.5, np.nan), (np.nan, np.nan), (np.inf, 0.5),
                 (-np.inf, np.inf)):
        assert _single(v, x, y) == 0.0


@pytest.mark.parametrize("lean", [True, False])
def test_gradients_match_finite_differences(lean):
    """Analytic gradients (float64) w.r.t. value, sampling locations and attention
    weights against central differences. Locations are kept away from pixel-grid kinks
    (fractional pixel positions in [0.15, 0.85]) and include points partly outside the
    map. Rules out gradient-blocking casts/clips on the interpolation weights and
    dropped terms of the gather's gradient (repeated rows), for the default memory-lean
    custom gradient (samples re-gathered in the backward pass) and plain autodiff."""
    rng = np.random.default_rng(2)
    shapes = [(3, 4), (2, 2)]
    n, lq, m, d, p = 1, 3, 2, 3, 2
    value = rng.normal(size=(n, sum(h * w for h, w in shapes), m, d))
    pix = rng.integers(-1, 4, size=(n, lq, m, len(shapes), p, 2)) + \
        rng.uniform(0.15, 0.85, size=(n, lq, m, len(shapes), p, 2))
    size = np.array([[w, h] for h, w in shapes], np.float64)[None, None, None, :, None, :]
    loc = (pix + 0.5) / size
    attw = rng.uniform(0.1, 1.0, size=(n, lq, m, len(shapes), p))

    args = [tf.constant(value), tf.constant(loc), tf.constant(attw)]
    # Analytic: eager GradientTape Jacobians. (tf.test.compute_gradient on a tf.function
    # was found to miss a planted stop_gradient, so the Jacobian is taken eagerly here.)
    with tf.GradientTape(persistent=True) as tape:
        for a in args:
            tape.watch(a)
        out = ms_deform_attn_core(args[0], shapes, None, args[1], args[2],
                                  lean_gradient=lean)
    delta = 1e-6
    for i, name in enumerate(("value", "sampling_locations", "attention_weights")):
        analytic = tape.jacobian(out, args[i]).numpy().reshape(out.shape.num_elements(), -1)
        # central differences, all perturbations at once along the batch axis (N = 1)
        base = args[i].numpy()
        count = base.size
        steps = (np.eye(count) * delta).reshape((count,) + base.shape[1:])
        batch = [np.repeat(a.numpy(), 2 * count, axis=0) for a in args]
        batch[i] = np.concatenate([base + steps, base - steps])
        diff = ms_deform_attn_core(batch[0], shapes, None, batch[1], batch[2]).numpy()
        numeric = ((diff[:count] - diff[count:]) / (2 * delta)).reshape(count, -1).T
        assert np.abs(analytic).max() > 0.1, name   # a non-trivial gradient is compared
        np.testing.assert_allclose(analytic, numeric, atol=1e-6, rtol=0, err_msg=name)


def _layer(d_model=24, levels=2, heads=3, points=2, seed=0, randomise=True):
    keras.utils.set_random_seed(seed)
    layer = MSDeformAttn(d_model, levels, heads, points)
    shapes = [(4, 5), (2, 3), (2, 2), (1, 1)][:levels]
    tokens = sum(h * w for h, w in shapes)
    layer(tf.zeros((1, 2, d_model)), tf.zeros((1, 2, levels, 2)),
          tf.zeros((1, tokens, d_model)), input_spatial_shapes=shapes)
    if randomise:
        rng = np.random.default_rng(seed)
        for v in layer.weights:
            scale = 0.3 if "sampling_offsets" in v.path else 0.5
            v.assign(rng.normal(scale=scale, size=v.shape).astype(np.float32))
    return layer


def test_official_initialisation():
    """§1.7 / §2: sampling_offsets weight 0 and bias = the fixed direction grid (head m at
    θ = 2πm/M scaled to max(|x|,|y|) = 1, point p at (p+1)x, same per level, layout
    ((m L + l) P + p) 2 + c); attention weights 0 (uniform 1/(L P)); value/output proj
    xavier with zero bias. Rules out a (y, x) or (L, M) ordered grid."""
    layer = _layer(256, 4, 8, 4, randomise=False)
    np.testing.assert_array_equal(layer.sampling_offsets.kernel.numpy(), 0.0)
    bias = layer.sampling_offsets.bias.numpy().reshape(8, 4, 4, 2)
    dirs = np.array([(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)])
    for p in range(4):
        np.testing.assert_allclose(bias[:, 2, p], (p + 1) * dirs, atol=1e-5)
    np.testing.assert_array_equal(bias, np.broadcast_to(bias[:, :1], bias.shape))  # per level
    assert bias[1, 0, 3, 0] == 4.0 and bias[1, 0, 3, 1] == 4.0
    np.testing.assert_array_equal(offset_bias_grid(8, 4, 4), layer.sampling_offsets.bias.numpy())
    np.testing.assert_array_equal(layer.attention_weights.kernel.numpy(), 0.0)
    np.testing.assert_array_equal(layer.attention_weights.bias.numpy(), 0.0)
    for dense in (layer.value_proj, layer.output_proj):
        k = dense.kernel.numpy()
        limit = math.sqrt(6.0 / (256 + 256))
        assert np.abs(k).max() <= limit and np.abs(k).max() > 0.9 * limit and k.std() > 0.02
        np.testing.assert_array_equal(dense.bias.numpy(), 0.0)
    _, attw = layer.sampling(tf.random.normal((1, 3, 256)), tf.fill((1, 3, 4, 2), 0.5),
                             [(8, 8), (4, 4), (2, 2), (1, 1)])
    np.testing.assert_allclose(attw.numpy(), 1.0 / 16, atol=1e-7)


@pytest.mark.parametrize("ref_dim", [2, 4])
def test_layer_matches_numpy_forward(ref_dim):
    """The whole layer vs the official forward written in NumPy from the same weights,
    with a padding mask: offsets normalised by (W_l, H_l) (2-d refs) or by the box size
    (4-d refs), softmax over all L*P pairs of a head, (M, L, P, 2) output layout, heads
    as channel blocks m*D..(m+1)*D, value zeroed at padded tokens. Each of these
    mistakes changes the output by far more than the tolerance."""
    layer = _layer()
    rng = np.random.default_rng(3)
    shapes = [(4, 5), (2, 3)]
    query = rng.normal(size=(2, 6, 24)).astype(np.float32)
    x = rng.normal(size=(2, 26, 24)).astype(np.float32)
    ref = rng.uniform(0.05, 0.95, size=(2, 6, 2, ref_dim)).astype(np.float32)
    if ref_dim == 4:
        ref[..., 2:] = rng.uniform(0.1, 0.5, size=(2, 6, 2, 2))
    mask = rng.uniform(size=(2, 26)) < 0.3
    out = layer(query, ref, x, input_spatial_shapes=shapes, input_padding_mask=mask).numpy()
    expected = layer_reference(layer, query.astype(np.float64), ref.astype(np.float64),
                               x.astype(np.float64), shapes, mask)
    delta = np.abs(out - expected).max()
    assert delta <= 1e-4 * max(1.0, np.abs(expected).max()), delta
    # the mask matters: without it the output differs
    unmasked = layer(query, ref, x, input_spatial_shapes=shapes).numpy()
    assert np.abs(unmasked - out).max() > 1e-2


SMALL_SHAPES = [(4, 5), (2, 3)]


class _SmallModel(tf.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    @tf.function(input_signature=[tf.TensorSpec((1, 6, 24), tf.float32, name="query"),
                                  tf.TensorSpec((1, 6, 2, 2), tf.float32, name="ref"),
                                  tf.TensorSpec((1, 26, 24), tf.float32, name="x")])
    def __call__(self, query, ref, x):
        return {"out": self.layer(query, ref, x, input_spatial_shapes=SMALL_SHAPES)}


@pytest.fixture(scope="module")
def small():
    layer = _layer()
    rng = np.random.default_rng(4)
    # references spread so that samples land inside, on borders and outside
    inputs = {"query": rng.normal(size=(1, 6, 24)).astype(np.float32),
              "ref": rng.uniform(-0.1, 1.1, size=(1, 6, 2, 2)).astype(np.float32),
              "x": rng.normal(size=(1, 26, 24)).astype(np.float32)}
    expected = layer(inputs["query"], inputs["ref"], inputs["x"],
                     input_spatial_shapes=SMALL_SHAPES).numpy()
    return _SmallModel(layer), inputs, expected


def _list_ops(flatbuffer):
    """The project's TFLite op lister (custom/Flex ops as ``CUSTOM:<code>``)."""
    for module in ("prtr_tf.export.tflite.flatbuffer", "prtr_tf.exports.tflite.flatbuffer"):
        try:
            return __import__(module, fromlist=["list_ops"]).list_ops(flatbuffer)
        except ImportError:
            continue
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    return [op["op_name"] if "Flex" not in op["op_name"] else "CUSTOM:" + op["op_name"]
            for op in interpreter._get_ops_details()]


def test_tflite_builtin_ops_only_and_matches_keras(small):
    """Converts with TFLITE_BUILTINS only (a Flex StridedSlice or any other select-TF op
    fails the conversion) and checks the flatbuffer's operator list: no CUSTOM / Flex
    op, the sampling is a plain GATHER. Output vs Keras measured at ~1e-6."""
    from tensorflow.python.framework.convert_to_constants import \
        convert_variables_to_constants_v2

    model, inputs, expected = small
    frozen = convert_variables_to_constants_v2(model.__call__.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], model)
    converter.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    flatbuffer = converter.convert()
    ops = _list_ops(flatbuffer)
    print("TFLite ops:", sorted(set(ops)))
    assert not [op for op in ops if op.startswith("CUSTOM") or "Flex" in op]
    assert "GATHER" in ops and "GATHER_ND" not in ops
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    runner = Interpreter(model_content=flatbuffer).get_signature_runner()
    (out,) = runner(**inputs).values()   # freezing renames the single output
    delta = np.abs(out - expected).max()
    print(f"TFLite vs Keras max |d| {delta:.2e}")
    assert delta <= 1e-4


def test_onnx_matches_keras(small):
    """tf2onnx (opset 17) -> onnxruntime on CPU reproduces the Keras output."""
    tf2onnx = pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    model, inputs, expected = small
    spec = model.__call__.input_signature
    proto, _ = tf2onnx.convert.from_function(model.__call__, input_signature=spec, opset=17)
    op_types = {node.op_type for node in proto.graph.node}
    assert "Gather" in op_types
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feeds = {name: inputs[name.split(":")[0]] for name in names}
    out = session.run(None, feeds)[0]
    delta = np.abs(out - expected).max()
    print(f"ONNX vs Keras max |d| {delta:.2e}")
    assert delta <= 1e-4


def test_xla_matches_eager(small):
    """jit_compile=True (XLA) forward and gradients equal the eager ones, for the training
    path (memory-lean custom gradient) and against the plain inference path."""
    model, inputs, expected = small
    layer = model.layer

    def loss_and_grads(query, ref, x, training):
        with tf.GradientTape() as tape:
            tape.watch([query, ref, x])
            out = layer(query, ref, x, input_spatial_shapes=SMALL_SHAPES, training=training)
            loss = tf.reduce_sum(out * out)
        return out, tape.gradient(loss, [query, ref, x] + layer.trainable_weights)

    args = [tf.constant(inputs[k]) for k in ("query", "ref", "x")]
    out_p, grads_p = loss_and_grads(*args, False)
    out_e, grads_e = loss_and_grads(*args, True)
    out_x, grads_x = tf.function(loss_and_grads, jit_compile=True)(*args, True)
    np.testing.assert_allclose(out_x.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(out_e.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(out_p.numpy(), expected, atol=1e-6)
    for gp, ge, gx in zip(grads_p, grads_e, grads_x):
        gp = tf.convert_to_tensor(gp).numpy()
        tol = 1e-4 * max(1.0, np.abs(gp).max())
        np.testing.assert_allclose(tf.convert_to_tensor(ge).numpy(), gp, atol=tol)
        np.testing.assert_allclose(tf.convert_to_tensor(gx).numpy(), gp, atol=tol)


def test_mirrored_strategy_matches_single_device():
    """Under MirroredStrategy with 2 replicas (2 logical CPUs), outputs and all-reduced
    gradients equal one device's on the whole batch. In a fresh process: logical devices
    are set before TensorFlow starts, and other tests' strategies (collective instance
    keys collide) stay out."""
    code = ("import tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0]\n"
            "tf.config.set_logical_device_configuration(cpu, [tf.config."
            "LogicalDeviceConfiguration()] * 2)\nfrom tests.nn.test_ms_deform_attn import "
            "mirrored_check\nassert mirrored_check() == 2\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]


def mirrored_check():
    """The check of the test above; returns the number of replicas."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    strategy = tf.distribute.MirroredStrategy(devices)
    rng = np.random.default_rng(5)
    query = rng.normal(size=(4, 6, 24)).astype(np.float32)
    ref = rng.uniform(0, 1, size=(4, 6, 2, 2)).astype(np.float32)
    x = rng.normal(size=(4, 26, 24)).astype(np.float32)
    with strategy.scope():
        layer = _layer()
    reference_layer = _layer()
    dataset = tf.data.Dataset.from_tensor_slices((query, ref, x)).batch(4)
    dist = strategy.experimental_distribute_dataset(dataset)

    @tf.function
    def step(batch):
        def replica(q, r, v):
            with tf.GradientTape() as tape:
                out = layer(q, r, v, input_spatial_shapes=SMALL_SHAPES, training=True)
                loss = tf.reduce_sum(out * out)
            grads = tape.gradient(loss, layer.trainable_weights)
            ctx = tf.distribute.get_replica_context()
            return out, ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        return strategy.run(replica, args=batch)

    out, grads = step(next(iter(dist)))
    out = np.concatenate([t.numpy() for t in strategy.experimental_local_results(out)])
    grads = [strategy.experimental_local_results(g)[0].numpy() for g in grads]
    with tf.GradientTape() as tape:
        expected = reference_layer(query, ref, x, input_spatial_shapes=SMALL_SHAPES)
        loss = tf.reduce_sum(expected * expected)
    expected_grads = tape.gradient(loss, reference_layer.trainable_weights)
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-5)
    for g, e in zip(grads, expected_grads):
        e = tf.convert_to_tensor(e).numpy()
        np.testing.assert_allclose(g, e, atol=1e-4 * max(1.0, np.abs(e).max()))
    return strategy.num_replicas_in_sync
