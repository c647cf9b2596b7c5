"""COCO box AP (pycocotools) of the DETR person detector, and its detections JSON."""
import contextlib
import io
import sys

from prtr_tf.models.detector.data import build_detection_dataset
from prtr_tf.models.detector.predict import detect_dataset
from prtr_tf.models.detector.records import person_label
from prtr_tf.data.keypoint_sets import category_ids
from prtr_tf.data.splits import split_files
from prtr_tf.data.splits import split_paths
from prtr_tf.evaluation.coco import load_coco, one_class
from prtr_tf.models.detector.records import load_person_boxes

BOX_STATS = ("AP", "AP .5", "AP .75", "AP (S)", "AP (M)", "AP (L)", "AR 1", "AR 10", "AR",
             "AR (S)", "AR (M)", "AR (L)")


def detection_results(model, config, split="val", stream=None):
    """COCO results list {image_id, category_id, bbox [x, y, w, h], score} of the
    person boxes the detector finds on every image of ``split`` (scores >=
    ``config.test.score_thre``): the format of a ``--det_json`` detections file.
    ``category_id`` is the object class's first category (the person: 1)."""

    stream = stream or sys.stdout
    ann, images = split_files(config, split)
    cats = category_ids(config)
    records = load_person_boxes(ann, images, min_keypoints=0, category_ids=cats)
    dataset = build_detection_dataset(records, config, training=False,
                                      batch=config.test.batch_size)
    found = detect_dataset(model, dataset, person_label(config))
    results = [{"image_id": image_id, "category_id": cats[0], "bbox": [float(v) for v in box],
                "score": float(s)}
               for image_id, boxes, scores in found for box, s in zip(boxes, scores)
               if s >= config.test.score_thre]
    print(f"  detected on {len(found)} images: {len(results)} boxes", file=stream)
    return results


def evaluate_detector(model, config, split="val", stream=None, results=None):
    """COCO box AP/AR of the person class on ``split`` (pycocotools, iouType 'bbox');
    ``results``: the `detection_results` of ``model`` when already computed. The
    categories of a custom keypoint set are one class (the first one's id)."""
    from pycocotools.cocoeval import COCOeval

    if results is None:
        results = detection_results(model, config, split, stream)
    if not results:
        return {k: 0.0 for k in BOX_STATS}
    ann, _ = split_paths(config, split)
    cats = category_ids(config)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = load_coco(ann)  # iscrowd, area, num_keypoints: the readers' defaults
        if len(cats) > 1:  # one object class: every instance of the set's categories
            gt, results = one_class(gt, results, cats)
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.params.catIds = [cats[0]]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {k: float(v) for k, v in zip(BOX_STATS, evaluator.stats)}
