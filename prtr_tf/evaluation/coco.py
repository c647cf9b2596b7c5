"""COCO keypoint testing (spec §5.7): rescoring, per-image OKS-NMS, results JSON, COCOeval.

Follows HRNet/PRTR ``dataset/coco.py::evaluate``: each crop's pose is rescored with
the mean of its joint scores above ``in_vis_thre`` times its box score, poses are
grouped by image and greedily OKS-NMSed at ``oks_thre``, and the kept poses are
written as a COCO results list scored by pycocotools ``COCOeval`` (iouType 'keypoints').
"""
import collections
import contextlib
import io
import json
import os
import warnings

import numpy as np
import tensorflow as tf

from prtr_tf.data.coco import with_annotation_defaults
from prtr_tf.data.jsonfile import read_json
from prtr_tf.evaluation.nms import oks_nms
from prtr_tf.files import atomic

STATS_NAMES = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)",
               "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")


def rescore(keypoints, box_score, in_vis_thre=0.2):
    """Person scores (N,): mean of the joint scores > ``in_vis_thre`` (0 if none) x box score.

    Args:
      keypoints: (N, J, 3) [x, y, joint score].
      box_score: (N,) detection (or GT: 1) box scores.
    """
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.ndim != 3 or keypoints.shape[-1] != 3:
        raise ValueError(f"keypoints must be (N, J, 3), got shape {keypoints.shape}")
    scores = keypoints[..., 2]
    valid = scores > in_vis_thre
    count = valid.sum(axis=1)
    kpt_score = np.where(count > 0, np.where(valid, scores, 0.0).sum(1) / np.maximum(count, 1),
                         0.0)
    return kpt_score * np.asarray(box_score, np.float64).reshape(-1)


def select_poses(keypoints, center, scale, box_score, image_id, in_vis_thre=0.2,
                 oks_thre=0.9, pixel_std=200.0, sigmas=None):
    """Rescoring and per-image OKS-NMS (spec §5.7).

    Args:
      keypoints: (N, J, 3) [x, y, joint score] in original-image pixels.
      center, scale: (N, 2) crop centre and scale (the NMS area is the padded box
        area (pixel_std s_x)(pixel_std s_y)).
      box_score: (N,) box scores; image_id: (N,) image ids.
      sigmas: (J,) OKS sigmas of the keypoint set (None: COCO's).

    Returns:
      (kept row indices, images in order of first appearance and within an image
      best first; the rescored person scores (N,)).
    """
    keypoints = np.asarray(keypoints, np.float64)
    n = len(keypoints)
    if n == 0:
        return [], np.zeros((0,))
    scale = np.asarray(scale, np.float64).reshape(n, 2)
    box_score = np.asarray(box_score, np.float64).reshape(n)
    image_id = np.asarray(image_id).reshape(n)
    scores = rescore(keypoints, box_score, in_vis_thre)
    areas = np.prod(scale * pixel_std, axis=1)
    per_image = collections.defaultdict(list)
    for i in range(n):
        per_image[int(image_id[i])].append(i)
    kept = []
    for idx in per_image.values():
        db = [{"keypoints": keypoints[i], "score": scores[i], "area": areas[i]} for i in idx]
        kept.extend(idx[k] for k in oks_nms(db, oks_thre, sigmas=sigmas))
    return kept, scores


def results_from_predictions(keypoints, center, scale, box_score, image_id, in_vis_thre=0.2,
                             oks_thre=0.9, pixel_std=200.0, category_id=1, sigmas=None):
    """Per-crop predictions in image pixels -> COCO keypoint results list.

    Arguments as `select_poses`; ``category_id``: one id or one per row (kept in the
    results). Returns a list of {image_id, category_id,
    keypoints [x, y, s] * J, score}, images in order of first appearance and,
    within an image, the kept poses best first.
    """
    keypoints = np.asarray(keypoints, np.float64)
    image_id = np.asarray(image_id).reshape(len(keypoints))
    kept, scores = select_poses(keypoints, center, scale, box_score, image_id, in_vis_thre,
                                oks_thre, pixel_std, sigmas)
    category_id = np.broadcast_to(np.asarray(category_id), (len(keypoints),))
    return [{"image_id": int(image_id[i]), "category_id": int(category_id[i]),
             "keypoints": [float(v) for v in keypoints[i].reshape(-1)],
             "score": float(scores[i])} for i in kept]


def write_results(results, path):
    """Writes a results list as JSON, atomically (directories created); returns ``path``."""
    atomic.write_text(path, json.dumps(results))
    return path


@contextlib.contextmanager
def _quiet(verbose):
    if verbose:
        yield
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            yield


def load_coco(gt, verbose=False):
    """A pycocotools COCO object from a COCO object or an annotation JSON path; the
    fields its annotations lack get the readers' defaults
    (`prtr_tf.data.coco.with_annotation_defaults`: iscrowd 0, area from the box,
    num_keypoints from the visibility flags)."""
    from pycocotools.coco import COCO

    if isinstance(gt, COCO):
        return gt
    if not os.path.exists(gt):
        raise FileNotFoundError(f"COCO annotation file {os.fspath(gt)!r} does not exist")
    # pycocotools needs 'iscrowd', 'area' and 'num_keypoints': a file without them
    # (CrowdPose has no 'area', converters often write none) gets the readers' defaults.
    data = with_annotation_defaults(read_json(gt, "COCO annotation file"), os.fspath(gt))
    with _quiet(verbose):
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


