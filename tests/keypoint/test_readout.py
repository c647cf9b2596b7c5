"""In-graph Hungarian solver and inference readout (spec §3.2) against scipy/NumPy."""
import json

import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linear_sum_assignment as scipy_lsa

from prtr_tf.models.keypoint.readout import linear_sum_assignment, readout

# One trace each for any (B, R, C): the fully dynamic path of the solver.
_SOLVE = {
    dtype: tf.function(linear_sum_assignment,
                       input_signature=[tf.TensorSpec([None, None, None], dtype)])
    for dtype in (tf.float32, tf.float64)
}


def solve(cost, dtype=tf.float64):
    """Solver on a NumPy (R, C) or (B, R, C) matrix; returns the columns as NumPy."""
    cost = np.asarray(cost)
    out = _SOLVE[dtype](tf.constant(cost.reshape((-1,) + cost.shape[-2:]), dtype))
    return out.numpy().reshape(cost.shape[:-1])


def scipy_cols(cost):
    rows, cols = scipy_lsa(cost)
    assert list(rows) == list(range(cost.shape[0]))
    return cols


def total(cost, cols):
    return float(np.asarray(cost, np.float64)[np.arange(len(cols)), cols].sum())


def assert_optimal(cost, cols, rtol=0.0, atol=1e-9):
    """`cols` is a valid assignment (distinct, in range) with scipy's optimal cost."""
    num_rows, num_cols = cost.shape
    assert cols.shape == (num_rows,) and cols.dtype == np.int32
    assert len(set(cols.tolist())) == num_rows, cols
    assert cols.min() >= 0 and cols.max() < num_cols
    best = total(cost, scipy_cols(cost))
    assert abs(total(cost, cols) - best) <= atol + rtol * abs(best), (total(cost, cols), best)


def shapes():
    for rows in (1, 2, 5, 16, 17):
        for cols in sorted({rows, rows + 1, 100}):
            yield rows, cols


# ----------------------------------------------------------------------------
# linear_sum_assignment
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("rows,cols", list(shapes()))
def test_random_matches_scipy(rows, cols):
    """Continuous random costs (no ties): float64 gives scipy's assignment exactly;
    float32 gives an assignment optimal to float32 precision."""
    rng = np.random.default_rng(rows * 1000 + cols)
    for scale, offset in [(1.0, 0.0), (1.0, -0.5), (100.0, 3.0), (1e-3, 0.0), (1e8, 0.0)] * 4:
        cost = rng.random((rows, cols)) * scale + offset
        cols64 = solve(cost, tf.float64)
        np.testing.assert_array_equal(cols64, scipy_cols(cost))
        cols32 = solve(cost.astype(np.float32), tf.float32)
        assert_optimal(cost.astype(np.float32).astype(np.float64), cols32,
                       rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 2), (5, 5), (5, 6), (16, 100), (17, 17),
                                       (17, 18), (17, 100)])
