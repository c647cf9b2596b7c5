"""Matcher and set loss against a plain NumPy/scipy reference (spec §3.1, §4)."""
import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linear_sum_assignment

from prtr_tf.models.keypoint.loss import layer_losses, match_outputs, set_loss, stack_layers
from prtr_tf.models.keypoint.matcher import hungarian_match, hungarian_match_layers

# ----------------------------------------------------------------------------
# Reference, written with loops and float64, following the official torch code.
# ----------------------------------------------------------------------------


def ref_softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def ref_match_crop(logits, coords, target, cost_class=1.0, cost_coord=5.0):
    """logits (Q, J+1), coords (Q, 2), target (J, 2) -> (J,) query per joint."""
    num_queries, num_classes = logits.shape
    num_joints = num_classes - 1
    cost = np.zeros((num_joints, num_queries))
    for q in range(num_queries):
        prob = ref_softmax(logits[q])
        for j in range(num_joints):
            l1 = abs(float(coords[q, 0]) - float(target[j, 0])) + \
                abs(float(coords[q, 1]) - float(target[j, 1]))
            cost[j, q] = cost_coord * l1 - cost_class * prob[j]
    rows, cols = linear_sum_assignment(cost)
    assert list(rows) == list(range(num_joints))
    return np.asarray(cols)


def ref_layer_loss(logits, coords, target, weight, idx, eos_coef=0.1):
    """One layer: logits (B, Q, J+1), coords (B, Q, 2), idx (B, J) -> (ce, kpt)."""
    batch, num_queries, num_classes = logits.shape
    num_joints = num_classes - 1
    num, den = 0.0, 0.0
    for b in range(batch):
        labels = [num_joints] * num_queries
        for j in range(num_joints):
            labels[idx[b, j]] = j
        for q in range(num_queries):
            nll = -np.log(ref_softmax(logits[b, q])[labels[q]])
            w = 1.0 if labels[q] < num_joints else eos_coef
            num += w * nll
            den += w
    ce = num / den
    # torch: (l1_loss(reduction='none') * weights).mean() * num_joints
    elems = []
    for b in range(batch):
        for j in range(num_joints):
            for k in range(2):
                d = abs(float(coords[b, idx[b, j], k]) - float(target[b, j, k]))
                elems.append(d * float(weight[b, j]))
    kpt = np.mean(elems) * num_joints
    return ce, kpt


def ref_set_loss(layers, target, weight, eos_coef=0.1, ce_coef=1.0, kpt_coef=5.0):
    """layers: list of (logits, coords), aux first, final last."""
    out, total, all_idx = {}, 0.0, []
    for l, (logits, coords) in enumerate(layers):
        idx = np.stack([ref_match_crop(logits[b], coords[b], target[b])
                        for b in range(logits.shape[0])])
        all_idx.append(idx)
        ce, kpt = ref_layer_loss(logits, coords, target, weight, idx, eos_coef)
        total += ce_coef * ce + kpt_coef * kpt
        suffix = "" if l == len(layers) - 1 else f"_{l}"
        out["loss_ce" + suffix] = ce
        out["loss_kpt" + suffix] = kpt
    out["loss"] = total
    return out, np.stack(all_idx)


# ----------------------------------------------------------------------------


def random_outputs(rng, batch, queries, joints, layers, dtype=np.float32):
    logits = rng.normal(size=(layers, batch, queries, joints + 1)) * 3.0
    coords = rng.uniform(size=(layers, batch, queries, 2))
    target = rng.uniform(-0.2, 1.2, size=(batch, joints, 2)).astype(np.float32)
    weight = (rng.uniform(size=(batch, joints)) > 0.3).astype(np.float32)
    target[weight == 0] = 0.0  # COCO: unlabelled joints sit at (0, 0)
    outputs = {
        "pred_logits": logits[-1].astype(dtype), "pred_coords": coords[-1].astype(dtype),
        "aux_pred_logits": logits[:-1].astype(dtype),
        "aux_pred_coords": coords[:-1].astype(dtype),
    }
    return outputs, target, weight


def numpy_layers(outputs):
    logits = np.concatenate([outputs["aux_pred_logits"], outputs["pred_logits"][None]])
    coords = np.concatenate([outputs["aux_pred_coords"], outputs["pred_coords"][None]])
    return list(zip(logits.astype(np.float32), coords.astype(np.float32)))


SHAPES = [  # (B, Q, J, L)
    (3, 20, 17, 6),
    (2, 20, 16, 6),
    (3, 20, 17, 1),
    (2, 16, 16, 2),  # Q == J: every query is matched
    (1, 100, 17, 3),
]


@pytest.mark.parametrize("batch,queries,joints,layers", SHAPES)
def test_matcher_matches_reference(batch, queries, joints, layers):
    rng = np.random.default_rng(batch * 1000 + queries + joints + layers)
    outputs, target, _ = random_outputs(rng, batch, queries, joints, layers)
    logits, coords = stack_layers(outputs)
    got = hungarian_match_layers(logits, coords, target).numpy()
    assert got.dtype == np.int32 and got.shape == (layers, batch, joints)
    for l, (lg, co) in enumerate(numpy_layers(outputs)):
        for b in range(batch):
            np.testing.assert_array_equal(got[l, b], ref_match_crop(lg[b], co[b], target[b]))
            assert len(set(got[l, b].tolist())) == joints  # distinct queries
    final = hungarian_match(outputs["pred_logits"], outputs["pred_coords"], target).numpy()
    np.testing.assert_array_equal(final, got[-1])


