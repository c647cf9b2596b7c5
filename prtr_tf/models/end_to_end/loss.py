"""The end-to-end PRTR's training loss (spec §8): DETR's set loss on the detector and
the two-stage keypoint set loss on the STN crops of the matched persons."""
import tensorflow as tf

from prtr_tf.models.detector.loss import DetectionCriterion
from prtr_tf.models.end_to_end.model import keypoint_outputs
from prtr_tf.models.keypoint.loss import set_loss
from prtr_tf.nn.distribute import global_count


def sample_matched_queries(indices, valid, max_per_image=5, seed=None):
    """Training crops: the matched (query, GT) pairs, at most ``max_per_image`` per
    image, sampled uniformly at random where an image has more.

    Params:
        indices: int (B, M) matched query of each GT slot (the final layer of
            `prtr_tf.models.detector.loss.match_outputs`), negative = unmatched.
        valid: (B, M) GT mask.
    Returns:
        (batch_index, query_index, gt_index), int32 (N,), image-major.
    """
    indices = tf.cast(indices, tf.int32)
    matched = tf.logical_and(indices >= 0, tf.cast(valid, tf.bool))
    pairs = tf.cast(tf.where(matched), tf.int32)                                # (P, 2) [b, m]
    key = (tf.cast(pairs[:, 0], tf.float32)
           + tf.random.uniform(tf.shape(pairs)[:1], 0.0, 0.5, seed=seed))
    pairs = tf.gather(pairs, tf.argsort(key))
    image = pairs[:, 0]
    rank = tf.range(tf.shape(image)[0]) - tf.searchsorted(image, image, side="left")
    pairs = tf.boolean_mask(pairs, rank < max_per_image)
    return pairs[:, 0], tf.gather_nd(indices, pairs), pairs[:, 1]


def loss(model, batch, loss_config, training=True, seed=None):
    """The end-to-end training loss of one batch (one replica).

    ``batch`` (as `prtr_tf.models.detector.data.build_detection_dataset` gives it from
    records with keypoints): image (B, H, W, 3), optional mask (B, H, W) 1 on
    padding, and per GT person slot: boxes (B, M, 4) cxcywh, labels (B, M) (0 =
    person), valid (B, M), keypoints (B, M, J, 2) and keypoint_weights (B, M, J),
    image-normalised (x, y).

    Detection: DETR's matched set loss on every decoder layer, box terms normalised
    by `global_num_boxes` and the class term by `global_class_weight` (exact under
    any number of replicas). Keypoints: the final layer's matched persons (at most
    ``max_train_persons`` per image, sampled) are cropped and the two-stage keypoint
    set loss (its own Hungarian matching) is applied with image-normalised targets,
    normalised by the number of crops of the global batch per replica (so that
    replicas with different crop counts average to the global-batch mean).
    ``loss_config``: the config's ``loss`` section (`prtr_tf.models.end_to_end.config`).

    Returns a dict of float32 scalars: "loss" = det_loss_weight * detection +
    kpt_loss_weight * keypoint, "loss_det", "loss_kpt_set", "num_crops" (local), and
    the detection terms prefixed "det_". Uses ``tf.numpy_function`` (the matchers):
    call it eagerly or in a ``tf.function`` without ``jit_compile``.
    """
    cfg = model.config
    lc = loss_config
    mask = batch.get("mask")
    levels, det, valid = model.detect(batch["image"], mask, training=training)
    criterion = DetectionCriterion(lc)
    indices = criterion.match(det, batch)
    det_terms = criterion(det, batch, indices=indices, global_norm=True)
    batch_index, query_index, gt_index = sample_matched_queries(
        indices[-1], batch["valid"], cfg.max_train_persons, seed=seed)
    pairs = tf.stack([batch_index, query_index], axis=-1)
    boxes = tf.gather_nd(det["pred_boxes"], pairs)
    kpt = keypoint_outputs(model.crop_keypoints(levels, boxes, batch_index, valid, training))
    gt = tf.stack([batch_index, gt_index], axis=-1)
    target = tf.gather_nd(tf.cast(batch["keypoints"], tf.float32), gt)          # (N, J, 2)
    target_weight = tf.gather_nd(tf.cast(batch["keypoint_weights"], tf.float32), gt)
    num_crops = tf.shape(batch_index)[0]
    # The global normaliser is all-reduced here, outside the cond below: a collective
    # inside a branch that only some replicas take would hang.
    global_crops = global_count(num_crops)

    def keypoint_loss():
        return set_loss(kpt, target, target_weight, eos_coef=lc.kpt_eos_coef,
                                   ce_coef=lc.kpt_ce_loss_coef, kpt_coef=lc.kpt_loss_coef,
                                   cost_class=lc.kpt_cost_class,
                                   cost_coord=lc.kpt_cost_coord,
                                   num_crops=global_crops)["loss"]

    # No matched person on this replica: no crop, no keypoint term (the untaken
    # branch passes no gradient).
    loss_kpt = tf.cond(num_crops > 0, keypoint_loss, lambda: tf.constant(0.0))
    out = {"loss": lc.det_loss_weight * det_terms["loss"] + lc.kpt_loss_weight * loss_kpt,
           "loss_det": det_terms["loss"], "loss_kpt_set": loss_kpt,
           "num_crops": tf.cast(num_crops, tf.float32)}
    out.update({f"det_{k}": v for k, v in det_terms.items() if k != "loss"})
    return out