def test_ties(rows, cols, dtype):
    """Integer costs with many duplicates, all-equal costs, duplicate columns:
    some optimal assignment (maybe not scipy's) with distinct columns."""
    rng = np.random.default_rng(rows * 100 + cols)
    cases = [rng.integers(0, 3, (rows, cols)), rng.integers(-2, 2, (rows, cols)) * 10,
             np.full((rows, cols), 7.0), np.zeros((rows, cols))]
    dup = rng.random((rows, cols))
    dup[:, 1::2] = dup[:, 0:cols - 1:2]              # every odd column repeats its neighbour
    cases.append(dup)
    low_rank = rng.integers(0, 4, (rows, 1)) * rng.integers(0, 4, (1, cols))
    cases.append(low_rank)
    for cost in cases:
        cost = np.asarray(cost, np.float64)
        assert_optimal(cost, solve(cost, dtype), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_batched_equals_per_sample(dtype):
    rng = np.random.default_rng(7)
    for rows, cols in [(17, 100), (16, 16), (5, 6)]:
        costs = rng.random((9, rows, cols))
        costs[3] = rng.integers(0, 2, (rows, cols))       # ties in one sample
        costs[5] = 1.0                                     # all equal in another
        batched = solve(costs, dtype)
        single = np.stack([solve(c, dtype) for c in costs])
        np.testing.assert_array_equal(batched, single)
        for cost, sol in zip(costs, batched):
            assert_optimal(cost, sol, rtol=1e-6, atol=1e-6)


def test_unbatched_and_eager():
    cost = np.random.default_rng(0).random((5, 8))
    out = linear_sum_assignment(tf.constant(cost))
    assert out.shape == (5,) and out.dtype == tf.int32
    np.testing.assert_array_equal(out.numpy(), scipy_cols(cost))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_function_unknown_batch(jit_compile):
    fn = tf.function(linear_sum_assignment, jit_compile=jit_compile,
                     input_signature=[tf.TensorSpec([None, 17, 100], tf.float32)])
    rng = np.random.default_rng(1)
    for batch in (1, 3, 8):
        costs = rng.random((batch, 17, 100)).astype(np.float32)
        out = fn(costs).numpy()
        assert out.shape == (batch, 17)
        for cost, sol in zip(costs, out):
            np.testing.assert_array_equal(sol, scipy_cols(cost))


def test_non_finite_costs():
    """NaN/inf entries never break the solver; a finite assignment is preferred."""
    rng = np.random.default_rng(2)
    cost = rng.random((4, 6))
    cost[0, :3] = np.inf
    cost[1, 3] = np.nan
    cost[2, 0] = -np.inf
    cols = solve(cost)
    assert len(set(cols.tolist())) == 4
    assert cols[0] >= 3 and cols[1] != 3 and cols[2] == 0
    assert (solve(np.full((3, 3), np.nan)) >= 0).all()


def test_more_rows_than_columns_rejected():
    with pytest.raises(ValueError):
        linear_sum_assignment(tf.zeros([3, 2]))


# ----------------------------------------------------------------------------
# readout
# ----------------------------------------------------------------------------


def ref_readout(logits, coords, include_background=False):
    """NumPy reference: softmax over the J joint logits, scipy on -prob^T."""
    logits = np.asarray(logits, np.float64)
    num_joints = logits.shape[-1] - 1
    x = logits if include_background else logits[..., :num_joints]
    prob = np.exp(x - x.max(-1, keepdims=True))
    prob = (prob / prob.sum(-1, keepdims=True))[..., :num_joints]
    query = np.stack([scipy_cols(-p.T) for p in prob])
    scores = np.take_along_axis(np.swapaxes(prob, 1, 2), query[..., None], 2)[..., 0]
    return query, scores, np.take_along_axis(coords, query[..., None], 1)


@pytest.mark.parametrize("num_joints,num_queries", [(17, 100), (16, 100), (17, 17)])
def test_readout_matches_reference(num_joints, num_queries):
    rng = np.random.default_rng(num_joints + num_queries)
    logits = (rng.normal(size=(6, num_queries, num_joints + 1)) * 3).astype(np.float32)
    coords = rng.random((6, num_queries, 2)).astype(np.float32)
    out = readout(logits, coords, image_size_hw=(384, 288))
    query, scores, ref_coords = ref_readout(logits, coords)
    assert out["query"].dtype == tf.int32
    np.testing.assert_array_equal(out["query"].numpy(), query)
    np.testing.assert_allclose(out["scores"].numpy(), scores, atol=1e-6)
    np.testing.assert_array_equal(out["coords"].numpy(), ref_coords)
    np.testing.assert_allclose(out["coords_px"].numpy(), ref_coords * [288, 384], rtol=1e-6)
    assert "coords_px" not in readout(logits, coords)


def test_readout_excludes_background():
    """A query that is mostly background but prefers joint 0 among the joints wins
    joint 0 only if the background logit is dropped before the softmax."""
    logits = np.array([[[3.0, 0.0, 10.0],     # q0: joint 0 over joint 1, but background
                        [1.0, 0.0, -10.0],    # q1: mild joint 0
                        [0.0, 3.0, -10.0]]],  # q2: joint 1
                      np.float32)
    coords = np.array([[[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]], np.float32)
    out = readout(logits, coords)
    np.testing.assert_array_equal(out["query"].numpy(), [[0, 2]])
    np.testing.assert_array_equal(ref_readout(logits, coords)[0], [[0, 2]])
    np.testing.assert_array_equal(ref_readout(logits, coords, include_background=True)[0],
                                  [[1, 2]])
    np.testing.assert_allclose(out["scores"].numpy(),
                               [[np.exp(3) / (np.exp(3) + 1), np.exp(3) / (np.exp(3) + 1)]],
                               rtol=1e-6)


def test_readout_tf_function_unknown_batch():
    fn = tf.function(lambda l, c: readout(l, c, (256, 256)),
                     input_signature=[tf.TensorSpec([None, 100, 17]),
                                      tf.TensorSpec([None, 100, 2])])
    rng = np.random.default_rng(3)
    for batch in (1, 5):
        logits = rng.normal(size=(batch, 100, 17)).astype(np.float32) * 2
        coords = rng.random((batch, 100, 2)).astype(np.float32)
        out = fn(logits, coords)
        query, _, _ = ref_readout(logits, coords)
        np.testing.assert_array_equal(out["query"].numpy(), query)
        assert out["coords_px"].shape == (batch, 16, 2)


def test_readout_tflite_builtin_ops():
    """Converts to TFLite with builtin ops only (no Flex) and gives the same answer."""
    num_queries, num_joints = 100, 17

    class Readout(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, num_queries, num_joints + 1]),
                                      tf.TensorSpec([None, num_queries, 2])])
        def __call__(self, logits, coords):
            return readout(logits, coords, (384, 288))

    module = Readout()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.__call__.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flatbuffer = converter.convert()
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    runner = Interpreter(model_content=flatbuffer).get_signature_runner()
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(3, num_queries, num_joints + 1)).astype(np.float32) * 3
    coords = rng.random((3, num_queries, 2)).astype(np.float32)
    out = runner(logits=logits, coords=coords)
    ref = readout(logits, coords, (384, 288))
    np.testing.assert_array_equal(out["query"], ref["query"].numpy())
    np.testing.assert_allclose(out["scores"], ref["scores"].numpy(), atol=1e-6)
    np.testing.assert_allclose(out["coords_px"], ref["coords_px"].numpy(), atol=1e-5)


