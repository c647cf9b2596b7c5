"""Detector boxes, matcher and set criterion (spec §8) vs independent NumPy/scipy references."""
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linear_sum_assignment

from prtr_tf.nn import boxes as box_ops
from prtr_tf.models.detector.loss import (DetectionCriterion, global_num_boxes, layer_losses, match_outputs, set_loss, stack_layers)
from prtr_tf.models.detector.matcher import hungarian_match, hungarian_match_layers

# ---------------------------------------------------------------------------------------
# NumPy references, written after DETR's code (per-image target lists, concatenated GT)
# ---------------------------------------------------------------------------------------


def np_cxcywh_to_xyxy(b):
    cx, cy, w, h = np.moveaxis(np.asarray(b, np.float64), -1, 0)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def np_giou(b1, b2):
    """DETR generalized_box_iou, pairwise, xyxy, no guards."""
    b1, b2 = np.asarray(b1, np.float64), np.asarray(b2, np.float64)
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    lt = np.maximum(b1[:, None, :2], b2[None, :, :2])
    rb = np.minimum(b1[:, None, 2:], b2[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None] - inter
    iou = inter / union
    lt = np.minimum(b1[:, None, :2], b2[None, :, :2])
    rb = np.maximum(b1[:, None, 2:], b2[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    area = wh[..., 0] * wh[..., 1]
    return iou - (area - union) / area


def np_softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_match(logits, pred_boxes, targets, cost_class=1.0, cost_bbox=5.0, cost_giou=2.0):
    """DETR HungarianMatcher.forward: list of (query indices, target indices)."""
    bs, nq = logits.shape[:2]
    prob = np_softmax(logits.reshape(bs * nq, -1))
    out_bbox = np.asarray(pred_boxes, np.float64).reshape(bs * nq, 4)
    tgt_ids = np.concatenate([t["labels"] for t in targets]).astype(int)
    tgt_bbox = np.concatenate([t["boxes"] for t in targets]).reshape(-1, 4)
    c_class = -prob[:, tgt_ids]
    c_bbox = np.abs(out_bbox[:, None] - tgt_bbox[None]).sum(-1)
    c_giou = -np_giou(np_cxcywh_to_xyxy(out_bbox), np_cxcywh_to_xyxy(tgt_bbox))
    c = (cost_bbox * c_bbox + cost_class * c_class + cost_giou * c_giou).reshape(bs, nq, -1)
    sizes = np.cumsum([len(t["boxes"]) for t in targets])[:-1]
    return [linear_sum_assignment(ci[i]) for i, ci in enumerate(np.split(c, sizes, -1))]


def np_criterion(logits, pred_boxes, targets, indices, num_boxes, eos_coef=0.1):
    """DETR SetCriterion loss_labels + loss_boxes of one layer."""
    logits = np.asarray(logits, np.float64)
    bs, nq, nc1 = logits.shape
    target_classes = np.full((bs, nq), nc1 - 1)
    src_boxes, tgt_boxes = [], []
    for b, (src, tgt) in enumerate(indices):
        target_classes[b, src] = targets[b]["labels"][tgt]
        src_boxes.append(np.asarray(pred_boxes[b], np.float64)[src])
        tgt_boxes.append(np.asarray(targets[b]["boxes"], np.float64).reshape(-1, 4)[tgt])
    weight = np.ones(nc1)
    weight[-1] = eos_coef
    logp = np.log(np_softmax(logits))
    nll = -np.take_along_axis(logp, target_classes[..., None], -1)[..., 0]
    w = weight[target_classes]
    loss_ce = (w * nll).sum() / w.sum()
    src_boxes, tgt_boxes = np.concatenate(src_boxes), np.concatenate(tgt_boxes)
    loss_bbox = np.abs(src_boxes - tgt_boxes).sum() / num_boxes
    if len(src_boxes):
        giou = np.diag(np_giou(np_cxcywh_to_xyxy(src_boxes), np_cxcywh_to_xyxy(tgt_boxes)))
    else:
        giou = np.zeros(0)
    loss_giou = (1 - giou).sum() / num_boxes
    return loss_ce, loss_bbox, loss_giou


# ---------------------------------------------------------------------------------------
# Random problems
# ---------------------------------------------------------------------------------------

def random_boxes(rng, shape):
    """Normalised cxcywh boxes well inside [0, 1]."""
    wh = rng.uniform(0.05, 0.5, shape + (2,))
    c = rng.uniform(0.0, 1.0, shape + (2,)) * (1 - wh) + wh / 2
    return np.concatenate([c, wh], -1).astype(np.float32)


def random_problem(rng, counts, num_slots=6, num_queries=8, num_classes=1, num_layers=3):
    """Padded GT tensors, the same GT as DETR target lists, and model outputs."""
    batch = len(counts)
    boxes = np.zeros((batch, num_slots, 4), np.float32)
    labels = np.zeros((batch, num_slots), np.int32)
    valid = np.zeros((batch, num_slots), np.float32)
    targets = []
    for b, n in enumerate(counts):
        # Real boxes in random slots (not only a prefix), padding slots hold junk.
        slots = np.sort(rng.choice(num_slots, n, replace=False))
        bx = random_boxes(rng, (n,))
        lb = rng.integers(0, num_classes, n).astype(np.int32)
        boxes[b] = rng.uniform(-1, 2, (num_slots, 4))
        labels[b] = rng.integers(0, num_classes + 3, num_slots)
        boxes[b, slots], labels[b, slots], valid[b, slots] = bx, lb, 1.0
        targets.append(dict(boxes=bx, labels=lb, slots=slots))
    logits = rng.normal(0, 2, (num_layers, batch, num_queries, num_classes + 1)).astype(np.float32)
    pred = random_boxes(rng, (num_layers, batch, num_queries))
    return boxes, labels, valid, targets, logits, pred


def outputs_of(logits, pred):
    out = {"pred_logits": tf.constant(logits[-1]), "pred_boxes": tf.constant(pred[-1])}
    if len(logits) > 1:
        out["aux_pred_logits"] = tf.constant(logits[:-1])
        out["aux_pred_boxes"] = tf.constant(pred[:-1])
    return out


def slot_to_query(targets, ref_indices, num_slots):
    """DETR (src, tgt) pairs -> per-slot matched query (-1 elsewhere)."""
    out = np.full((len(targets), num_slots), -1)
    for b, (src, tgt) in enumerate(ref_indices):
        out[b, targets[b]["slots"][tgt]] = src
    return out


# ---------------------------------------------------------------------------------------
# Boxes
# ---------------------------------------------------------------------------------------

def test_box_conversions_round_trip():
    b = random_boxes(np.random.default_rng(0), (5, 3))
    xyxy = box_ops.box_cxcywh_to_xyxy(tf.constant(b))
    np.testing.assert_allclose(xyxy, np_cxcywh_to_xyxy(b), atol=1e-6)
    np.testing.assert_allclose(box_ops.box_xyxy_to_cxcywh(xyxy), b, atol=1e-6)
    np.testing.assert_allclose(box_ops.box_xywh_to_xyxy(tf.constant([[1.0, 2.0, 3.0, 4.0]])),
                               [[1, 2, 4, 6]])
    np.testing.assert_allclose(box_ops.box_area(tf.constant([[1.0, 2.0, 4.0, 6.0]])), [12.0])


def test_giou_hand_values():
    a = tf.constant([[0.0, 0.0, 4.0, 4.0]])
    cases = {  # box -> (IoU, GIoU) against a
        (0.0, 0.0, 4.0, 4.0): (1.0, 1.0),             # identical
        (1.0, 1.0, 2.0, 2.0): (1 / 16, 1 / 16),       # nested: enclosing = union = a
        (2.0, 0.0, 6.0, 4.0): (8 / 24, 8 / 24),       # half overlap: enclosing = union
        (5.0, 0.0, 6.0, 1.0): (0.0, -(24 - 17) / 24),  # disjoint: union 17, enclosing 6x4
        (4.0, 0.0, 8.0, 4.0): (0.0, 0.0),             # touching: enclosing = union
        (10.0, 10.0, 14.0, 14.0): (0.0, -(196 - 32) / 196),  # far apart
    }
    other = tf.constant([list(k) for k in cases])
    iou, union = box_ops.box_iou(a, other)
    giou = box_ops.generalized_box_iou(a, other)
    np.testing.assert_allclose(iou[0], [v[0] for v in cases.values()], atol=1e-6)
    np.testing.assert_allclose(giou[0], [v[1] for v in cases.values()], atol=1e-6)
    np.testing.assert_allclose(union[0, 0], 16.0)


def test_giou_matches_numpy_reference_pairwise_and_elementwise():
    rng = np.random.default_rng(1)
    b1 = np_cxcywh_to_xyxy(random_boxes(rng, (7,))).astype(np.float32)
    b2 = np_cxcywh_to_xyxy(random_boxes(rng, (9,))).astype(np.float32)
    b2[0] = b1[0]                                         # identical
    b2[1] = [b1[1, 0] + 0.01, b1[1, 1] + 0.01, b1[1, 2] - 0.01, b1[1, 3] - 0.01]  # nested
    b2[2] = [b1[2, 2] + 0.1, b1[2, 3] + 0.1, b1[2, 2] + 0.3, b1[2, 3] + 0.2]        # disjoint
    ref = np_giou(b1, b2)
    assert ref.min() < -0.05 and np.isclose(ref[0, 0], 1) and ref[2, 2] < 0
    np.testing.assert_allclose(box_ops.generalized_box_iou(b1, b2), ref, atol=1e-6)
    # Batched leading dims broadcast; elementwise = the diagonal.
    batched = box_ops.generalized_box_iou(np.stack([b1, b1]), np.stack([b2, b2]))
    np.testing.assert_allclose(batched, np.stack([ref, ref]), atol=1e-6)
    np.testing.assert_allclose(box_ops.elementwise_generalized_box_iou(b1, b2[:7]),
                               np.diag(ref[:, :7]), atol=1e-6)


def test_giou_degenerate_boxes_are_finite_with_finite_gradients():
    points = tf.constant([[0.5, 0.5, 0.5, 0.5], [0.2, 0.3, 0.2, 0.6]])  # zero area
    with tf.GradientTape() as tape:
        tape.watch(points)
        giou = box_ops.generalized_box_iou(points, points)
        total = tf.reduce_sum(giou)
    assert np.all(np.isfinite(giou)) and np.all(np.isfinite(tape.gradient(total, points)))


# ---------------------------------------------------------------------------------------
# Matcher
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_classes", [1, 3])
def test_matcher_matches_detr_reference(num_classes):
    rng = np.random.default_rng(2)
    counts = [2, 0, 6, 1]
    boxes, labels, valid, targets, logits, pred = random_problem(
        rng, counts, num_slots=6, num_queries=8, num_classes=num_classes)
    indices = hungarian_match_layers(logits, pred, boxes, labels, valid)
    assert indices.dtype == tf.int32 and indices.shape == (3, 4, 6)
    for layer in range(3):
        ref = slot_to_query(targets, np_match(logits[layer], pred[layer], targets), 6)
        np.testing.assert_array_equal(indices[layer], ref)
    # Non-default costs; single-layer helper.
    ref = slot_to_query(targets, np_match(logits[0], pred[0], targets, 2.0, 1.0, 3.0), 6)
    np.testing.assert_array_equal(
        hungarian_match(logits[0], pred[0], boxes, labels, valid, 2.0, 1.0, 3.0), ref)


def test_matcher_more_boxes_than_queries_and_non_finite_costs():
    rng = np.random.default_rng(3)
    boxes, labels, valid, targets, logits, pred = random_problem(
        rng, [5, 2], num_slots=5, num_queries=3, num_layers=1)
    indices = hungarian_match(logits[0], pred[0], boxes, labels, valid).numpy()
    ref = slot_to_query(targets, np_match(logits[0], pred[0], targets), 5)
    np.testing.assert_array_equal(indices, ref)
    assert (indices[0] >= 0).sum() == 3 and (indices[1] >= 0).sum() == 2
    bad = logits.copy()
    bad[0, 0, 0] = np.nan
    indices = hungarian_match(bad[0], pred[0], boxes, labels, valid).numpy()
    assert sorted(indices[0][indices[0] >= 0]) == [0, 1, 2]


def test_matcher_in_tf_function_with_unknown_batch():
    rng = np.random.default_rng(4)
    boxes, labels, valid, targets, logits, pred = random_problem(rng, [3, 0, 1], num_layers=2)
    spec = [tf.TensorSpec([2, None, 8, 2]), tf.TensorSpec([2, None, 8, 4]),
            tf.TensorSpec([None, 6, 4]), tf.TensorSpec([None, 6], tf.int32),
            tf.TensorSpec([None, 6])]
    fn = tf.function(hungarian_match_layers, input_signature=spec)
    assert fn.get_concrete_function().structured_outputs.shape.as_list() == [2, None, 6]
    out = fn(logits, pred, boxes, labels, valid)
    for layer in range(2):
        ref = slot_to_query(targets, np_match(logits[layer], pred[layer], targets), 6)
        np.testing.assert_array_equal(out[layer], ref)


# ---------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------

def reference_losses(logits, pred, targets, eos_coef=0.1, coefs=(1.0, 5.0, 2.0), costs=(1, 5, 2)):
    num_boxes = max(sum(len(t["boxes"]) for t in targets), 1)
    per_layer = [np_criterion(logits[l], pred[l], targets,
                              np_match(logits[l], pred[l], targets, *costs), num_boxes, eos_coef)
                 for l in range(len(logits))]
    total = sum(coefs[0] * ce + coefs[1] * bb + coefs[2] * gi for ce, bb, gi in per_layer)
    return total, per_layer


@pytest.mark.parametrize("num_classes,counts", [(1, [2, 0, 6, 1]), (3, [4, 1, 3])])
def test_set_loss_matches_detr_reference_with_aux_layers(num_classes, counts):
    rng = np.random.default_rng(5)
    boxes, labels, valid, targets, logits, pred = random_problem(
        rng, counts, num_slots=6, num_queries=8, num_classes=num_classes, num_layers=3)
    losses = set_loss(outputs_of(logits, pred), boxes, labels, valid)
    total, per_layer = reference_losses(logits, pred, targets)
    np.testing.assert_allclose(losses["loss"], total, rtol=1e-5)
    for name, k in (("loss_ce", 0), ("loss_bbox", 1), ("loss_giou", 2)):
        np.testing.assert_allclose(losses[name], per_layer[-1][k], rtol=1e-5, atol=1e-6)
        for i in range(2):
            np.testing.assert_allclose(losses[f"{name}_{i}"], per_layer[i][k], rtol=1e-5,
                                       atol=1e-6)
    assert sorted(losses) == sorted(["loss"] + [f"{n}{s}" for n in ("loss_ce", "loss_bbox",
                                     "loss_giou") for s in ("", "_0", "_1")])


def test_set_loss_weights_and_costs_via_config_criterion():
    import ml_collections
    rng = np.random.default_rng(6)
    boxes, labels, valid, targets, logits, pred = random_problem(rng, [3, 2], num_layers=2)
    config = ml_collections.ConfigDict(dict(cost_class=2.0, cost_bbox=1.0, cost_giou=3.0,
                                            ce_coef=0.5, bbox_coef=2.0, giou_coef=4.0,
                                            eos_coef=0.3))
    criterion = DetectionCriterion(config)
    batch = dict(boxes=boxes, labels=labels, valid=valid)
    outputs = outputs_of(logits, pred)
    indices = criterion.match(outputs, batch)
    losses = criterion(outputs, batch, indices=indices)
    total, _ = reference_losses(logits, pred, targets, eos_coef=0.3, coefs=(0.5, 2.0, 4.0),
                                costs=(2.0, 1.0, 3.0))
    np.testing.assert_allclose(losses["loss"], total, rtol=1e-5)
    np.testing.assert_allclose(criterion(outputs, batch)["loss"], total, rtol=1e-5)


def test_empty_batch_and_explicit_num_boxes():
    rng = np.random.default_rng(7)
    boxes, labels, valid, targets, logits, pred = random_problem(rng, [0, 0], num_layers=1)
    losses = set_loss(outputs_of(logits, pred), boxes, labels, valid)
    assert float(losses["loss_bbox"]) == 0.0 and float(losses["loss_giou"]) == 0.0
    # All queries are no-object: the CE is the plain mean NLL of the last class.
    ref = -np.log(np_softmax(logits[0]))[..., -1].mean()
    np.testing.assert_allclose(losses["loss_ce"], ref, rtol=1e-5)

    boxes, labels, valid, targets, logits, pred = random_problem(rng, [2, 3], num_layers=1)
    base = set_loss(outputs_of(logits, pred), boxes, labels, valid)
    halved = set_loss(outputs_of(logits, pred), boxes, labels, valid, num_boxes=10.0)
    np.testing.assert_allclose(halved["loss_bbox"], base["loss_bbox"] / 2, rtol=1e-6)
    np.testing.assert_allclose(halved["loss_giou"], base["loss_giou"] / 2, rtol=1e-6)
    np.testing.assert_allclose(halved["loss_ce"], base["loss_ce"], rtol=1e-6)
    clamped = set_loss(outputs_of(logits, pred), boxes, labels, valid, num_boxes=0.25)
    np.testing.assert_allclose(clamped["loss_bbox"], base["loss_bbox"] * 5, rtol=1e-6)
    assert float(global_num_boxes(tf.zeros((2, 3)))) == 1.0
    assert float(global_num_boxes(valid)) == 5.0


def test_aux_outputs_list_is_accepted():
    rng = np.random.default_rng(8)
    _, _, _, _, logits, pred = random_problem(rng, [1], num_layers=3)
    stacked = stack_layers(outputs_of(logits, pred))
    as_list = stack_layers({"pred_logits": logits[-1], "pred_boxes": pred[-1],
                            "aux_outputs": [{"pred_logits": logits[i], "pred_boxes": pred[i]}
                                            for i in range(2)]})
    for a, b in zip(stacked, as_list):
        np.testing.assert_array_equal(a, b)


def test_gradients_flow_to_logits_and_boxes():
    rng = np.random.default_rng(9)
    boxes, labels, valid, targets, logits, pred = random_problem(rng, [3, 0, 2], num_layers=2)
    raw = tf.Variable(np.log(pred / (1 - pred)))  # box head pre-sigmoid
    logit_var = tf.Variable(logits)
    with tf.GradientTape() as tape:
        pred_boxes = tf.sigmoid(raw)
        outputs = {"pred_logits": logit_var[-1], "pred_boxes": pred_boxes[-1],
                   "aux_pred_logits": logit_var[:-1], "aux_pred_boxes": pred_boxes[:-1]}
        loss = set_loss(outputs, boxes, labels, valid)["loss"]
    g_logits, g_raw = tape.gradient(loss, [logit_var, raw])
    for g in (g_logits, g_raw):
        assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0
    # Every layer gets its own gradient; unmatched queries' boxes get none.
    assert np.all(np.abs(g_logits.numpy()).sum(axis=(1, 2, 3)) > 0)
    indices = match_outputs(outputs, boxes, labels, valid).numpy()
    for layer in range(2):
        for b in range(3):
            matched = set(indices[layer, b][indices[layer, b] >= 0])
            for q in range(8):
                assert (np.abs(g_raw[layer, b, q]).sum() > 0) == (q in matched)


def test_matching_outside_and_loss_inside_xla_with_unknown_batch():
    rng = np.random.default_rng(10)
    boxes, labels, valid, targets, logits, pred = random_problem(rng, [2, 0, 4], num_layers=2)

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 2]), tf.TensorSpec([None, 8, 4]),
                                  tf.TensorSpec([1, None, 8, 2]), tf.TensorSpec([1, None, 8, 4]),
                                  tf.TensorSpec([None, 6, 4]),
                                  tf.TensorSpec([None, 6], tf.int32), tf.TensorSpec([None, 6])])
    def match(lg, bx, aux_lg, aux_bx, gt_boxes, gt_labels, gt_valid):
        outputs = {"pred_logits": lg, "pred_boxes": bx, "aux_pred_logits": aux_lg,
                   "aux_pred_boxes": aux_bx}
        return match_outputs(outputs, gt_boxes, gt_labels, gt_valid)

    @tf.function(jit_compile=True)
    def loss_fn(lg, bx, aux_lg, aux_bx, gt_boxes, gt_labels, gt_valid, indices):
        outputs = {"pred_logits": lg, "pred_boxes": bx, "aux_pred_logits": aux_lg,
                   "aux_pred_boxes": aux_bx}
        return set_loss(outputs, gt_boxes, gt_labels, gt_valid, indices=indices)

    args = (logits[-1], pred[-1], logits[:-1], pred[:-1], boxes, labels, valid)
    indices = match(*args)
    assert indices.shape == (2, 3, 6)
    losses = loss_fn(*args, indices)
    total, _ = reference_losses(logits, pred, targets)
    np.testing.assert_allclose(losses["loss"], total, rtol=1e-5)
    ce, bbox, giou = layer_losses(logits, pred, boxes, labels, valid, indices)
    assert ce.shape == bbox.shape == giou.shape == (2,)


