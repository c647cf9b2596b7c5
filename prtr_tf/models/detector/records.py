"""COCO person-box records for the DETR detector and the end-to-end PRTR (spec §8):
reading them from a keypoints JSON, their padded columns, and the person class label.

Records (`load_person_boxes`), one per image, in the JSON's image order::

    image_path  str
    image_id    int
    boxes       float32 (N, 4)     person boxes [x, y, w, h] in pixels, clipped to the image
    ann_ids     int64 (N,)         their COCO annotation ids
    width       float              from the JSON
    height      float
    keypoints   float32 (N, J, 3)  only with ``num_joints=J``: [x, y, v], COCO pixel
                                   index + 0.5 (continuous coordinates, like the boxes)

Kept: non-crowd category-1 annotations with at least ``min_keypoints`` labelled
keypoints (v > 0; spec §8: "persons without visible keypoints are dropped") whose box
has a positive width and height after clipping to the image (DETR's
``ConvertCocoPolysToMask``); a missing ``iscrowd`` is 0 (`prtr_tf.data.coco.
with_annotation_defaults`: one warning per file). Every image is kept, also with zero persons (DETR trains
on those: all queries are no-object).

`records_to_columns` turns the records into the NumPy columns the tf.data pipeline
(`prtr_tf.models.detector.data`) slices, boxes padded or truncated to ``data.max_boxes``;
`person_label` is the head's class index of "person", the label of every target box.
"""
import logging
import os

import numpy as np

from prtr_tf.data.coco import (PERSON_CATEGORY, _image_table, _load_json, _numbers,
                               with_annotation_defaults)
from prtr_tf.data.skips import bad_sample
from prtr_tf.data.keypoint_sets import category_ids
from prtr_tf.data.splits import split_files

logger = logging.getLogger("prtr_tf.data")


def person_label(config):
    """The class index of "person" in the detector head (``data.person_label``, set by
    `prtr_tf.models.detector.config.detector` from the head's number of classes)."""
    return int(config.data.person_label)


def load_person_boxes(ann_file, image_dir, min_keypoints=1, skip_bad=True, skip_counter=None,
                      return_summary=False, num_joints=None,
                      category_ids=(PERSON_CATEGORY,)):
    """Per-image person-box records from a COCO keypoints JSON (see the module docstring).

    Args:
      ann_file: path of the JSON, or the loaded dict.
      image_dir: folder of the image files.
      min_keypoints: persons with fewer labelled keypoints (v > 0) are dropped; 0 keeps
        every non-crowd person (DETR's own behaviour).
      skip_bad, skip_counter: malformed entries (missing field, non-finite bbox,
        unknown image id) are counted skips with a warning, or a ValueError when
        ``skip_bad`` is False (`prtr_tf.data.skips.bad_sample`).
      return_summary: also return the summary dict.
      num_joints: when given, the records also hold each person's ``keypoints``
        float32 (N, num_joints, 3) [x, y, v] in continuous pixel coordinates (COCO's
        pixel-index x, y plus 0.5: pixel i spans [i, i + 1), the convention of the
        boxes and of every resize); an annotation whose ``keypoints`` is not
        3 * num_joints finite numbers is a bad annotation.
      category_ids: the categories whose instances are the objects (default: the
        person; a custom keypoint set's categories are one object class).

    Returns:
      the records, or (records, summary) with ``return_summary``. The summary (also
      logged at INFO level) counts: images, images_without_persons, persons (kept),
      dropped_no_keypoints, dropped_crowd, dropped_empty_box, other_categories,
      bad_annotations.
    """
    data, name = _load_json(ann_file)
    data = with_annotation_defaults(data, name)  # iscrowd, area, num_keypoints
    images = _image_table(data, name, skip_bad, skip_counter)
    summary = dict(images=len(images), images_without_persons=0, persons=0,
                   dropped_no_keypoints=0, dropped_crowd=0, dropped_empty_box=0,
                   other_categories=0, bad_annotations=0)
    by_image = {image_id: [] for image_id in images}
    for index, ann in enumerate(data.get("annotations", [])):
        where = f"{name}: annotation id {ann.get('id', f'#{index}')}"
        reason = None
        for field in ("image_id", "category_id", "bbox"):
            if field not in ann:
                reason = f"{where}: missing field {field!r}"
                break
        if reason is None and ann["image_id"] not in images:
            reason = (f"{where}: field 'image_id' = {ann['image_id']!r} is not in the images "
                      "list")
        if reason is None and ann["category_id"] not in category_ids:
            summary["other_categories"] += 1
            continue
        if reason is None and _numbers(ann["bbox"], 4) is None:
            reason = f"{where}: field 'bbox' = {ann['bbox']!r} is not 4 finite numbers"
        if reason is None and min_keypoints > 0 and not isinstance(ann.get("keypoints"),
                                                                   (list, tuple)):
            reason = f"{where}: missing field 'keypoints'"
        keypoints = None
        if reason is None and num_joints is not None and not ann["iscrowd"]:
            keypoints = _numbers(ann.get("keypoints", ()), 3 * num_joints)
            if keypoints is None:
                reason = (f"{where}: field 'keypoints' is not {3 * num_joints} finite numbers "
                          f"({num_joints} joints x [x, y, v])")
        if reason:
            summary["bad_annotations"] += 1
            bad_sample(reason, skip_bad, skip_counter)
            continue
        if ann["iscrowd"]:
            summary["dropped_crowd"] += 1
            continue
        if min_keypoints > 0:
            vis = np.asarray(ann["keypoints"][2::3], np.float64)
            if int(np.sum(vis > 0)) < min_keypoints:
                summary["dropped_no_keypoints"] += 1
                continue
        _, width, height = images[ann["image_id"]]
        x, y, w, h = _numbers(ann["bbox"], 4)
        # DETR ConvertCocoPolysToMask: xyxy clamped to the image, keep x1 > x0, y1 > y0.
        x0, y0 = min(max(x, 0.0), width), min(max(y, 0.0), height)
        x1, y1 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
        if not (x1 > x0 and y1 > y0):
            summary["dropped_empty_box"] += 1
            continue
        if keypoints is not None:
            keypoints = np.asarray(keypoints, np.float32).reshape(num_joints, 3)
            keypoints[keypoints[:, 2] > 0, :2] += 0.5  # pixel index -> continuous coordinate
        by_image[ann["image_id"]].append(([x0, y0, x1 - x0, y1 - y0], int(ann.get("id", -1)),
                                          keypoints))

    records = []
    for image_id, persons in by_image.items():
        file_name, width, height = images[image_id]
        summary["persons"] += len(persons)
        summary["images_without_persons"] += not persons
        record = dict(
            image_path=os.path.join(image_dir, file_name), image_id=int(image_id),
            boxes=np.array([p[0] for p in persons], np.float32).reshape(-1, 4),
            ann_ids=np.array([p[1] for p in persons], np.int64),
            width=width, height=height)
        if num_joints is not None:
            record["keypoints"] = np.array([p[2] for p in persons],
                                           np.float32).reshape(-1, num_joints, 3)
        records.append(record)
    logger.info("%s: %d images (%d without persons), %d persons kept; dropped: %d with "
                "fewer than %d labelled keypoints, %d crowd, %d empty boxes; %d other-"
                "category and %d bad annotations", name, summary["images"],
                summary["images_without_persons"], summary["persons"],
                summary["dropped_no_keypoints"], min_keypoints, summary["dropped_crowd"],
                summary["dropped_empty_box"], summary["other_categories"],
                summary["bad_annotations"])
    return (records, summary) if return_summary else records


