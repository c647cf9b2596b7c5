"""DETR's set criterion for the person detector (spec §8, DETR ``models/detr.py``).

For each decoder layer l (final and auxiliary, each matched separately):

    L_l = ce_coef * L_ce + bbox_coef * L_bbox + giou_coef * L_giou,   loss = sum_l L_l

with defaults 1, 5, 2:

* L_ce: class-weighted cross-entropy over all B*Q queries. A query matched to GT box n
  gets that box's label, every other query the no-object label C (last logit). Class
  weights are 1 for the C classes and ``eos_coef`` (0.1) for no-object, reduced as
  torch's weighted mean over the whole local batch: sum_i w_i nll_i / sum_i w_i.
* L_bbox: L1 between matched predicted and GT cxcywh boxes, summed, / num_boxes.
* L_giou: (1 - GIoU) of the matched pairs, summed, / num_boxes.

``num_boxes`` is the number of valid GT boxes, clamped to >= 1. DETR all-reduces it:
``num_boxes = max(sum over replicas of the local counts / num_replicas, 1)``, then
each replica divides its local box sums by it and DDP averages the gradients. The
TF equivalent (see `global_num_boxes`): pass ``num_boxes=global_num_boxes(valid)``
computed inside the replica function, and scale each replica's loss by
1 / num_replicas before the gradient (the usual ``tf.distribute`` convention, as
gradients are summed over replicas). Without it (``num_boxes=None``) the local count
is used, which is exact on one replica only. L_ce needs nothing: it is a local mean,
like the keypoint loss.

Matching needs NumPy (``tf.numpy_function``) and cannot run under XLA. A jit-compiled
step is split in two::

    indices = match_outputs(outputs, boxes, labels, valid)           # outside jit
    losses = set_loss(outputs, boxes, labels, valid, indices=indices)  # inside

Model outputs: "pred_logits" (B, Q, C+1) and "pred_boxes" (B, Q, 4) of the final
layer, optionally "aux_pred_logits" (L-1, B, Q, C+1) and "aux_pred_boxes"
(L-1, B, Q, 4) stacked, or DETR's "aux_outputs" list of dicts. Layer order
everywhere: aux layers first, final last (``indices[-1]`` is the final layer's).
"""
import tensorflow as tf

from prtr_tf.nn.boxes import box_cxcywh_to_xyxy, elementwise_generalized_box_iou
from prtr_tf.models.detector.matcher import hungarian_match_layers
from prtr_tf.nn import set_criterion
from prtr_tf.nn.distribute import global_count, replica_mean

# Replaces the GT box of padding slots before the GIoU, so that no NaN/inf can arise
# there (the terms are masked out anyway).
_DUMMY_BOX = (0.5, 0.5, 1.0, 1.0)


def stack_layers(outputs):
    """(logits (L, B, Q, C+1), boxes (L, B, Q, 4)) of a detector output dict, aux
    layers first, final last (`prtr_tf.nn.set_criterion.stack_layers`)."""
    return set_criterion.stack_layers(outputs, ("logits", "boxes"))


def match_outputs(outputs, boxes, labels, valid, cost_class=1.0, cost_bbox=5.0,
                  cost_giou=2.0):
    """Matches every decoder layer of ``outputs`` to the GT (B, N, ...).

    Returns int32 (L, B, N), aux layers first, final last; -1 for invalid/unmatched
    slots. Uses ``tf.numpy_function``: call it outside any ``jit_compile`` function.
    """
    logits, pred_boxes = stack_layers(outputs)
    return hungarian_match_layers(logits, pred_boxes, boxes, labels, valid, cost_class,
                                  cost_bbox, cost_giou)


def local_num_boxes(valid):
    """Number of valid GT boxes of the local batch, float32 (not clamped)."""
    return tf.reduce_sum(tf.cast(valid, tf.float32))


def global_num_boxes(valid):
    """DETR's num_boxes: the valid boxes of all replicas / num_replicas, clamped >= 1
    (`prtr_tf.nn.distribute.global_count`)."""
    return global_count(local_num_boxes(valid))


def global_class_weight(valid, num_queries, eos_coef=0.1):
    """The denominator of L_ce over the global batch, per replica: the class weights of
    all queries (1 per matched query, eos_coef per no-object one) summed over the
    replicas / their number. DETR divides by its local sum instead, so replicas with
    different person counts weigh their queries slightly differently; with this
    normaliser N replicas train exactly as one device with their whole batch."""
    valid = tf.cast(valid, tf.float32)
    matched = tf.reduce_sum(tf.minimum(tf.reduce_sum(valid, axis=-1), float(num_queries)))
    total = tf.cast(tf.shape(valid)[0] * num_queries, tf.float32)
    return replica_mean(matched + eos_coef * (total - matched))


