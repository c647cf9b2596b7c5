"""COCO readers: keypoints and person detections -> per-person records (spec §5.1, §5.7).

A record is a dict::

    image_path  str            the image file
    image_id    int            COCO image id
    center      float32 (2,)   box centre (x, y), pixels
    scale       float32 (2,)   box size / pixel_std, padded by 1.25, at the crop's aspect ratio
    joints      float32 (J, 3) x, y, vis (vis in {0, 1}; COCO v = 1 and 2 both give 1)
    box_score   float          1 for GT boxes, the detector score for detections
    ann_id      int            COCO annotation id (detections: index in the results list)

Readers parse the JSON themselves (same order as pycocotools: images in file order,
each image's annotations in file order). A malformed entry is a counted skip with a
warning naming the file, the entry and the field, or a ValueError with ``skip_bad=False``.

Fields that files converted from other formats often lack get defaults
(`with_annotation_defaults`, also applied to the ground truth given to pycocotools):
``iscrowd`` 0, ``area`` the box's w x h (OKS then normalises by the box area, not the
segmentation area COCO's own files hold: mmpose's ``use_area=False``), and
``num_keypoints`` counted from the visibility flags (v > 0). One warning per file
(per process) names the defaulted fields and how many annotations lacked each.
"""
import logging
import math
import os

import numpy as np

from prtr_tf.data.jsonfile import read_json
from prtr_tf.data.skips import bad_sample
from prtr_tf.data.transforms import BOX_PADDING, PIXEL_STD, box_to_center_scale, sanitize_box

PERSON_CATEGORY = 1
DEFAULTED_FIELDS = ("iscrowd", "area", "num_keypoints")
_DEFAULTS_WARNED = set()  # (file, mtime, size) of the files whose defaults were reported

logger = logging.getLogger("prtr_tf.data")


def _load_json(path_or_data):
    if isinstance(path_or_data, (dict, list)):
        return path_or_data, "<in-memory JSON>"
    return read_json(path_or_data, "annotation file"), os.fspath(path_or_data)


def _numbers(value, length):
    """``value`` as a list of ``length`` finite floats, or None."""
    if not isinstance(value, (list, tuple)) or len(value) != length:
        return None
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _image_table(data, name, skip_bad, skip_counter):
    """{image id: (file_name, width, height)} from a COCO ``images`` list."""
    images = {}
    for i, im in enumerate(data.get("images", [])):
        missing = [k for k in ("id", "file_name", "width", "height") if k not in im]
        if missing:
            bad_sample(f"{name}: images[{i}] has no field {missing[0]!r}", skip_bad,
                       skip_counter)
            continue
        images[im["id"]] = (im["file_name"], float(im["width"]), float(im["height"]))
    return images


def _check_annotation(ann, index, images, num_joints, name):
    """The reason ``ann`` is malformed (a message naming file, id and field), or None."""
    where = f"{name}: annotation id {ann.get('id', f'#{index}')}"
    for field in ("image_id", "category_id", "bbox", "keypoints"):
        if field not in ann:
            return f"{where}: missing field {field!r}"
    if ann["image_id"] not in images:
        return f"{where}: field 'image_id' = {ann['image_id']!r} is not in the images list"
    if _numbers(ann["bbox"], 4) is None:
        return f"{where}: field 'bbox' = {ann['bbox']!r} is not 4 finite numbers"
    if ann["bbox"][2] < 0 or ann["bbox"][3] < 0:
        return (f"{where}: field 'bbox' = {ann['bbox']!r} has a negative width or height "
                "(COCO boxes are [x, y, width, height])")
    if _numbers(ann["keypoints"], 3 * num_joints) is None:
        got = len(ann["keypoints"]) if isinstance(ann["keypoints"], (list, tuple)) else "?"
        return (f"{where}: field 'keypoints' has {got} values, expected {3 * num_joints} "
                "finite numbers")
    if "area" in ann and _numbers([ann["area"]], 1) is None:
        return f"{where}: field 'area' = {ann['area']!r} is not a finite number"
    return None


def _joints(keypoints, num_joints):
    kp = np.asarray(keypoints, np.float32).reshape(num_joints, 3)
    joints = np.zeros((num_joints, 3), np.float32)
    joints[:, :2] = kp[:, :2]
    joints[:, 2] = np.minimum(kp[:, 2], 1.0)  # v = 1 (occluded) and 2 both count
    return joints


