"""DETR's Hungarian matcher for the person detector (spec §8, DETR ``models/matcher.py``).

For each image b with n_b ground-truth boxes (padded to N slots, ``valid`` marks the
real ones) and Q queries, with p = softmax over all C+1 logits (no-object last)::

    C[q, n] = cost_class * (-p_q(label_n)) + cost_bbox * ||box_q - box_n||_1 (cxcywh)
              + cost_giou * (-GIoU(box_q, box_n))

and ``scipy.optimize.linear_sum_assignment`` on the Q x n_b matrix of the valid slots
gives distinct queries to the GT boxes (exactly DETR's call, so ties break the same
way: `prtr_tf.nn.hungarian`, targets last). Defaults 1, 5, 2 as in DETR and the spec.

Costs are computed in TensorFlow (float32, no gradient); the assignment of all decoder
layers and images runs in ONE ``tf.numpy_function`` call. Shapes are static, so it
works in ``tf.function`` (also with an unknown batch size) but **not inside an XLA
region** (``jit_compile=True``): match outside the compiled step and pass the indices
to `prtr_tf.models.detector.loss.set_loss`.

Result convention: int32 (..., B, N); ``indices[..., b, n]`` is the query matched to GT
slot n of image b, and -1 for invalid (padding) slots and for GT boxes left unmatched
(only possible when an image has more boxes than queries).
"""
import tensorflow as tf

from prtr_tf.nn.boxes import box_cxcywh_to_xyxy, generalized_box_iou
from prtr_tf.nn import hungarian


def matching_cost(pred_logits, pred_boxes, boxes, labels, cost_class=1.0, cost_bbox=5.0,
                  cost_giou=2.0):
    """The matching cost matrices, queries x GT slots.

    Params:
        pred_logits: (..., B, Q, C+1) class logits, no-object last.
        pred_boxes: (..., B, Q, 4) normalised cxcywh predictions.
        boxes: (B, N, 4) normalised cxcywh GT boxes (padding slots: anything finite).
        labels: (B, N) int GT classes in [0, C) (padding slots: anything).
        cost_class, cost_bbox, cost_giou: weights of -p(class), L1 and -GIoU.

    Returns:
        float32 (..., B, Q, N), no gradient. Columns of padding slots are meaningless.
    """
    pred_logits = tf.stop_gradient(tf.cast(pred_logits, tf.float32))
    pred_boxes = tf.stop_gradient(tf.cast(pred_boxes, tf.float32))
    boxes = tf.stop_gradient(tf.cast(boxes, tf.float32))
    num_classes1 = pred_logits.shape[-1]
    if num_classes1 is None:
        num_classes1 = tf.shape(pred_logits)[-1]

    prob = tf.nn.softmax(pred_logits, axis=-1)                          # (..., B, Q, C+1)
    onehot = tf.one_hot(tf.cast(labels, tf.int32), num_classes1)        # (B, N, C+1)
    class_cost = -tf.einsum("...bqc,bnc->...bqn", prob, onehot)         # (..., B, Q, N)
    bbox_cost = tf.reduce_sum(
        tf.abs(pred_boxes[..., :, None, :] - boxes[:, None, :, :]), axis=-1)
    giou_cost = -generalized_box_iou(box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(boxes))
    return cost_bbox * bbox_cost + cost_class * class_cost + cost_giou * giou_cost


def hungarian_match_layers(logits, pred_boxes, boxes, labels, valid, cost_class=1.0,
                           cost_bbox=5.0, cost_giou=2.0):
    """Matches every decoder layer independently, in one numpy_function call.

    Params:
        logits: (L, B, Q, C+1) logits of L decoder layers, no-object last.
        pred_boxes: (L, B, Q, 4) normalised cxcywh predictions.
        boxes: (B, N, 4) normalised cxcywh GT boxes, the same for every layer.
        labels: (B, N) int GT classes.
        valid: (B, N) float/bool mask, 1 = real box.

    Returns:
        int32 (L, B, N): indices[l, b, n] is the query of layer l matched to GT slot n
        of image b; -1 for invalid or unmatched slots. Must be called outside XLA.
    """
    cost = matching_cost(logits, pred_boxes, boxes, labels, cost_class, cost_bbox, cost_giou)
    return hungarian.assign(cost, valid, targets_last=True,
                            name="detr_hungarian_assignment")


def hungarian_match(pred_logits, pred_boxes, boxes, labels, valid, cost_class=1.0,
                    cost_bbox=5.0, cost_giou=2.0):
    """Matches one decoder layer: (B, Q, C+1), (B, Q, 4), GT (B, N, ...) -> int32 (B, N)."""
    return hungarian_match_layers(pred_logits[None], pred_boxes[None], boxes, labels, valid,
                                  cost_class, cost_bbox, cost_giou)[0]