def test_global_num_boxes_across_replicas_reproduces_the_full_batch_box_terms():
    """2 logical CPUs: per-replica loss / num_replicas, summed, = full-batch box terms."""
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from prtr_tf.models.detector.loss import set_loss, global_num_boxes
        rng = np.random.default_rng(0)
        B, Q, N = 4, 5, 3
        logits = rng.normal(size=(B, Q, 2)).astype(np.float32)
        pred = rng.uniform(0.2, 0.6, (B, Q, 4)).astype(np.float32)
        boxes = rng.uniform(0.2, 0.6, (B, N, 4)).astype(np.float32)
        labels = np.zeros((B, N), np.int32)
        valid = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0]], np.float32)
        full = set_loss({"pred_logits": logits, "pred_boxes": pred}, boxes, labels, valid)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        def step(lg, bx, gb, gl, gv):
            n = global_num_boxes(gv)
            out = set_loss({"pred_logits": lg, "pred_boxes": bx}, gb, gl, gv, num_boxes=n)
            k = tf.distribute.get_replica_context().num_replicas_in_sync
            return out["loss_bbox"] / k, out["loss_giou"] / k, n
        ds = tf.data.Dataset.from_tensor_slices((logits, pred, boxes, labels, valid)).batch(B)
        batch = next(iter(strategy.experimental_distribute_dataset(ds)))
        bbox, giou, n = strategy.run(tf.function(step), args=batch)
        bbox = strategy.reduce("SUM", bbox, axis=None)
        giou = strategy.reduce("SUM", giou, axis=None)
        assert [float(v) for v in strategy.experimental_local_results(n)] == [3.0, 3.0]
        np.testing.assert_allclose(bbox, full["loss_bbox"], rtol=1e-5)
        np.testing.assert_allclose(giou, full["loss_giou"], rtol=1e-5)
        print("OK")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=pathlib.Path(__file__).resolve().parents[2])
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


def test_criterion_reads_the_detector_config_names_and_aux_loss_flag():
    import ml_collections
    rng = np.random.default_rng(11)
    boxes, labels, valid, targets, logits, pred = random_problem(rng, [3, 1], num_layers=3)
    config = ml_collections.ConfigDict(dict(cost_class=1.0, cost_bbox=5.0, cost_giou=2.0,
                                            ce_loss_coef=0.5, bbox_loss_coef=2.0,
                                            giou_loss_coef=4.0, eos_coef=0.1, aux_loss=False))
    batch = dict(boxes=boxes, labels=labels, valid=valid)
    losses = DetectionCriterion(config)(outputs_of(logits, pred), batch)
    total, _ = reference_losses(logits[-1:], pred[-1:], targets, coefs=(0.5, 2.0, 4.0))
    np.testing.assert_allclose(losses["loss"], total, rtol=1e-5)
    assert "loss_ce_0" not in losses
