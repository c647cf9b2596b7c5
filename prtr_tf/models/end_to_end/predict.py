"""Poses from the end-to-end PRTR: forward, readout per person, COCO evaluation.

`poses` is the in-graph part (also what the exported SavedModel runs): the model
selects the person queries (probability >= ``model.person_threshold``, at most
``model.max_persons`` per image), crops them, and the keypoint transformer's final
layer is read out per person (`prtr_tf.models.keypoint.readout.readout`: the two-stage convention).
`predict_split` runs it over a configured split and `evaluate` scores it like the
two-stage evaluation (spec §5.7): each pose is rescored with the mean of its joint
scores above ``test.in_vis_thre`` times its person probability, OKS-NMS per image at
``test.oks_thre`` (area: the crop's, 1.25 x the box in each side, as the two-stage
crop's padded box), then pycocotools OKS AP. No flip test (the paper reports none
for this variant).

Coordinates: the model's keypoints and boxes are normalised by the unpadded image
size and continuous (pixel i spans [i, i + 1)); in original-image pixels the
keypoints are x * W - 0.5 (COCO's pixel-index convention, the inverse of the +0.5 the
training records add) and the boxes x * W.
"""
import sys
import time

import numpy as np
import tensorflow as tf

from prtr_tf.nn.guards import nonempty
from prtr_tf.models.keypoint.readout import readout
from prtr_tf.data.keypoint_sets import category_ids
from prtr_tf.data.skips import SkipCounter
from prtr_tf.data.splits import split_files
from prtr_tf.models.detector.data import build_detection_dataset
from prtr_tf.models.detector.records import load_person_boxes


def poses(model, images, mask=None):
    """The persons of a batch (in-graph; no Python-side state).

    Args:
      model: an `EndToEndPRTR`.
      images: float (B, H, W, 3) normalised; mask: optional (B, H, W) 1 on padding.

    Returns a dict over the N selected persons, image-major: ``batch_index`` int32
    (N,), ``scores`` (N,) person probability, ``boxes`` (N, 4) cxcywh, ``keypoints``
    (N, J, 2) (x, y) and ``keypoint_scores`` (N, J), boxes and keypoints normalised
    by each image's unpadded size.
    """
    out = model(images, mask=mask, training=False)
    # The readout of an empty batch would build zero-size while loops (`nonempty`).
    logits, coords = out["kpt_pred_logits"], out["kpt_pred_coords"]
    n = tf.shape(logits)[0]
    logits, coords = nonempty(logits), nonempty(coords)
    result = readout(logits, coords)
    return {"batch_index": out["crop_batch_index"], "scores": out["crop_scores"],
            "boxes": tf.cast(out["crop_boxes"], tf.float32),
            "keypoints": tf.cast(result["coords"][:n], tf.float32),
            "keypoint_scores": tf.cast(result["scores"][:n], tf.float32)}


def to_pixels(keypoints, boxes, size_hw):
    """Normalised keypoints (N, J, 2) and cxcywh boxes (N, 4) of one image of
    (height, width) ``size_hw`` -> keypoints in pixel-index coordinates and
    [x, y, w, h] boxes in pixels (NumPy, float64)."""
    h, w = (float(v) for v in size_hw)
    scale = np.array([w, h])
    keypoints = np.asarray(keypoints, np.float64) * scale - 0.5
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    xywh = np.concatenate([(boxes[:, :2] - boxes[:, 2:] / 2) * scale, boxes[:, 2:] * scale], 1)
    return keypoints, xywh


def predict_split(model, config, split="val", stream=None):
    """Every person the model finds on ``split``. Returns NumPy arrays over them:
    keypoints (N, J, 3) [x, y, score] in original pixels, boxes (N, 4) [x, y, w, h]
    pixels, box_score (N,), image_id (N,), and the number of images."""

    stream = stream or sys.stdout
    ann, image_dir = split_files(config, split)
    skips = SkipCounter()
    records = load_person_boxes(ann, image_dir, min_keypoints=0,
                                skip_bad=bool(config.data.skip_bad_samples),
                                skip_counter=skips, category_ids=category_ids(config))
    dataset = build_detection_dataset(records, config, training=False,
                                      batch=config.test.batch_size, skip_counter=skips)

    @tf.function(reduce_retracing=True)
    def step(images, mask):
        return poses(model, images, mask)

    keypoints, boxes, box_score, image_id = [], [], [], []
    done, t0, tty = 0, time.time(), stream.isatty()
    for batch in dataset:
        found = {k: v.numpy() for k, v in step(batch["image"], batch["mask"]).items()}
        for i, b in enumerate(found["batch_index"]):
            kpts, box = to_pixels(found["keypoints"][i], found["boxes"][i],
                                  batch["orig_size"][b].numpy())
            keypoints.append(np.concatenate([kpts, found["keypoint_scores"][i][:, None]], 1))
            boxes.append(box[0])
            box_score.append(found["scores"][i])
            image_id.append(int(batch["image_id"][b]))
        done += len(batch["image_id"])
        if tty:
            print(f"\r  predicting {done}/{len(records)} images", end="", file=stream,
                  flush=True)
    rate = done / max(time.time() - t0, 1e-9)
    print(f"{chr(13) if tty else ''}  found {len(keypoints)} persons on {done} images "
          f"({rate:.1f} images/s)", file=stream)
    if skips.count:
        print(f"  {skips}", file=stream)
    j = int(config.model.num_joints)
    return dict(keypoints=np.asarray(keypoints, np.float64).reshape(-1, j, 3),
                boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
                box_score=np.asarray(box_score, np.float64),
                image_id=np.asarray(image_id, np.int64), num_images=done)
