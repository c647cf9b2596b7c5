"""Evaluation: COCO keypoint AP (rescoring, OKS-NMS, COCOeval) and MPII PCKh (spec §5.7)."""
from prtr_tf.evaluation.coco import (STATS_NAMES, evaluate_coco, rescore, results_from_predictions, write_results)
from prtr_tf.evaluation.mpii import evaluate_mpii, load_gt_mat, pckh
from prtr_tf.datasets import COCO_SIGMAS
from prtr_tf.evaluation.nms import oks_iou, oks_nms

__all__ = ["STATS_NAMES", "evaluate_coco", "rescore", "results_from_predictions",
           "write_results", "evaluate_mpii", "load_gt_mat", "pckh", "COCO_SIGMAS", "oks_iou",
           "oks_nms"]
