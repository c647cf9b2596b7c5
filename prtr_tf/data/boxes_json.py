"""Person boxes from a JSON file (``predict.py --boxes_json``), one of two layouts
(told apart by the top-level JSON type):

* a dict {file name: [[x, y, w, h, score], ...]} (score optional, default 1), keyed by
  the file's base name ("img.jpg") or by the path as listed;
* a COCO detections results list [{"image_id", "bbox": [x, y, w, h], "score",
  "category_id"}], entries with a category_id other than 1 ignored; an image_id
  matches the file whose name stem is that number (000000000785.jpg <-> 785) or
  equals it as a string.

Boxes are in the original image's pixels (after EXIF rotation). predict clips them to
the image and refuses a file with a box outside it (`fit_boxes_to_image`).
"""
import os

import numpy as np

from prtr_tf.data.jsonfile import read_json


def load_boxes_json(path):
    """--boxes_json -> a function file path -> (boxes xywh (N, 4), scores (N,)) or None
    when the JSON has no entry for that file (the layouts: module docstring)."""
    data = read_json(path, "--boxes_json file")
    table = {}
    if isinstance(data, dict):
        for key, rows in data.items():
            rows = [list(r) for r in rows]
            for r in rows:
                if len(r) not in (4, 5):
                    raise ValueError(f"{path}: {key!r}: expected [x, y, w, h] or "
                                     f"[x, y, w, h, score], got {r}")
            table[str(key)] = ([r[:4] for r in rows], [r[4] if len(r) == 5 else 1.0
                                                       for r in rows])

        def lookup(file):
            for key in (file, os.path.basename(file), os.path.normpath(file)):
                if key in table:
                    return table[key]
            return None
    elif isinstance(data, list):
        for i, det in enumerate(data):
            if not isinstance(det, dict) or "image_id" not in det or "bbox" not in det:
                raise ValueError(f"{path}: entry #{i} is not a COCO detection "
                                 "{image_id, bbox, score}")
            if det.get("category_id", 1) != 1:
                continue
            boxes, scores = table.setdefault(str(det["image_id"]), ([], []))
            boxes.append(list(det["bbox"])[:4])
            scores.append(float(det.get("score", 1.0)))

        def lookup(file):
            stem = os.path.splitext(os.path.basename(file))[0]
            if stem in table:
                return table[stem]
            if stem.isdigit() and str(int(stem)) in table:
                return table[str(int(stem))]
            return None
    else:
        raise ValueError(f"{path}: expected a JSON dict {{file: [[x, y, w, h, score], ...]}} "
                         "or a COCO detections list")

    def boxes_for(file):
        found = lookup(file)
        if found is None:
            return None
        boxes = np.asarray(found[0], np.float64).reshape(-1, 4)
        return boxes, np.asarray(found[1], np.float64).reshape(-1)
    return boxes_for


def fit_boxes_to_image(boxes, width, height, file, label="--boxes_json box"):
    """Boxes xywh (N, 4) in a ``width`` x ``height`` image's pixels -> (the boxes clipped
    to the image, how many were clipped). A box with no overlap with the image (e.g. at
    x = 5000 in a 640-wide image) is a ValueError naming it and ``file``: a person
    outside the image is not predicted. Boxes that are not finite with w, h > 0 are
    passed on unchanged (the estimator refuses them, naming the box)."""
    boxes = np.array(boxes, np.float64).reshape(-1, 4)
    valid = np.all(np.isfinite(boxes), axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    cx1, cy1 = np.clip(x1, 0, width), np.clip(y1, 0, height)
    cx2, cy2 = np.clip(x2, 0, width), np.clip(y2, 0, height)
    outside = np.where(valid & ((cx2 <= cx1) | (cy2 <= cy1)))[0]
    if len(outside):
        i = outside[0]
        box = [round(float(v), 2) for v in boxes[i]]
        raise ValueError(f"{label} #{i} {box} of {os.path.basename(file)} lies "
                         f"outside the {width}x{height} image ({len(outside)} such box(es)): "
                         "boxes are [x, y, w, h] in the original image's pixels; fix or "
                         "drop the box")
    clipped = valid & ((cx1 != x1) | (cy1 != y1) | (cx2 != x2) | (cy2 != y2))
    fitted = np.stack([cx1, cy1, cx2 - cx1, cy2 - cy1], axis=1)
    return np.where(valid[:, None], fitted, boxes), int(clipped.sum())
