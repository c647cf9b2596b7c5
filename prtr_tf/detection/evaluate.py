"""Person detection with DETR: boxes in image pixels, and COCO box AP (pycocotools)."""
import contextlib
import io
import sys

import tensorflow as tf

from prtr_tf.data.pipeline import normalization
from prtr_tf.detection.data import (build_detection_dataset, person_label, resize,
                                    unnormalize_boxes)

BOX_STATS = ("AP", "AP .5", "AP .75", "AP (S)", "AP (M)", "AP (L)", "AR 1", "AR 10", "AR",
             "AR (S)", "AR (M)", "AR (L)")


def person_scores(pred_logits, label):
    """P(person) per query: softmax over all classes (no-object included), DETR's
    PostProcess for a head whose person class is ``label``."""
    return tf.nn.softmax(tf.cast(pred_logits, tf.float32), axis=-1)[..., label]


def detect_dataset(model, dataset, label):
    """Runs over batched eval elements; returns a list of (image_id, boxes xywh px, scores)."""
    @tf.function(reduce_retracing=True)
    def step(images, mask):
        out = model(images, mask=mask, training=False)
        return out["pred_boxes"], person_scores(out["pred_logits"], label)

    found = []
    for batch in dataset:
        boxes, scores = step(batch["image"], batch["mask"])
        for i in range(len(batch["image_id"])):
            px = unnormalize_boxes(boxes[i].numpy(), batch["orig_size"][i].numpy())
            found.append((int(batch["image_id"][i]), px, scores[i].numpy()))
    return found


def detection_results(model, config, split="val", stream=None):
    """COCO results list {image_id, category_id 1, bbox [x, y, w, h], score} of the
    person boxes the detector finds on every image of ``split`` (scores >=
    ``config.test.score_thre``): the format of a ``--det_json`` detections file."""
    from prtr_tf.data.splits import ensure_data
    from prtr_tf.detection.data import load_person_boxes

    stream = stream or sys.stdout
    ann, images = ensure_data(config, split)
    records = load_person_boxes(ann, images, min_keypoints=0)
    dataset = build_detection_dataset(records, config, training=False,
                                      batch=config.test.batch_size)
    found = detect_dataset(model, dataset, person_label(config))
    results = [{"image_id": image_id, "category_id": 1, "bbox": [float(v) for v in box],
                "score": float(s)}
               for image_id, boxes, scores in found for box, s in zip(boxes, scores)
               if s >= config.test.score_thre]
    print(f"  detected on {len(found)} images: {len(results)} boxes", file=stream)
    return results


def evaluate_detector(model, config, split="val", stream=None, results=None):
    """COCO box AP/AR of the person class on ``split`` (pycocotools, iouType 'bbox');
    ``results``: the `detection_results` of ``model`` when already computed."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from prtr_tf.data.splits import split_paths

    if results is None:
        results = detection_results(model, config, split, stream)
    if not results:
        return {k: 0.0 for k in BOX_STATS}
    ann, _ = split_paths(config, split)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann)
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.params.catIds = [1]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {k: float(v) for k, v in zip(BOX_STATS, evaluator.stats)}


class DetrPersonDetector:
    """Whole RGB uint8 image -> (person boxes [x, y, w, h] pixels (N, 4), scores (N,)).

    Preprocessing is the evaluation pipeline's (`prtr_tf.detection.data.resize`:
    shortest side ``config.data.test_size``, longest <= ``config.data.max_size``;
    DETR normalisation); boxes scoring below ``score_threshold`` (default
    ``config.test.score_thre``) are dropped.
    """

    def __init__(self, model, config, score_threshold=None):
        self.model, self.config = model, config
        self.label = person_label(config)
        self.threshold = config.test.score_thre if score_threshold is None else score_threshold
        gain, offset = normalization(config.data.mean, config.data.std)
        test_size, max_size = int(config.data.test_size), int(config.data.max_size)

        @tf.function(reduce_retracing=True)
        def run(image):
            x, _ = resize(tf.cast(image, tf.float32), tf.zeros((0, 4)), test_size, max_size)
            out = self.model((x * gain - offset)[None], training=False)
            return out["pred_boxes"][0], person_scores(out["pred_logits"], self.label)[0]

        self._run = run

    def __call__(self, image):
        boxes, scores = (t.numpy() for t in self._run(tf.constant(image)))
        boxes = unnormalize_boxes(boxes, image.shape[:2])
        keep = (scores >= self.threshold) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        return boxes[keep], scores[keep]