def layer_losses(logits, pred_boxes, boxes, labels, valid, indices, num_boxes=None,
                 eos_coef=0.1, class_weight_total=None):
    """Per-layer L_ce, L_bbox and L_giou given the matching (no matching here, XLA-safe).

    Params:
        logits: (L, B, Q, C+1) logits, no-object last; any float dtype.
        pred_boxes: (L, B, Q, 4) normalised cxcywh predictions.
        boxes: (B, N, 4) normalised cxcywh GT boxes.
        labels: (B, N) int GT classes in [0, C).
        valid: (B, N) float/bool mask, 1 = real box.
        indices: int (L, B, N) matched query of each GT slot (negative = unmatched),
            distinct per (l, b) over the matched slots.
        num_boxes: the box-term normaliser (see the module docstring); None = the
            number of valid boxes in this batch. Clamped to >= 1 either way.
        eos_coef: class weight of no-object.
        class_weight_total: the L_ce denominator (`global_class_weight`); None = the
            local sum of the class weights (DETR's).

    Returns:
        (loss_ce, loss_bbox, loss_giou), three float32 (L,) tensors.
    """
    logits = tf.cast(logits, tf.float32)
    pred_boxes = tf.cast(pred_boxes, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    labels = tf.cast(labels, tf.int32)
    valid = tf.cast(valid, tf.float32)
    indices = tf.cast(indices, tf.int32)
    num_queries = tf.shape(logits)[2]
    num_classes1 = logits.shape[-1] if logits.shape[-1] is not None else tf.shape(logits)[-1]
    if num_boxes is None:
        num_boxes = local_num_boxes(valid)
    num_boxes = tf.maximum(tf.cast(num_boxes, tf.float32), 1.0)

    matched = valid * tf.cast(indices >= 0, tf.float32)                      # (L, B, N)
    query_of_slot = tf.where(matched > 0, indices, -1)                       # -1: no query
    # slot_to_query[l, b, n, q] = 1 if GT slot n is matched to query q.
    slot_to_query = tf.one_hot(query_of_slot, num_queries)                   # (L, B, N, Q)
    label_onehot = tf.one_hot(labels, num_classes1)                          # (B, N, C+1)
    target = tf.einsum("lbnq,bnc->lbqc", slot_to_query, label_onehot)        # (L, B, Q, C+1)
    no_object = 1.0 - tf.reduce_sum(slot_to_query, axis=2)                   # (L, B, Q)
    target = target + no_object[..., None] * tf.one_hot(num_classes1 - 1, num_classes1)
    class_weight = tf.concat([tf.ones([num_classes1 - 1]), [eos_coef]], axis=0)
    weight = tf.reduce_sum(target * class_weight, axis=-1)                   # (L, B, Q)
    nll = -tf.reduce_sum(target * tf.nn.log_softmax(logits, axis=-1), axis=-1)
    if class_weight_total is None:
        class_weight_total = tf.reduce_sum(weight, axis=[1, 2])
    loss_ce = tf.reduce_sum(weight * nll, axis=[1, 2]) / class_weight_total

    src = tf.gather(pred_boxes, tf.maximum(indices, 0), axis=2, batch_dims=2)  # (L, B, N, 4)
    tgt = tf.where(valid[..., None] > 0, boxes, tf.constant(_DUMMY_BOX, tf.float32))
    l1 = tf.reduce_sum(tf.abs(src - tgt), axis=-1)                           # (L, B, N)
    loss_bbox = tf.reduce_sum(l1 * matched, axis=[1, 2]) / num_boxes
    giou = elementwise_generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt))
    loss_giou = tf.reduce_sum((1.0 - giou) * matched, axis=[1, 2]) / num_boxes
    return loss_ce, loss_bbox, loss_giou