def area_of(ann):
    """An annotation's ``area``; its box's w x h when the file has none (CrowdPose)."""
    if "area" in ann:
        return float(ann["area"])
    return float(ann["bbox"][2]) * float(ann["bbox"][3])


def _labelled(keypoints):
    """The number of labelled keypoints (v > 0) of a ``keypoints`` list, or None."""
    try:
        return int(sum(float(v) > 0 for v in keypoints[2::3]))
    except (TypeError, ValueError):
        return None


def _defaults(ann):
    """The fields of `DEFAULTED_FIELDS` ``ann`` lacks, with their defaults (those that
    can be computed: ``area`` needs a valid box, ``num_keypoints`` a keypoints list)."""
    if not isinstance(ann, dict):
        return {}
    out = {}
    if "iscrowd" not in ann:
        out["iscrowd"] = 0
    box = _numbers(ann.get("bbox"), 4)
    if "area" not in ann and box is not None:
        out["area"] = box[2] * box[3]
    if "num_keypoints" not in ann and isinstance(ann.get("keypoints"), (list, tuple)):
        count = _labelled(ann["keypoints"])
        if count is not None:
            out["num_keypoints"] = count
    return out


def _file_key(name):
    try:
        stat = os.stat(name)
    except OSError:
        return None  # in-memory JSON: reported every time
    return os.path.abspath(name), stat.st_mtime_ns, stat.st_size


def with_annotation_defaults(data, name):
    """``data`` (a loaded COCO-format dict; not modified) with the fields its
    annotations lack filled in (see the module docstring): a new dict when any was
    missing, else ``data`` itself. The first time a file (``name``) lacks any, one
    warning names the fields and counts."""
    annotations = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(annotations, list):
        return data
    counts = dict.fromkeys(DEFAULTED_FIELDS, 0)
    filled, changed = [], False
    for ann in annotations:
        extra = _defaults(ann)
        for field in extra:
            counts[field] += 1
        changed = changed or bool(extra)
        filled.append(dict(ann, **extra) if extra else ann)
    if not changed:
        return data
    key = _file_key(name)
    if key is None or key not in _DEFAULTS_WARNED:
        if key is not None:
            _DEFAULTS_WARNED.add(key)
        meaning = {"iscrowd": "0", "area": "the box's w x h, so OKS scales with the box",
                   "num_keypoints": "counted from the visibility flags"}
        logger.warning("%s: annotations without some fields, given defaults (of %d "
                       "annotations): %s", name, len(annotations),
                       ", ".join(f"{counts[f]} without {f!r} ({meaning[f]})"
                                 for f in DEFAULTED_FIELDS if counts[f]))
    return dict(data, annotations=filled)


def load_coco_keypoints(ann_file, image_dir, image_size_hw, num_joints=17,
                        pixel_std=PIXEL_STD, padding=BOX_PADDING, skip_bad=True,
                        skip_counter=None, category_ids=(PERSON_CATEGORY,)):
    """Training/validation records from GT boxes (HRNet ``_load_coco_keypoint_annotations``).

    Keeps non-crowd annotations of ``category_ids`` (default: the person) with area > 0
    (missing ``iscrowd``, ``area``: `with_annotation_defaults`), a valid sanitised box
    and at least one labelled keypoint (v > 0); the sanitised box gives center/scale at
    the aspect ratio W/H of ``image_size_hw`` with 1.25 padding. ``ann_file`` is a path or the
    loaded JSON dict. Records also hold the annotation's ``category_id`` and ``bbox``
    (as in the file: PCK's normaliser).
    """
    data, name = _load_json(ann_file)
    data = with_annotation_defaults(data, name)
    images = _image_table(data, name, skip_bad, skip_counter)
    aspect_ratio = image_size_hw[1] / image_size_hw[0]
    categories = set(category_ids)
    by_image = {image_id: [] for image_id in images}
    for index, ann in enumerate(data.get("annotations", [])):
        reason = _check_annotation(ann, index, images, num_joints, name)
        if reason:
            bad_sample(reason, skip_bad, skip_counter)
            continue
        by_image[ann["image_id"]].append(ann)

    records = []
    for image_id, anns in by_image.items():
        file_name, width, height = images[image_id]
        for ann in anns:
            if ann["iscrowd"] or ann["category_id"] not in categories or area_of(ann) <= 0:
                continue
            box = sanitize_box(ann["bbox"], width, height)
            if box is None:
                continue
            joints = _joints(ann["keypoints"], num_joints)
            if not (joints[:, 2] > 0).any():
                continue
            center, scale = box_to_center_scale(box, aspect_ratio, pixel_std, padding)
            records.append(dict(image_path=os.path.join(image_dir, file_name),
                                image_id=int(image_id), center=center, scale=scale,
                                joints=joints, box_score=1.0, ann_id=int(ann.get("id", -1)),
                                category_id=int(ann["category_id"]),
                                bbox=np.asarray(ann["bbox"], np.float32)))
    return records


