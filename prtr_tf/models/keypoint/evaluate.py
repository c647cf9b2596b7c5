"""Validation of a keypoint model on a configured split: COCO OKS AP or MPII PCKh.

Used by the trainer after every epoch and by ``eval.py``. Boxes are the ground
truth (``use_gt_bbox``) or a COCO detections JSON; predictions go through the
readout, the optional flip test, the inverse affine, then (COCO) rescoring and
OKS-NMS before pycocotools, or (MPII) PCKh@0.5.
"""
import sys
import time

import numpy as np

from prtr_tf.data import keypoint_sets
from prtr_tf.models.keypoint.data import build_eval_dataset
from prtr_tf.data.skips import SkipCounter
from prtr_tf.data.splits import load_records, split_paths
from prtr_tf.models.keypoint.predict import predict_dataset
from prtr_tf.evaluation import coco
from prtr_tf.evaluation import mpii
from prtr_tf.evaluation import pck


def predict_split(model, config, split="val", flip_test=None, det_json=None, stream=None):
    """Predictions (see `predict_dataset`) for every record of ``split``, and the records."""
    stream = stream or sys.stdout
    flip_test = config.test.flip_test if flip_test is None else flip_test
    skips = SkipCounter()
    records = load_records(config, split, det_json=det_json, skip_counter=skips)
    dataset = build_eval_dataset(records, config, batch=config.test.batch_size,
                                 skip_counter=skips)
    flip_pairs = keypoint_sets.flip_pairs_of(config, flip_test)
    if flip_test and flip_pairs is None:
        print("  flip test off: the keypoint set has no left/right flip pairs", file=stream)
        flip_test = False
    done, t0, tty = [0], time.time(), stream.isatty()

    def progress(n):
        done[0] += n
        if tty:
            rate = done[0] / max(time.time() - t0, 1e-9)
            print(f"\r  predicting {done[0]}/{len(records)} crops ({rate:.1f}/s)", end="",
                  file=stream, flush=True)

    preds = predict_dataset(model, dataset, tuple(config.model.image_size), flip_pairs,
                            config.data.pixel_std, progress=progress)
    rate = done[0] / max(time.time() - t0, 1e-9)
    print(f"{chr(13) if tty else ''}  predicted {done[0]} crops of {len(records)} "
          f"({rate:.1f}/s{', flip test' if flip_test else ''})", file=stream)
    if skips.count:
        print(f"  {skips}", file=stream)
    return preds, records


def coco_metrics(preds, config, split="val", results_path=None, records=None):
    sigmas = keypoint_sets.oks_sigmas(config)
    results = coco.results_from_predictions(
        preds["keypoints"], preds["center"], preds["scale"], preds["box_score"],
        preds["image_id"], in_vis_thre=config.test.in_vis_thre, oks_thre=config.test.oks_thre,
        pixel_std=config.data.pixel_std, category_id=row_categories(preds, records),
        sigmas=sigmas)
    if results_path:
        coco.write_results(results, results_path)
    ann, _ = split_paths(config, split)
    # Several categories sharing the set (AP-10K's species) are one object class.
    return dict(coco.evaluate_coco(ann, results, sigmas=sigmas,
                                   category_ids=keypoint_sets.category_ids(config))), results


def row_categories(preds, records):
    """The category id of every prediction row (its record's; 1 when records have none)."""
    if records is None:
        return 1
    return np.array([records[i].get("category_id", 1) for i in preds["index"]], np.int64)


def mpii_metrics(preds, records, gt_mat=None):
    """PCKh@0.5. With ``gt_mat`` (the official gt_valid.mat: true head boxes) rows are
    matched to it by annotation index; otherwise the head size is approximated from
    the annotated head_top / upper_neck joints (`prtr_tf.evaluation.mpii`)."""
    rows = preds["index"]
    if gt_mat:
        gt = mpii.load_gt_mat(gt_mat)
        ann_ids = np.array([records[i]["ann_id"] for i in rows])
        if len(ann_ids) != len(gt["gt_joints"]) or np.any(np.sort(ann_ids) != np.arange(
                len(gt["gt_joints"]))):
            raise ValueError(f"{gt_mat} has {len(gt['gt_joints'])} persons but predictions "
                             f"cover {len(ann_ids)} annotations: evaluate the full split "
                             "that the .mat belongs to (and fix unreadable images)")
        ordered = np.zeros((len(ann_ids), preds["keypoints"].shape[1], 2))
        ordered[ann_ids] = preds["keypoints"][:, :, :2]
        return dict(mpii.pckh(ordered, gt["gt_joints"], gt["joints_vis"], gt["head_sizes"]))
    joints = np.stack([records[i]["joints"] for i in rows])
    gt = joints[:, :, :2] + 1.0  # back to the annotation's 1-based coordinates
    vis = joints[:, :, 2]
    sizes = mpii.head_size_from_annotation(gt, vis)
    return dict(mpii.pckh(preds["keypoints"][:, :, :2], gt, vis, sizes))


def validate(model, config, split="val", flip_test=None, det_json=None, results_path=None,
             stream=None, gt_mat=None):
    """Metrics dict: COCO stats ('AP', 'AP .5', ...) or MPII PCKh ('Mean' is also 'PCKh')."""
    preds, records = predict_split(model, config, split, flip_test, det_json, stream)
    if config.data.dataset == "mpii":
        scores = mpii_metrics(preds, records, gt_mat)
        scores["PCKh"] = scores["Mean"]
        return scores
    scores, _ = coco_metrics(preds, config, split, results_path, records)
    if config.data.dataset == keypoint_sets.CUSTOM and det_json is None:
        scores.update(distance_metrics(preds, records))
    return scores


def distance_metrics(preds, records):
    """PCK@0.2 (of the box size), AUC and EPE (`prtr_tf.evaluation.pck`) of predictions
    on ground-truth boxes."""
    rows = preds["index"]
    if not len(rows):
        return {"PCK@0.2": 0.0, "AUC": 0.0, "EPE": 0.0}
    joints = np.stack([records[i]["joints"] for i in rows])
    boxes = np.stack([records[i]["bbox"] for i in rows])
    return pck.distance_metrics(preds["keypoints"][:, :, :2], joints[:, :, :2],
                                joints[:, :, 2] > 0, boxes)