def records_to_columns(records, max_boxes):
    """Records -> dict of NumPy arrays (boxes, and keypoints when the records have
    them, padded/truncated to ``max_boxes``)."""
    if not records:
        raise ValueError("no records: the dataset is empty")
    with_keypoints = "keypoints" in records[0]
    if with_keypoints:
        num_joints = np.asarray(records[0]["keypoints"]).shape[1]
        keypoints = np.zeros((len(records), max_boxes, num_joints, 3), np.float32)
    boxes = np.zeros((len(records), max_boxes, 4), np.float32)
    counts = np.zeros(len(records), np.int32)
    truncated = []
    for i, r in enumerate(records):
        b = np.asarray(r["boxes"], np.float32).reshape(-1, 4)
        if len(b) > max_boxes:
            truncated.append((r["image_id"], len(b)))
            b = b[:max_boxes]
        boxes[i, :len(b)] = b
        counts[i] = len(b)
        if with_keypoints:
            keypoints[i, :len(b)] = np.asarray(r["keypoints"], np.float32)[:len(b)]
    if truncated:
        logger.warning("%d images have more than data.max_boxes = %d person boxes; only "
                       "the first %d are used (e.g. image id %d has %d)", len(truncated),
                       max_boxes, max_boxes, truncated[0][0], truncated[0][1])
    columns = dict(
        image_path=np.array([os.fspath(r["image_path"]) for r in records], dtype=object),
        image_id=np.array([r["image_id"] for r in records], np.int64),
        boxes=boxes, count=counts, index=np.arange(len(records), dtype=np.int64))
    if with_keypoints:
        columns["keypoints"] = keypoints
    return columns


def load_split(config, split, skip_counter=None, num_joints=None):
    """Person-box records of a configured split (`prtr_tf.data.splits.split_files`): the
    training data of the detector and, with ``num_joints``, of the end-to-end model."""
    ann, images = split_files(config, split)
    return load_person_boxes(ann, images, min_keypoints=config.data.min_keypoints,
                             skip_bad=config.data.skip_bad_samples,
                             skip_counter=skip_counter, num_joints=num_joints,
                             category_ids=category_ids(config))
