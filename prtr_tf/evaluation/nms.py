"""Greedy OKS-NMS over person poses, as HRNet's ``lib/nms/nms.py`` (spec §5.7).

A pose is a (J, 3) array of [x, y, joint score]; its area is the padded box area
(200 s_x)(200 s_y). OKS between two poses uses the COCO per-joint sigmas.
"""
import numpy as np
import tensorflow as tf

from prtr_tf.data.keypoint_sets import COCO_SIGMAS

def _sigmas(sigmas, num_joints):
    sigmas = COCO_SIGMAS if sigmas is None else np.asarray(sigmas, np.float64)
    if sigmas.shape != (num_joints,):
        raise ValueError(f"OKS sigmas have shape {sigmas.shape}, but poses have {num_joints} "
                         "joints; pass sigmas= for non-COCO joint sets")
    return sigmas


def oks_iou(g, d, a_g, a_d, sigmas=None, in_vis_thre=None):
    """OKS between one pose ``g`` and each of the poses ``d``.

    Args:
      g: (J, 3) or flat (3J,) pose [x, y, score].
      d: (M, J, 3) or (M, 3J) poses.
      a_g: area of ``g``; a_d: (M,) areas of ``d``.
      sigmas: (J,) per-joint sigmas; None = COCO's.
      in_vis_thre: None (what the COCO test uses) or a score threshold. As in HRNet,
        where ``list(vg > t) and list(vd > t)`` evaluates to the second list, only the
        joints of ``d`` scoring above it count; a pose with none gets OKS 0.

    Returns:
      (M,) float64 OKS values.
    """
    g = np.asarray(g, np.float64).reshape(-1, 3)
    d = np.asarray(d, np.float64).reshape(-1, g.shape[0], 3)
    a_d = np.asarray(a_d, np.float64).reshape(-1)
    variances = (_sigmas(sigmas, g.shape[0]) * 2) ** 2
    sq = ((d[..., :2] - g[None, :, :2]) ** 2).sum(-1)  # (M, J)
    e = sq / variances / ((a_g + a_d[:, None]) / 2 + np.spacing(1)) / 2
    if in_vis_thre is None:
        return np.exp(-e).mean(axis=1) if e.shape[1] else np.zeros(len(d))
    mask = d[..., 2] > in_vis_thre
    count = mask.sum(axis=1)
    total = np.where(mask, np.exp(-e), 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def oks_nms(kpts_db, thresh=0.9, sigmas=None, in_vis_thre=None):
    """Greedy OKS-NMS: keep the best pose, drop the others with OKS > ``thresh``, repeat.

    Args:
      kpts_db: list of dicts with 'keypoints' (J, 3), 'score' and 'area'.
      thresh: OKS above which a lower-scored pose is suppressed (spec: 0.9).

    Returns:
      Indices into ``kpts_db`` of the kept poses, best score first.
    """
    if len(kpts_db) == 0:
        return []
    scores = np.array([p["score"] for p in kpts_db], np.float64)
    kpts = np.stack([np.asarray(p["keypoints"], np.float64).reshape(-1, 3) for p in kpts_db])
    areas = np.array([p["area"] for p in kpts_db], np.float64)
    order = scores.argsort()[::-1]  # HRNet's (unstable) order, ties included
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, in_vis_thre)
        order = order[np.where(ovr <= thresh)[0] + 1]
    return keep


def oks_iou_matrix_tf(keypoints, areas, sigmas):
    """OKS between all pairs: keypoints (N, J, 2), areas (N,) -> (N, N), as
    `prtr_tf.evaluation.nms.oks_iou` with ``in_vis_thre=None``."""
    dtype = keypoints.dtype
    variances = tf.constant((np.asarray(sigmas, np.float64) * 2) ** 2, dtype)
    sq = tf.reduce_sum(tf.square(keypoints[None, :, :, :2] - keypoints[:, None, :, :2]),
                       axis=-1)                                              # (g, d, J)
    denom = (areas[:, None] + areas[None, :]) / 2.0 + tf.constant(np.spacing(1), dtype)
    e = sq / variances / denom[..., None] / 2.0
    return tf.reduce_mean(tf.exp(-e), axis=-1)


def oks_nms_tf(keypoints, scores, areas, thresh=0.9, sigmas=None):
    """Greedy OKS-NMS in-graph (`prtr_tf.evaluation.nms.oks_nms` with in_vis_thre None).

    Args:
      keypoints: (N, J, 2) or (N, J, 3) poses (only x, y are used); N may be 0.
      scores: (N,) person scores; areas: (N,) the poses' areas.
      thresh: OKS above which a lower-scored pose is suppressed.
      sigmas: (J,) per-joint sigmas; None = COCO's (J must then be 17).

    Returns:
      int32 (K,) indices of the kept poses, best score first.
    """
    keypoints = tf.convert_to_tensor(keypoints)
    num_joints = keypoints.shape[1]
    sigmas = COCO_SIGMAS if sigmas is None else np.asarray(sigmas, np.float64)
    if sigmas.shape != (num_joints,):
        raise ValueError(f"OKS sigmas have shape {sigmas.shape}, but poses have {num_joints} "
                         "joints; pass sigmas= for non-COCO joint sets")
    scores = tf.convert_to_tensor(scores)
    areas = tf.cast(areas, keypoints.dtype)
    n = tf.shape(scores)[0]
    # HRNet's order is scores.argsort()[::-1]: a stable ascending sort, reversed.
    order = tf.reverse(tf.argsort(scores, stable=True), axis=[0])
    kpts = tf.gather(keypoints[..., :2], order)
    oks = oks_iou_matrix_tf(kpts, tf.gather(areas, order), sigmas)      # sorted (N, N)
    positions = tf.range(n)

    def body(i, alive):
        # Pose i (in score order) survives if nothing before it suppressed it; then it
        # removes every later pose whose OKS with it is not <= thresh (NaN included).
        is_alive = tf.gather(alive, i)
        drop = tf.logical_not(tf.gather(oks, i) <= thresh) & (positions > i) & is_alive
        return i + 1, alive & tf.logical_not(drop)

    _, alive = tf.while_loop(lambda i, alive: i < n, body,
                             (tf.constant(0), tf.ones_like(positions, tf.bool)))
    return tf.boolean_mask(order, alive)