@pytest.mark.parametrize("batch,queries,joints,layers", SHAPES)
def test_set_loss_matches_reference(batch, queries, joints, layers):
    rng = np.random.default_rng(7 + batch * 1000 + queries + joints + layers)
    outputs, target, weight = random_outputs(rng, batch, queries, joints, layers)
    want, want_idx = ref_set_loss(numpy_layers(outputs), target, weight)
    got = set_loss(outputs, target, weight, num_joints=joints)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == tf.float32 and got[key].shape == ()
        np.testing.assert_allclose(got[key].numpy(), want[key], rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    # The split API: matching outside, loss given indices inside.
    idx = match_outputs(outputs, target)
    np.testing.assert_array_equal(idx.numpy(), want_idx)
    again = set_loss(outputs, target, weight[..., None], indices=idx)  # (B, J, 1) weights
    for key in want:
        np.testing.assert_allclose(again[key].numpy(), got[key].numpy(), rtol=1e-6)


def test_no_aux_layers():
    rng = np.random.default_rng(3)
    outputs, target, weight = random_outputs(rng, 2, 20, 17, 1)
    assert outputs["aux_pred_logits"].shape == (0, 2, 20, 18)
    want, _ = ref_set_loss(numpy_layers(outputs), target, weight)
    with_empty_aux = set_loss(outputs, target, weight)
    no_aux_keys = set_loss({k: outputs[k] for k in ("pred_logits", "pred_coords")},
                           target, weight)
    for got in (with_empty_aux, no_aux_keys):
        assert sorted(got) == ["loss", "loss_ce", "loss_kpt"]
        for key in want:
            np.testing.assert_allclose(got[key].numpy(), want[key], rtol=1e-5)


def test_low_precision_inputs_computed_in_float32():
    rng = np.random.default_rng(11)
    outputs, target, weight = random_outputs(rng, 2, 20, 17, 3, dtype=np.float16)
    _, idx = ref_set_loss(numpy_layers(outputs), target, weight)
    want = set_loss({k: v.astype(np.float32) for k, v in outputs.items()}, target, weight,
                    indices=idx)
    for dtype in (tf.float16, tf.bfloat16):
        cast = {k: tf.cast(v, dtype) for k, v in outputs.items()}
        if dtype == tf.bfloat16:  # compare against the bf16-rounded values
            want = set_loss({k: tf.cast(v, tf.float32) for k, v in cast.items()}, target,
                            weight, indices=idx)
        got = set_loss(cast, target, weight, indices=idx)
        for key in want:
            assert got[key].dtype == tf.float32
            np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), rtol=1e-6)
        assert hungarian_match(cast["pred_logits"], cast["pred_coords"], target).shape == (2, 17)


def test_ce_denominator_per_crop():
    """Constant logits make every nll one of two values; check the weighted mean."""
    batch, queries, joints, bg_logit = 2, 100, 17, 1.5
    logits = np.zeros((batch, queries, joints + 1), np.float32)
    logits[..., joints] = bg_logit
    coords = np.full((batch, queries, 2), 5.0, np.float32)
    target = np.random.default_rng(0).uniform(size=(batch, joints, 2)).astype(np.float32)
    coords[:, 40:40 + joints] = target  # query 40 + j sits on joint j
    weight = np.ones((batch, joints), np.float32)
    out = set_loss({"pred_logits": logits, "pred_coords": coords}, target, weight)

    idx = hungarian_match(logits, coords, target).numpy()
    np.testing.assert_array_equal(idx, np.tile(40 + np.arange(joints), (batch, 1)))
    log_z = np.log(joints + np.exp(bg_logit))
    nll_joint, nll_bg = log_z, log_z - bg_logit
    den = joints + 0.1 * (queries - joints)
    assert den == pytest.approx(25.3)
    want = (joints * nll_joint + 0.1 * (queries - joints) * nll_bg) / den
    np.testing.assert_allclose(out["loss_ce"].numpy(), want, rtol=1e-6)
    unweighted = (joints * nll_joint + (queries - joints) * nll_bg) / queries
    assert abs(want - unweighted) > 1e-2  # the check above can tell them apart
    assert out["loss_kpt"].numpy() == pytest.approx(0.0, abs=1e-6)
    # MPII's denominator
    assert 16 + 0.1 * (100 - 16) == pytest.approx(24.4)


