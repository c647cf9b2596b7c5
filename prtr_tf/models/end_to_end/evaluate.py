"""COCO keypoint AP of the end-to-end PRTR with the persons it detects itself: each pose
rescored with the mean of its joint scores above ``test.in_vis_thre`` times its person
probability, OKS-NMS per image at ``test.oks_thre`` (area: the crop's, ``model.enlarge``
x the box in each side), then pycocotools (spec §5.7). No flip test."""
from prtr_tf.models.end_to_end.predict import predict_split
from prtr_tf.data import keypoint_sets
from prtr_tf.data.splits import split_paths
from prtr_tf.evaluation import coco
from prtr_tf.evaluation.coco import results_from_predictions


def results(preds, config, pixel_std=200.0):
    """Predictions -> COCO keypoint results list (rescoring and OKS-NMS, module
    docstring)."""
    boxes = preds["boxes"]
    center = boxes[:, :2] + boxes[:, 2:] / 2
    scale = boxes[:, 2:] * float(config.model.enlarge) / pixel_std  # the crop's extent
    return results_from_predictions(preds["keypoints"], center, scale, preds["box_score"],
                                    preds["image_id"], in_vis_thre=config.test.in_vis_thre,
                                    oks_thre=config.test.oks_thre, pixel_std=pixel_std,
                                    category_id=keypoint_sets.category_ids(config)[0],
                                    sigmas=keypoint_sets.oks_sigmas(config))


def evaluate(model, config, split="val", results_path=None, stream=None):
    """COCO keypoint AP/AR (pycocotools) of the end-to-end model on ``split``; with
    ``results_path`` the results JSON is written there."""

    found = results(predict_split(model, config, split, stream), config)
    if results_path:
        coco.write_results(found, results_path)
    ann, _ = split_paths(config, split)
    return dict(coco.evaluate_coco(ann, found, sigmas=keypoint_sets.oks_sigmas(config),
                                   category_ids=keypoint_sets.category_ids(config)))
