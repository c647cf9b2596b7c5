"""Person boxes from a JSON file (``predict.py --boxes_json``), one of two layouts
(told apart by the top-level JSON type):

* a dict {file name: [[x, y, w, h, score], ...]} (score optional, default 1), keyed by
  the file's base name ("img.jpg") or by the path as listed;
* a COCO detections results list [{"image_id", "bbox": [x, y, w, h], "score",
  "category_id"}], entries with a category_id other than 1 ignored; an image_id
  matches the file whose name stem is that number (000000000785.jpg <-> 785) or
  equals it as a string.

Boxes are in the original image's pixels (after EXIF rotation).
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