def test_unlabelled_joints_are_matched_and_classified():
    batch, queries, joints = 1, 30, 17
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(batch, queries, joints + 1)).astype(np.float32)
    coords = rng.uniform(0.3, 0.7, size=(batch, queries, 2)).astype(np.float32)
    target = rng.uniform(0.3, 0.7, size=(batch, joints, 2)).astype(np.float32)
    weight = np.ones((batch, joints), np.float32)
    hidden = [0, 3, 9]  # unlabelled: weight 0, target (0, 0)
    weight[:, hidden] = 0.0
    target[:, hidden] = 0.0
    coords[0, 25] = 0.0  # a query near the (0, 0) placeholder
    logits_t, coords_t = tf.constant(logits), tf.constant(coords)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([logits_t, coords_t])
        out = set_loss({"pred_logits": logits_t, "pred_coords": coords_t}, target, weight)
    idx = hungarian_match(logits, coords, target).numpy()[0]
    assert len(set(idx.tolist())) == joints
    g_logits = tape.gradient(out["loss_ce"], logits_t).numpy()[0]
    g_coords = tape.gradient(out["loss_kpt"], coords_t).numpy()[0]
    for j in hidden:
        q = idx[j]
        assert g_logits[q, j] < 0  # trained toward joint class j ...
        assert g_logits[q, joints] > 0  # ... and away from background
        np.testing.assert_array_equal(g_coords[q], 0.0)  # no coordinate loss
    for j in set(range(joints)) - set(hidden):
        assert np.all(g_coords[idx[j]] != 0.0)
    want, _ = ref_set_loss([(logits, coords)], target, weight)
    np.testing.assert_allclose(out["loss"].numpy(), want["loss"], rtol=1e-5)


def test_gradients_flow():
    rng = np.random.default_rng(9)
    outputs, target, weight = random_outputs(rng, 3, 20, 17, 6)
    variables = {k: tf.Variable(v) for k, v in outputs.items()}
    with tf.GradientTape() as tape:
        loss = set_loss(variables, target, weight)["loss"]
    grads = tape.gradient(loss, variables)
    for key, grad in grads.items():
        assert grad is not None, key
        assert np.all(np.isfinite(grad.numpy())), key
        assert np.any(grad.numpy() != 0.0), key


def test_tf_function_with_unknown_batch():
    batch, queries, joints, layers = 3, 20, 17, 6
    rng = np.random.default_rng(13)
    outputs, target, weight = random_outputs(rng, batch, queries, joints, layers)
    want, want_idx = ref_set_loss(numpy_layers(outputs), target, weight)
    spec = {
        "pred_logits": tf.TensorSpec((None, queries, joints + 1)),
        "pred_coords": tf.TensorSpec((None, queries, 2)),
        "aux_pred_logits": tf.TensorSpec((layers - 1, None, queries, joints + 1)),
        "aux_pred_coords": tf.TensorSpec((layers - 1, None, queries, 2)),
    }
    tspec, wspec = tf.TensorSpec((None, joints, 2)), tf.TensorSpec((None, joints))

    @tf.function(input_signature=[spec, tspec, wspec])
    def step(outs, tgt, w):
        idx = match_outputs(outs, tgt)
        assert idx.shape.as_list() == [layers, None, joints]
        with tf.GradientTape() as tape:
            tape.watch(outs["pred_logits"])
            losses = set_loss(outs, tgt, w)
        grad = tape.gradient(losses["loss"], outs["pred_logits"])
        return idx, losses, grad

    idx, got, grad = step(outputs, target, weight)
    np.testing.assert_array_equal(idx.numpy(), want_idx)
    for key in want:
        np.testing.assert_allclose(got[key].numpy(), want[key], rtol=1e-5, err_msg=key)
    assert np.all(np.isfinite(grad.numpy()))


def test_split_matching_and_jit_compiled_loss():
    batch, queries, joints, layers = 2, 20, 16, 4
    rng = np.random.default_rng(17)
    outputs, target, weight = random_outputs(rng, batch, queries, joints, layers)
    want, _ = ref_set_loss(numpy_layers(outputs), target, weight)

    @tf.function(jit_compile=True)
    def compiled_loss(outs, tgt, w, idx):
        return set_loss(outs, tgt, w, indices=idx)

    idx = tf.function(match_outputs)(outputs, target)  # outside XLA
    got = compiled_loss(outputs, target, weight, idx)
    for key in want:
        np.testing.assert_allclose(got[key].numpy(), want[key], rtol=1e-5, err_msg=key)


def test_layer_losses_kpt_not_normalised_by_visible_count():
    """L_kpt = sum_b sum_j w (|dx| + |dy|) / (2B): halving visibility halves it."""
    logits = np.zeros((1, 1, 20, 18), np.float32)
    coords = np.full((1, 1, 20, 2), 0.5, np.float32)
    target = np.zeros((1, 17, 2), np.float32)
    idx = np.arange(17, dtype=np.int32)[None, None]
    full = np.ones((1, 17), np.float32)
    _, kpt = layer_losses(logits, coords, target, full, idx)
    np.testing.assert_allclose(kpt.numpy(), [17 * 1.0 / 2], rtol=1e-6)
    half = full.copy()
    half[:, ::2] = 0.0
    _, kpt = layer_losses(logits, coords, target, half, idx)
    np.testing.assert_allclose(kpt.numpy(), [8 * 1.0 / 2], rtol=1e-6)
