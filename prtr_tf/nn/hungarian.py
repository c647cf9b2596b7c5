"""The Hungarian scaffold of both training matchers (keypoints and person boxes).

Each matcher computes its cost matrices in TensorFlow (float32, no gradient) and
hands them to `assign`, which solves every matrix of the batch (and of every decoder
layer) with ``scipy.optimize.linear_sum_assignment`` in ONE ``tf.numpy_function``
call. Shapes are static, so it works inside ``tf.function`` (also with an unknown
batch size), but **not inside an XLA region** (``jit_compile=True``): match outside
the compiled step and pass the indices to the loss.

Two orientations, so that ties break as in each reference implementation:

* targets first (``targets_last=False``): cost (..., T, Q), scipy sees T x Q (the
  official keypoint matcher: joints x queries; needs T <= Q);
* targets last (``targets_last=True``): cost (..., B, Q, T), scipy sees Q x n_b on the
  valid targets of image b (DETR's call on its split cost).

Result: int32 (..., T), the query matched to each target, -1 for targets that are
invalid (``valid`` <= 0.5) or unmatched (more targets than queries).
"""
import numpy as np
import tensorflow as tf
from scipy.optimize import linear_sum_assignment

# Non-finite costs (a diverged model) would make scipy raise; they are replaced by
# this finite value so that the matcher still returns a valid assignment.
BIG_COST = 1e6


def solve(cost, valid=None, targets_last=False):
    """NumPy: solves every assignment problem of ``cost`` (see the module docstring).

    Params:
        cost: (..., T, Q) targets x queries, or (..., B, Q, T) with ``targets_last``.
        valid: optional (B, T) mask of the real targets (> 0.5), B being the last
            leading dimension of ``cost``; None: every target is real.
        targets_last: the orientation (module docstring).

    Returns:
        int32 (..., T) [(..., B, T) with ``targets_last``]: matched query per target,
        -1 where invalid or unmatched.
    """
    cost = np.asarray(cost, dtype=np.float64)
    num_queries, num_targets = cost.shape[-2:] if targets_last else cost.shape[-1:-3:-1]
    if valid is None and not targets_last and num_targets > num_queries:
        raise ValueError(f"need at least as many queries as targets, got Q={num_queries} "
                         f"< T={num_targets}")
    lead = cost.shape[:-2]
    flat = np.nan_to_num(cost.reshape((-1,) + cost.shape[-2:]),
                         nan=BIG_COST, posinf=BIG_COST, neginf=-BIG_COST)
    slots = None
    if valid is not None:
        valid = np.asarray(valid) > 0.5
        if not lead or valid.shape != (lead[-1], num_targets):
            raise ValueError(f"valid has shape {valid.shape}, expected "
                             f"{(lead[-1] if lead else None, num_targets)}")
        slots = [np.flatnonzero(v) for v in valid]
    out = np.full((flat.shape[0], num_targets), -1, dtype=np.int32)
    everything = np.arange(num_targets)
    for n, c in enumerate(flat):
        real = everything if slots is None else slots[n % len(slots)]
        if not len(real):
            continue
        if targets_last:
            rows, cols = linear_sum_assignment(c[:, real])
            out[n, real[cols]] = rows
        else:
            rows, cols = linear_sum_assignment(c[real])
            out[n, real[rows]] = cols
    return out.reshape(lead + (num_targets,))


def assign(cost, valid=None, targets_last=False, name="hungarian_assignment"):
    """`solve` on a cost tensor in one ``tf.numpy_function``; int32 with the static
    shape ``cost.shape[:-2] + [T]``. Not usable inside ``jit_compile``."""
    if valid is None:
        indices = tf.numpy_function(lambda c: solve(c, None, targets_last), [cost],
                                    tf.int32, stateful=False, name=name)
    else:
        indices = tf.numpy_function(lambda c, v: solve(c, v, targets_last),
                                    [cost, tf.cast(valid, tf.float32)], tf.int32,
                                    stateful=False, name=name)
    targets = cost.shape[-1:] if targets_last else cost.shape[-2:-1]
    indices.set_shape(cost.shape[:-2].concatenate(targets))
    return indices
