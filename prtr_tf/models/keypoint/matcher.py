"""Hungarian matcher between keypoint queries and joints (spec §3.1).

Every crop has exactly J targets, one per joint type in fixed order (row j =
joint type j). Visibility is ignored: unlabelled joints are matched too, against
whatever placeholder coordinates they carry. With p = softmax over all J+1
logits (background included), the cost of giving query q to joint j is::

    C[j, q] = cost_coord * (|x_q - x_j| + |y_q - y_j|) - cost_class * p_q(j)

and ``scipy.optimize.linear_sum_assignment`` on the J x Q matrix gives one
distinct query per joint (`prtr_tf.nn.hungarian`, targets first).

The cost is computed in TensorFlow (float32, under ``tf.stop_gradient``); the
assignment runs in NumPy through one ``tf.numpy_function`` call for all layers
and crops. The result has a static shape, so the matcher works inside
``tf.function``, but it **cannot run inside an XLA region** (``jit_compile=True``):
call it outside the compiled function and pass the indices in (see
`prtr_tf.models.keypoint.loss.set_loss`).
"""
import tensorflow as tf

from prtr_tf.nn import hungarian


def matching_cost(pred_logits, pred_coords, target, cost_class=1.0, cost_coord=5.0):
    """The matching cost matrices, joints x queries.

    Params:
        pred_logits: (..., B, Q, J+1) classification logits, background last.
        pred_coords: (..., B, Q, 2) normalised (x, y) predictions.
        target: (B, J, 2) normalised (x, y) joint targets; broadcast over the
            leading dimensions of the predictions (e.g. decoder layers).
        cost_class: weight of the (negative) class probability.
        cost_coord: weight of the L1 distance between coordinates.

    Returns:
        float32 (..., B, J, Q); C[..., b, j, q] is the cost of matching query q
        to joint j of crop b. No gradient flows through it.
    """
    pred_logits = tf.stop_gradient(tf.cast(pred_logits, tf.float32))
    pred_coords = tf.stop_gradient(tf.cast(pred_coords, tf.float32))
    target = tf.stop_gradient(tf.cast(target, tf.float32))
    num_joints = pred_logits.shape[-1] - 1

    prob = tf.nn.softmax(pred_logits, axis=-1)[..., :num_joints]     # (..., B, Q, J)
    class_cost = -tf.linalg.matrix_transpose(prob)                   # (..., B, J, Q)
    diff = pred_coords[..., None, :, :] - target[..., :, None, :]    # (..., B, J, Q, 2)
    coord_cost = tf.reduce_sum(tf.abs(diff), axis=-1)                # (..., B, J, Q)
    return cost_coord * coord_cost + cost_class * class_cost


def hungarian_match_layers(logits, coords, target, cost_class=1.0, cost_coord=5.0):
    """Matches every decoder layer independently, in one numpy_function call.

    Params:
        logits: (L, B, Q, J+1) logits of L decoder layers (L may be 0).
        coords: (L, B, Q, 2) normalised (x, y) predictions.
        target: (B, J, 2) normalised (x, y) targets, the same for every layer.

    Returns:
        int32 (L, B, J): indices[l, b, j] is the query of layer l matched to joint
        j of crop b. Distinct over j for each (l, b). Must be called outside XLA.
    """
    return hungarian.assign(matching_cost(logits, coords, target, cost_class, cost_coord))


def hungarian_match(pred_logits, pred_coords, target, cost_class=1.0, cost_coord=5.0):
    """Matches one decoder layer: (B, Q, J+1), (B, Q, 2), (B, J, 2) -> int32 (B, J).

    indices[b, j] is the query matched to joint j of crop b (visibility ignored).
    Must be called outside XLA (``jit_compile``).
    """
    return hungarian_match_layers(pred_logits[None], pred_coords[None], target,
                                  cost_class, cost_coord)[0]
