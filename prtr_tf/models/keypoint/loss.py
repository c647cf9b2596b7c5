"""Set criterion of the keypoint model (spec §4, official ``SetCriterion``).

For each decoder layer l (final and auxiliary, each with its own matching):

    L_l = ce_coef * L_ce + kpt_coef * L_kpt,        loss = sum_l L_l

* L_ce: class-weighted cross-entropy over all B*Q queries. The query matched to
  joint j gets label j -- also when joint j is unlabelled -- and every other
  query gets the background label J. Class weights are 1 for joints and
  `eos_coef` for background; the reduction is torch's weighted mean
  sum_i w_i nll_i / sum_i w_i, i.e. a denominator of J + eos_coef*(Q-J) per crop.
* L_kpt: L1 between matched queries and targets, weighted by visibility:
  sum_b sum_j w_bj (|dx| + |dy|) / (2B) (torch: mean(|d| * w) over B*J*2, times J).

Both terms are means over the local batch, as in the official code. Under a
distribution strategy, compute the loss of each replica's local batch and divide
it by the number of replicas; with equal local batch sizes this equals the loss
of the global batch exactly. Where the local batch sizes differ (the end-to-end
model's crops), pass ``num_crops``, the global count / number of replicas (see
`prtr_tf.nn.distribute.global_count`): both terms are then local sums
divided by it, whose sum over replicas / replicas is the global-batch mean.

Matching needs NumPy (``tf.numpy_function``) and so cannot run under XLA. A
jit-compiled training step is split in two::

    indices = match_outputs(outputs, target)           # outside jit_compile
    losses = set_loss(outputs, target, target_weight, indices=indices)  # inside

Layer order everywhere: aux layers first, in the order of ``aux_pred_*``, then
the final layer (``indices[-1]`` belongs to ``pred_*``).
"""
import tensorflow as tf

from prtr_tf.models.keypoint.matcher import hungarian_match_layers
from prtr_tf.nn import set_criterion


def stack_layers(outputs):
    """(logits (L, B, Q, J+1), coords (L, B, Q, 2)) of a keypoint model output dict,
    aux layers first, final last (`prtr_tf.nn.set_criterion.stack_layers`)."""
    return set_criterion.stack_layers(outputs, ("logits", "coords"))


def match_outputs(outputs, target, cost_class=1.0, cost_coord=5.0):
    """Matches every decoder layer of `outputs` to `target` (B, J, 2).

    Returns int32 (L, B, J), aux layers first, final layer last. Uses
    ``tf.numpy_function``: call it outside any ``jit_compile`` function.
    """
    logits, coords = stack_layers(outputs)
    return hungarian_match_layers(logits, coords, target, cost_class, cost_coord)


def _weights_2d(target_weight):
    """target_weight as float32 (B, J); accepts (B, J) or (B, J, 1)."""
    target_weight = tf.cast(target_weight, tf.float32)
    if target_weight.shape.rank == 3:
        target_weight = target_weight[..., 0]
    return target_weight


def layer_losses(logits, coords, target, target_weight, indices, eos_coef=0.1,
                 num_crops=None):
    """Per-layer L_ce and L_kpt given the matching (no matching here, XLA-safe).

    Params:
        logits: (L, B, Q, J+1) logits, background last; any float dtype.
        coords: (L, B, Q, 2) normalised (x, y) predictions.
        target: (B, J, 2) normalised (x, y) targets.
        target_weight: (B, J) or (B, J, 1) visibility in {0, 1}.
        indices: int (L, B, J) matched query of each joint, distinct per (l, b).
        eos_coef: class weight of background.
        num_crops: the normaliser in crops (module docstring); None = B.

    Returns:
        (loss_ce, loss_kpt), two float32 (L,) tensors.
    """
    logits = tf.cast(logits, tf.float32)
    coords = tf.cast(coords, tf.float32)
    target = tf.cast(target, tf.float32)
    target_weight = _weights_2d(target_weight)
    indices = tf.cast(indices, tf.int32)
    num_queries = tf.shape(logits)[2]

    # One-hot labels (L, B, Q, J+1): query indices[l, b, j] gets class j, the rest
    # background. Distinct indices give at most one joint per query.
    matched = tf.linalg.matrix_transpose(tf.one_hot(indices, num_queries))   # (L, B, Q, J)
    background = 1.0 - tf.reduce_sum(matched, axis=-1, keepdims=True)
    labels = tf.concat([matched, background], axis=-1)

    nll = -tf.reduce_sum(labels * tf.nn.log_softmax(logits, axis=-1), axis=-1)  # (L, B, Q)
    weight = 1.0 + (eos_coef - 1.0) * background[..., 0]  # class weight of each label
    loss_ce = tf.reduce_sum(weight * nll, axis=[1, 2]) / tf.reduce_sum(weight, axis=[1, 2])

    matched_coords = tf.gather(coords, indices, axis=2, batch_dims=2)          # (L, B, J, 2)
    l1 = tf.reduce_sum(tf.abs(matched_coords - target), axis=-1)               # (L, B, J)
    batch_size = tf.cast(tf.shape(target)[0], tf.float32)
    loss_kpt = tf.reduce_sum(l1 * target_weight, axis=[1, 2]) / (2.0 * batch_size)
    if num_crops is not None:
        # Every crop has the same class-weight total (J matched + Q - J background),
        # so rescaling the local means by B / num_crops gives sums / num_crops.
        scale = batch_size / tf.maximum(tf.cast(num_crops, tf.float32), 1.0)
        loss_ce, loss_kpt = loss_ce * scale, loss_kpt * scale
    return loss_ce, loss_kpt


def set_loss(outputs, target, target_weight, indices=None, num_joints=None, eos_coef=0.1,
             ce_coef=1.0, kpt_coef=5.0, cost_class=1.0, cost_coord=5.0, num_crops=None):
    """The PRTR training loss of one (local) batch.

    Params:
        outputs: model output dict, see `stack_layers`.
        target: (B, J, 2) float targets normalised by the crop size.
        target_weight: (B, J) or (B, J, 1) visibility in {0, 1}.
        indices: optional int (L, B, J) matching from `match_outputs`. When given
            no matching is done, so the call is XLA-safe; when None the layers are
            matched here with (cost_class, cost_coord), via ``tf.numpy_function``.
        num_joints: J; inferred from the logits when None (checked if given).
        eos_coef, ce_coef, kpt_coef: background class weight and term weights.
        num_crops: the normaliser under uneven local batches (module docstring).

    Returns:
        dict of float32 scalars: "loss" (sum over all layers of
        ce_coef * L_ce + kpt_coef * L_kpt), "loss_ce" and "loss_kpt" of the final
        layer, and "loss_ce_{i}", "loss_kpt_{i}" of aux layer i = 0..L-2.
    """
    logits, coords = stack_layers(outputs)
    inferred = logits.shape[-1] - 1
    if num_joints is not None and inferred is not None and num_joints != inferred:
        raise ValueError(f"num_joints={num_joints} but the logits have {inferred} + 1 classes")
    if indices is None:
        indices = hungarian_match_layers(logits, coords, target, cost_class, cost_coord)

    loss_ce, loss_kpt = layer_losses(logits, coords, target, target_weight, indices, eos_coef,
                                     num_crops)
    return set_criterion.loss_dict({"ce": (ce_coef, loss_ce), "kpt": (kpt_coef, loss_kpt)})