def _load_results(results):
    if isinstance(results, (str, os.PathLike)):
        loaded = read_json(results, "COCO results file")
        if not isinstance(loaded, list):
            raise ValueError(f"{os.fspath(results)}: a COCO results file holds a JSON list, "
                             f"got {type(loaded).__name__}")
        return loaded, os.fspath(results)
    return list(results), "<results>"


def _check_results(coco_gt, results, name):
    cats = coco_gt.loadCats(coco_gt.getCatIds())
    num = {c["id"]: len(c.get("keypoints", [])) for c in cats}
    images = set(coco_gt.getImgIds())
    for i, r in enumerate(results):
        for key in ("image_id", "category_id", "keypoints", "score"):
            if key not in r:
                raise ValueError(f"{name}: result #{i} has no field {key!r}")
        if r["image_id"] not in images:
            raise ValueError(f"{name}: result #{i} has image_id {r['image_id']!r}, which is "
                             "not in the ground-truth annotations")
        want = 3 * num.get(r["category_id"], 0)
        if len(r["keypoints"]) != want:
            raise ValueError(f"{name}: result #{i} (image_id {r['image_id']}) has "
                             f"{len(r['keypoints'])} keypoint values; category "
                             f"{r['category_id']} needs {want}")


def one_class(coco_gt, results, category_ids, verbose=False):
    """(ground truth, results) with the instances of ``category_ids`` as the first of
    them: one object class (AP-10K's species; pycocotools' ``useCats=0`` finds no
    keypoint matches: its computeOks ignores it). Other categories are left as they
    are. Shared by the keypoint and the box evaluation."""
    from pycocotools.coco import COCO

    cats, first = set(category_ids), category_ids[0]
    merged_ann = [dict(a, category_id=first) if a.get("category_id") in cats else a
                  for a in coco_gt.dataset.get("annotations", [])]
    with _quiet(verbose):
        merged = COCO()
        merged.dataset = dict(coco_gt.dataset, annotations=merged_ann)
        merged.createIndex()
    return merged, [dict(r, category_id=first) if r["category_id"] in cats else r
                    for r in results]


def evaluate_coco(gt, results, verbose=False, sigmas=None, category_ids=()):
    """COCOeval (iouType 'keypoints') of a results list or JSON file.

    Args:
      gt: annotation JSON path or a pycocotools COCO object.
      results: results list (as `results_from_predictions`) or a path to its JSON.
      verbose: show pycocotools' prints (loading, summary table).
      sigmas: (J,) OKS sigmas of the keypoint set (``kpt_oks_sigmas``; None: COCO's).
      category_ids: the categories of one object class (AP-10K's species sharing one
        keypoint set: `one_class`) when more than one; otherwise results match ground
        truth of their own category only.

    Returns:
      OrderedDict of the 10 stats in ``STATS_NAMES`` order (floats, fractions). Empty
      results give zeros and a warning (pycocotools cannot load an empty list).
    """
    from pycocotools.cocoeval import COCOeval

    coco_gt = load_coco(gt, verbose)
    results, name = _load_results(results)
    if not results:
        warnings.warn(f"{name}: no keypoint results to evaluate; reporting zeros", stacklevel=2)
        return collections.OrderedDict((k, 0.0) for k in STATS_NAMES)
    _check_results(coco_gt, results, name)
    if len(category_ids) > 1:
        coco_gt, results = one_class(coco_gt, results, tuple(category_ids), verbose)
    with _quiet(verbose):
        # loadRes adds fields (area, bbox, id) to each result: give it copies.
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        coco_eval = COCOeval(coco_gt, coco_dt, "keypoints")
        if sigmas is not None:
            coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return collections.OrderedDict((k, float(v)) for k, v in zip(STATS_NAMES, coco_eval.stats))


def format_table(stats, name="PRTR", percent=True):
    """Markdown table of COCO stats, paper-style (x100, one decimal when ``percent``)."""
    keys = list(stats)
    fmt = "{:.1f}" if percent else "{:.3f}"
    # pycocotools reports -1 where a category has no ground truth (e.g. no large persons).
    cells = ["-" if stats[k] < 0 else fmt.format(100.0 * stats[k] if percent else stats[k])
             for k in keys]
    return "\n".join([
        "| Model | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
        f"| {name} | " + " | ".join(cells) + " |",
    ])


def rescore_tf(keypoint_scores, box_scores, in_vis_thre=0.2):
    """`prtr_tf.evaluation.coco.rescore` in-graph: (N, J), (N,) -> (N,)."""
    valid = keypoint_scores > in_vis_thre
    count = tf.reduce_sum(tf.cast(valid, keypoint_scores.dtype), axis=1)
    total = tf.reduce_sum(tf.where(valid, keypoint_scores, tf.zeros_like(keypoint_scores)), 1)
    mean = tf.where(count > 0, total / tf.maximum(count, 1.0), tf.zeros_like(total))
    return mean * tf.cast(box_scores, keypoint_scores.dtype)