def load_coco_detections(det_file, ann_file, image_dir, image_size_hw, num_joints=17,
                         image_thre=0.0, pixel_std=PIXEL_STD, padding=BOX_PADDING,
                         skip_bad=True, skip_counter=None, category_ids=(PERSON_CATEGORY,),
                         split=None):
    """Test records from a COCO results list of detections (HRNet
    ``_load_coco_person_detection_results``).

    Keeps boxes of ``category_ids`` (default: the person) with score >= ``image_thre``;
    boxes are not sanitised; records hold the detection's ``category_id``.
    ``ann_file`` (path or dict; only its ``images`` are used) maps image ids to files.
    Bad entries (missing field, image id not in ``ann_file``, non-positive or non-finite
    width/height, non-finite score) are counted skips with a warning naming the file,
    the index and the field, or a ValueError with ``skip_bad=False``. ``ann_id`` is
    the index of the detection in the file; joints are zeros. With ``split`` (the name
    of the split ``ann_file`` holds, as eval gives it), any detection whose image id is
    not an image of ``ann_file`` is a ValueError naming how many and a few
    (`check_detection_image_ids`): detections of one split scored against another's
    ground truth.
    """
    dets, name = _load_json(det_file)
    if not isinstance(dets, list):
        raise ValueError(f"{name}: expected a JSON list of detections, got "
                         f"{type(dets).__name__}")
    data, ann_name = _load_json(ann_file)
    images = _image_table(data, ann_name, skip_bad, skip_counter)
    if split is not None:
        check_detection_image_ids(dets, images, name, f"the {split} split ({ann_name})")
    aspect_ratio = image_size_hw[1] / image_size_hw[0]
    records = []
    for index, det in enumerate(dets):
        where = f"{name}: detection #{index}"
        if not isinstance(det, dict):
            bad_sample(f"{where}: not a JSON object", skip_bad, skip_counter)
            continue
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in det]
        if missing:
            bad_sample(f"{where}: missing field {missing[0]!r}", skip_bad, skip_counter)
            continue
        if det["category_id"] not in category_ids:
            continue
        score = _numbers([det["score"]], 1)
        if score is None:
            bad_sample(f"{where}: field 'score' = {det['score']!r} is not a finite number",
                       skip_bad, skip_counter)
            continue
        if score[0] < image_thre:
            continue
        if det["image_id"] not in images:
            bad_sample(f"{where}: field 'image_id' = {det['image_id']!r} is not an image of "
                       f"{ann_name}", skip_bad, skip_counter)
            continue
        box = _numbers(det["bbox"], 4)
        if box is None or box[2] <= 0 or box[3] <= 0:
            bad_sample(f"{where}: field 'bbox' = {det['bbox']!r} is not [x, y, w, h] with "
                       "finite w > 0 and h > 0", skip_bad, skip_counter)
            continue
        center, scale = box_to_center_scale(box, aspect_ratio, pixel_std, padding)
        records.append(dict(image_path=os.path.join(image_dir, images[det["image_id"]][0]),
                            image_id=int(det["image_id"]), center=center, scale=scale,
                            joints=np.zeros((num_joints, 3), np.float32),
                            box_score=float(score[0]), ann_id=index,
                            category_id=int(det["category_id"])))
    return records


def check_detection_image_ids(dets, images, name, where):
    """A ValueError unless the image id of every detection in ``dets`` (a COCO results
    list, file ``name``) is a key of ``images``, the images of ``where`` (e.g. "the val
    split (FILE)"): the message counts the ids that are not, with a few examples."""
    ids = {det["image_id"] for det in dets if isinstance(det, dict) and "image_id" in det}
    unknown = sorted((i for i in ids if i not in images), key=str)
    if not unknown:
        return
    examples = ", ".join(repr(i) for i in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
    which = ("none of" if len(unknown) == len(ids)
             else f"{len(unknown)} of")
    raise ValueError(
        f"detections {name}: {which} the {len(ids)} image ids it holds are images of "
        f"{where} (not there: {examples}): detections of another split or dataset are not "
        "scored against this ground truth; give the detections of this split's images "
        "(or evaluate the split they were made on)")