def test_readout_onnx():
    """tf2onnx + onnxruntime (the `export` extra) give the same answer; skipped without them."""
    tf2onnx = pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    num_queries, num_joints = 100, 17
    fn = tf.function(lambda logits, coords: readout(logits, coords, (384, 288)),
                     input_signature=[tf.TensorSpec([None, num_queries, num_joints + 1],
                                                    name="pred_logits"),
                                      tf.TensorSpec([None, num_queries, 2], name="pred_coords")])
    model, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=17)
    session = ort.InferenceSession(model.SerializeToString())
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(4, num_queries, num_joints + 1)).astype(np.float32) * 3
    coords = rng.random((4, num_queries, 2)).astype(np.float32)
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {"pred_logits": logits, "pred_coords": coords})))
    ref = readout(logits, coords, (384, 288))
    np.testing.assert_array_equal(out["query"], ref["query"].numpy())
    np.testing.assert_allclose(out["scores"], ref["scores"].numpy(), atol=1e-6)
    np.testing.assert_allclose(out["coords_px"], ref["coords_px"].numpy(), atol=1e-5)


def test_golden_readout(golden_dir):
    """The official readout (background excluded) on every PRTR parity fixture.

    The crop size (H, W) comes from each fixture's manifest (`image_size_hw`).
    """
    fixtures = sorted(golden_dir.glob("prtr_*.npz"))
    assert fixtures, f"no prtr_*.npz in {golden_dir}"
    for path in fixtures:
        data = np.load(path)
        height, width = json.loads(path.with_suffix(".json").read_text())["image_size_hw"]
        out = readout(data["pred_logits"], data["pred_coords"], (height, width))
        np.testing.assert_array_equal(out["query"].numpy(), data["readout_query"],
                                      err_msg=path.name)
        np.testing.assert_allclose(out["scores"].numpy(), data["readout_scores"], atol=1e-5,
                                   err_msg=path.name)
        # The fixtures store the readout coordinates normalised (x, y), not in pixels.
        np.testing.assert_allclose(out["coords"].numpy(), data["readout_coords"], atol=1e-6,
                                   err_msg=path.name)
        np.testing.assert_allclose(out["coords_px"].numpy(),
                                   data["readout_coords"] * np.float32([width, height]),
                                   atol=1e-5, rtol=1e-6, err_msg=path.name)