def set_loss(outputs, boxes, labels, valid, indices=None, num_boxes=None, eos_coef=0.1,
             ce_coef=1.0, bbox_coef=5.0, giou_coef=2.0, cost_class=1.0, cost_bbox=5.0,
             cost_giou=2.0, class_weight_total=None):
    """The DETR training loss of one (local) batch.

    Params:
        outputs: detector output dict, see `stack_layers`.
        boxes, labels, valid: GT (B, N, 4) normalised cxcywh, (B, N) int, (B, N) mask
            (the ``boxes``, ``labels``, ``valid`` of a `prtr_tf.models.detector.data` batch).
        indices: optional int (L, B, N) from `match_outputs`. When given no matching
            is done, so the call is XLA-safe; when None every layer is matched here
            with (cost_class, cost_bbox, cost_giou) via ``tf.numpy_function``.
        num_boxes: box-term normaliser; None = local valid count (one replica). Under a
            distribution strategy pass `global_num_boxes` (module docstring).
        eos_coef, ce_coef, bbox_coef, giou_coef: no-object weight and term weights.
        class_weight_total: L_ce denominator; None = local (DETR's). Under a
            distribution strategy `global_class_weight` makes replicas exact.

    Returns:
        dict of float32 scalars: "loss" (sum over all layers of the weighted terms),
        "loss_ce", "loss_bbox", "loss_giou" of the final layer (unweighted), and
        "loss_ce_{i}", "loss_bbox_{i}", "loss_giou_{i}" of aux layer i = 0..L-2.
    """
    logits, pred_boxes = stack_layers(outputs)
    if indices is None:
        indices = hungarian_match_layers(logits, pred_boxes, boxes, labels, valid,
                                         cost_class, cost_bbox, cost_giou)
    loss_ce, loss_bbox, loss_giou = layer_losses(logits, pred_boxes, boxes, labels, valid,
                                                 indices, num_boxes, eos_coef,
                                                 class_weight_total)
    return set_criterion.loss_dict({"ce": (ce_coef, loss_ce), "bbox": (bbox_coef, loss_bbox),
                      "giou": (giou_coef, loss_giou)})


class DetectionCriterion:
    """`match_outputs` and `set_loss` with the weights of a ``config.loss`` ConfigDict.

    Fields read (aliases after "|", DETR defaults when missing): cost_class, cost_bbox,
    cost_giou (matcher: 1, 5, 2), ce_coef|ce_loss_coef, bbox_coef|bbox_loss_coef,
    giou_coef|giou_loss_coef (term weights: 1, 5, 2), eos_coef (no-object class weight,
    0.1), aux_loss (True; False = final layer only). ``targets`` is any
    mapping with "boxes", "labels" and "valid" (e.g. a detection data batch)::

        criterion = DetectionCriterion(config.loss)
        indices = criterion.match(outputs, batch)                      # outside jit
        losses = criterion(outputs, batch, indices=indices, global_norm=True)  # inside
    """

    def __init__(self, loss_config):
        def get(*names, default):
            for name in names:
                if name in loss_config:
                    return float(loss_config[name])
            return default

        self.costs = dict(cost_class=get("cost_class", default=1.0),
                          cost_bbox=get("cost_bbox", default=5.0),
                          cost_giou=get("cost_giou", default=2.0))
        self.coefs = dict(ce_coef=get("ce_coef", "ce_loss_coef", default=1.0),
                          bbox_coef=get("bbox_coef", "bbox_loss_coef", default=5.0),
                          giou_coef=get("giou_coef", "giou_loss_coef", default=2.0),
                          eos_coef=get("eos_coef", default=0.1))
        # DETR's --no_aux_loss: only the final layer (aux outputs are ignored).
        self.aux_loss = bool(loss_config.get("aux_loss", True))

    def _outputs(self, outputs):
        if self.aux_loss:
            return outputs
        return {k: outputs[k] for k in ("pred_logits", "pred_boxes")}

    def match(self, outputs, targets):
        return match_outputs(self._outputs(outputs), targets["boxes"], targets["labels"],
                             targets["valid"], **self.costs)

    def __call__(self, outputs, targets, indices=None, num_boxes=None, global_norm=False):
        """The losses; ``global_norm`` (inside ``strategy.run``): the box terms by
        `global_num_boxes` and the class term by `global_class_weight`, so that any
        number of replicas trains as one device (``num_boxes`` then must be None)."""
        class_weight_total = None
        if global_norm:
            if num_boxes is not None:
                raise ValueError("pass num_boxes or global_norm=True, not both")
            num_boxes = global_num_boxes(targets["valid"])
            class_weight_total = global_class_weight(
                targets["valid"], outputs["pred_logits"].shape[1], self.coefs["eos_coef"])
        return set_loss(self._outputs(outputs), targets["boxes"], targets["labels"],
                        targets["valid"], indices=indices, num_boxes=num_boxes, **self.coefs,
                        **self.costs, class_weight_total=class_weight_total)
