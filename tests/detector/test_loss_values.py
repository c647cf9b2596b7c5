"""DETR's set criterion pinned to a hand computation (issue 27): a padding slot is
masked out of EVERY term even when the matching names a query for it, the class
weights, num_boxes (clamped to >= 1), L1 and GIoU of an asymmetric box."""
import math

import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.models.detector import loss as dloss

# Q=2 queries, N=2 slots (slot 1 is padding), one class (person 0, no-object 1).
LOGITS = [[0.0, 2.0],   # q0: no-object (the padding slot's "match" must not count)
          [1.0, 0.0]]   # q1: matched to slot 0
PRED = [[0.9, 0.9, 0.1, 0.1], [0.5, 0.4, 0.2, 0.6]]
GT = [[0.45, 0.5, 0.3, 0.4], [0.1, 0.1, 0.05, 0.05]]
# q1 label 0: nll = log(1 + e) - 1; q0 no-object: nll = log(1 + e^2) - 2, weight 0.1
CE = ((math.log(1 + math.e) - 1) + 0.1 * (math.log(1 + math.e ** 2) - 2)) / 1.1
L1 = 0.05 + 0.1 + 0.1 + 0.2
# xyxy: pred (0.4, 0.1, 0.6, 0.7), gt (0.3, 0.3, 0.6, 0.7): areas 0.12 and 0.12,
# overlap 0.2 x 0.4 = 0.08, union 0.16, IoU 0.5, enclosing 0.3 x 0.6 = 0.18.
GIOU = 0.5 - (0.18 - 0.16) / 0.18


def _inputs(indices=((1, 0),)):
    return (tf.constant([[LOGITS]], tf.float32), tf.constant([[PRED]], tf.float32),
            tf.constant([GT], tf.float32), tf.constant([[0, 0]]),
            tf.constant([[1.0, 0.0]]), tf.constant([indices]))


def test_padding_slot_is_masked_in_every_term():
    # The matching gives the padding slot 1 query 0: with the mask it is no-object
    # (class term) and adds no L1 / GIoU; num_boxes = 1 valid box.
    logits, pred, gt, labels, valid, indices = _inputs()
    ce, bbox, giou = dloss.layer_losses(logits, pred, gt, labels, valid, indices)
    assert ce.numpy()[0] == pytest.approx(CE, rel=1e-5)
    assert bbox.numpy()[0] == pytest.approx(L1, rel=1e-5)
    assert giou.numpy()[0] == pytest.approx(1 - GIOU, rel=1e-5)
    # the same with the padding slot unmatched (-1)
    out = dloss.layer_losses(*_inputs(((1, -1),))[:5], tf.constant([[[1, -1]]]))
    np.testing.assert_allclose([t.numpy()[0] for t in out], [CE, L1, 1 - GIOU], rtol=1e-5)


def test_num_boxes_and_class_weight_total():
    logits, pred, gt, labels, valid, indices = _inputs()
    ce, bbox, giou = dloss.layer_losses(logits, pred, gt, labels, valid, indices,
                                        num_boxes=4.0, class_weight_total=2.2)
    assert bbox.numpy()[0] == pytest.approx(L1 / 4, rel=1e-5)
    assert giou.numpy()[0] == pytest.approx((1 - GIOU) / 4, rel=1e-5)
    assert ce.numpy()[0] == pytest.approx(CE * 1.1 / 2.2, rel=1e-5)
    # num_boxes is clamped to >= 1 (no valid box: 0 -> 1)
    _, bbox, _ = dloss.layer_losses(logits, pred, gt, labels, valid, indices, num_boxes=0.25)
    assert bbox.numpy()[0] == pytest.approx(L1, rel=1e-5)
    # the global class weight of one replica: 1 matched + 0.1 * (2 - 1) per batch
    assert dloss.global_class_weight(valid, 2).numpy() == pytest.approx(1.1)
    assert dloss.global_class_weight(tf.ones((1, 3)), 2).numpy() == pytest.approx(2.0)


def test_set_loss_coefficients():
    logits, pred, gt, labels, valid, indices = _inputs()
    outputs = {"pred_logits": logits[0], "pred_boxes": pred[0]}
    losses = dloss.set_loss(outputs, gt, labels, valid, indices=indices)
    assert losses["loss"].numpy() == pytest.approx(CE + 5 * L1 + 2 * (1 - GIOU), rel=1e-5)
    assert losses["loss_bbox"].numpy() == pytest.approx(L1, rel=1e-5)
    assert losses["loss_giou"].numpy() == pytest.approx(1 - GIOU, rel=1e-5)
