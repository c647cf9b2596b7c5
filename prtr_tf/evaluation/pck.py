"""PCK, AUC and EPE: the distance metrics of hand and custom keypoint sets, with the
conventions of mmpose's top-down hand datasets (OneHand10K, FreiHAND, Panoptic):

* **PCK@0.2**: a joint is correct when its distance to the ground truth, divided by
  the longer side of the ground-truth box (on both axes), is below 0.2; the accuracy
  of each joint over the persons where it is labelled, averaged over the joints that
  are labelled somewhere (mmpose ``keypoint_pck_accuracy`` with ``bbox`` normalisation);
* **AUC**: the mean of that accuracy at the 20 thresholds 0, 0.05, ..., 0.95 with a
  fixed normaliser of 30 pixels (``keypoint_auc(..., normalize=30, num_step=20)``);
  the threshold 0 counts nothing (``distance < 0``), so a perfect model scores 0.95;
* **EPE**: the mean end-point error in pixels over every labelled joint
  (``keypoint_epe``).

Arrays: predictions and ground truth (N, J, 2) pixels, ``mask`` (N, J) labelled joints.
"""
import numpy as np

PCK_THRESHOLD = 0.2
AUC_NORMALIZER = 30.0  # pixels
AUC_STEPS = 20


def distances(pred, gt, mask, normalize):
    """(N, J) normalised distances, -1 where the joint is not labelled (or its person's
    normaliser is 0). ``normalize``: (N, 2) per person and axis."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    mask = np.asarray(mask, bool).copy()
    normalize = np.asarray(normalize, np.float64).reshape(-1, 2).copy()
    mask[np.where((normalize == 0).sum(1))[0], :] = False
    normalize[normalize <= 0] = 1e6
    out = np.full(mask.shape, -1.0)
    out[mask] = np.linalg.norm(((pred - gt) / normalize[:, None, :])[mask], axis=-1)
    return out


def _joint_accuracy(dist, thr):
    """Per joint: the fraction of its labelled distances below ``thr`` (-1: none)."""
    valid = dist != -1
    count = valid.sum(0)
    hits = np.where(valid, dist < thr, False).sum(0)
    return np.where(count > 0, hits / np.maximum(count, 1), -1.0)


def pck(pred, gt, mask, normalize, thr=PCK_THRESHOLD):
    """(per-joint accuracy (J,) with -1 for unlabelled joints, their mean)."""
    acc = _joint_accuracy(distances(pred, gt, mask, normalize), thr)
    valid = acc[acc >= 0]
    return acc, float(valid.mean()) if len(valid) else 0.0


def box_normalizer(boxes):
    """(N, 2): the longer side of each [x, y, w, h] box, on both axes."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = boxes[:, 2:].max(axis=1)
    return np.stack([side, side], axis=1)


def auc(pred, gt, mask, normalizer=AUC_NORMALIZER, num_steps=AUC_STEPS):
    """The mean PCK over thresholds ``i / num_steps`` (i < num_steps) of distances
    divided by ``normalizer`` pixels."""
    norm = np.full((np.asarray(mask).shape[0], 2), float(normalizer))
    return float(np.mean([pck(pred, gt, mask, norm, i / num_steps)[1]
                          for i in range(num_steps)]))


def epe(pred, gt, mask):
    """The mean end-point error (pixels) over the labelled joints (0 when none)."""
    dist = distances(pred, gt, mask, np.ones((np.asarray(mask).shape[0], 2)))
    valid = dist[dist != -1]
    return float(valid.sum() / max(1, len(valid)))


def distance_metrics(pred, gt, mask, boxes):
    """{'PCK@0.2', 'AUC', 'EPE'}: PCK and AUC as fractions, EPE in pixels."""
    return {"PCK@0.2": pck(pred, gt, mask, box_normalizer(boxes))[1],
            "AUC": auc(pred, gt, mask), "EPE": epe(pred, gt, mask)}


def format_table(scores, name="PRTR"):
    """Markdown table: PCK@0.2 and AUC in percent, EPE in pixels."""
    return "\n".join([
        "| Model | PCK@0.2 | AUC | EPE (px) |", "|---|---|---|---|",
        f"| {name} | {100 * scores['PCK@0.2']:.1f} | {100 * scores['AUC']:.1f} | "
        f"{scores['EPE']:.2f} |"])
