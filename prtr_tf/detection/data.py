"""Person-detection data for the DETR detector (spec §8): COCO records and a tf.data pipeline.

Records (`load_person_boxes`), one per image, in the JSON's image order::

    image_path  str
    image_id    int
    boxes       float32 (N, 4)  person boxes [x, y, w, h] in pixels, clipped to the image
    ann_ids     int64 (N,)      their COCO annotation ids
    width       float           from the JSON
    height      float

Kept: non-crowd category-1 annotations with at least ``min_keypoints`` labelled
keypoints (v > 0; spec §8: "persons without visible keypoints are dropped") whose box
has a positive width and height after clipping to the image (DETR's
``ConvertCocoPolysToMask``). Every image is kept, also with zero persons (DETR trains
on those: all queries are no-object).

The pipeline (`build_detection_dataset`) does everything after the record list
in-graph with stateless random ops, following DETR's ``make_coco_transforms``:

* training: horizontal flip (p = 0.5), then with p = 0.5 a random resize of the
  shortest side to one of ``data.scales`` (longest side <= ``data.max_size``), else
  (only when ``data.crop``) a random resize to one of ``data.random_resize_before_crop``
  (no max size), a random crop of width and height in [crop_min, min(side, crop_max)]
  at a random position (boxes clipped to the crop, boxes of zero width or height
  dropped) and a random resize as in the first branch;
* evaluation: resize of the shortest side to ``data.test_size`` (longest side <=
  ``data.max_size``).

Resizing is bilinear with antialiasing, rounded to uint8 values as PIL does; sizes are
DETR's ``get_size_with_aspect_ratio`` (int truncation and round-half-even included).
Images are RGB, normalised as (x / 255 - mean) / std.

Elements (unbatched)::

    image      float32 (h, w, 3)   normalised RGB, h, w after resizing
    mask       float32 (h, w)      0 (no padding yet)
    boxes      float32 (M, 4)      GT boxes cxcywh / (w, h, w, h); M = data.max_boxes;
                                   padding slots 0
    labels     int32 (M,)          class index of "person" in the head (`person_label`:
                                   0 for a person-only head; no-object is the head's
                                   last index); padding slots 0
    valid      float32 (M,)        1 for real boxes
    image_id   int64 ()
    orig_size  int32 (2,)          (h, w) of the decoded image
    size       int32 (2,)          (h, w) after augmentation/resizing (unpadded)
    index      int64 ()            position of the record in ``records``

With keypoints (records from ``load_person_boxes(..., num_joints=J)``, the
end-to-end model's targets) two more entries, following every augmentation step
(a flip also swaps left and right joints; joints outside a random crop get weight 0)::

    keypoints         float32 (M, J, 2)  (x, y) / (w, h), continuous coordinates
                                         (COCO pixel index + 0.5); padding slots 0
    keypoint_weights  float32 (M, J)     1 for labelled joints (v > 0) in the image

Batched (``batch=B``, `batch_detection`): ``padded_batch`` pads image and mask to the
largest h, w of the batch (or to ``data.pad_size`` when set), then up to a multiple of
``data.pad_multiple`` when set: image (B, H, W, 3) with zeros, mask (B, H, W) with 1 =
padding (DETR's NestedTensor mask); the rest gain a leading B.

Bad image files (missing, unreadable, undecodable) are skipped with a warning naming
the file and the image id and counted in ``dataset.skip_counter``, or raise an error
when ``data.skip_bad_samples`` is False (as `prtr_tf.data.pipeline`).
"""
import logging
import os

import numpy as np
import tensorflow as tf

from prtr_tf.config import DATASETS
from prtr_tf.data.coco import PERSON_CATEGORY, _image_table, _load_json, _numbers
from prtr_tf.data.pipeline import decode_image, finish, load_robustly, normalization
from prtr_tf.data.skips import SkipCounter, bad_sample
from prtr_tf.detection.boxes import box_xyxy_to_cxcywh
from prtr_tf.inference import flip_permutation

logger = logging.getLogger("prtr_tf.data")

DEFAULT_MAX_BOXES = 100  # = DETR's number of queries
_REQUIRED = object()


def config_field(section, *names, default=_REQUIRED):
    """The first of ``names`` present in the ConfigDict ``section`` (aliases), else
    ``default``; a KeyError naming them when required and missing."""
    for name in names:
        if name in section:
            return section[name]
    if default is _REQUIRED:
        raise KeyError(f"config field {' or '.join(map(repr, names))} is missing")
    return default


def person_label(config):
    """The class index of "person" in the detector head: ``data.person_label`` when set,
    else 0 for a person-only head (``model.num_classes`` 1 or unset) and COCO's id 1 for
    a full COCO head (num_classes 91)."""
    label = config_field(config.data, "person_label", default=None)
    if label is not None:
        return int(label)
    model = config_field(config, "model", default=None)
    num_classes = 1 if model is None else int(config_field(model, "num_classes", default=1))
    return 0 if num_classes == 1 else 1


# ---------------------------------------------------------------------------------------
# COCO records
# ---------------------------------------------------------------------------------------

def load_person_boxes(ann_file, image_dir, min_keypoints=1, skip_bad=True, skip_counter=None,
                      return_summary=False, num_joints=None):
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

    Returns:
      the records, or (records, summary) with ``return_summary``. The summary (also
      logged at INFO level) counts: images, images_without_persons, persons (kept),
      dropped_no_keypoints, dropped_crowd, dropped_empty_box, other_categories,
      bad_annotations.
    """
    data, name = _load_json(ann_file)
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
        if reason is None and ann["category_id"] != PERSON_CATEGORY:
            summary["other_categories"] += 1
            continue
        if reason is None and _numbers(ann["bbox"], 4) is None:
            reason = f"{where}: field 'bbox' = {ann['bbox']!r} is not 4 finite numbers"
        if reason is None and min_keypoints > 0 and not isinstance(ann.get("keypoints"),
                                                                   (list, tuple)):
            reason = f"{where}: missing field 'keypoints'"
        keypoints = None
        if reason is None and num_joints is not None and not ann.get("iscrowd", 0):
            keypoints = _numbers(ann.get("keypoints", ()), 3 * num_joints)
            if keypoints is None:
                reason = (f"{where}: field 'keypoints' is not {3 * num_joints} finite numbers "
                          f"({num_joints} joints x [x, y, v])")
        if reason:
            summary["bad_annotations"] += 1
            bad_sample(reason, skip_bad, skip_counter)
            continue
        if ann.get("iscrowd", 0):
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


# ---------------------------------------------------------------------------------------
# In-graph transforms (DETR datasets/transforms.py). image: float32 (h, w, 3) in [0, 255];
# boxes: float32 (n, 4) xyxy pixels.
# ---------------------------------------------------------------------------------------

def hflip(image, boxes):
    """Mirrors image and boxes: x0' = w - x1, x1' = w - x0."""
    width = tf.cast(tf.shape(image)[1], boxes.dtype)
    x0, y0, x1, y1 = tf.unstack(boxes, 4, axis=-1)
    return tf.reverse(image, axis=[1]), tf.stack([width - x1, y0, width - x0, y1], axis=-1)


def resize_size(height, width, size, max_size=None):
    """DETR ``get_size_with_aspect_ratio``: the (h, w) int32 output size that gives the
    shortest side ``size``, reduced so the longest side stays <= ``max_size``."""
    h = tf.cast(height, tf.float64)
    w = tf.cast(width, tf.float64)
    size = tf.cast(size, tf.float64)
    if max_size is not None:
        short, long = tf.minimum(h, w), tf.maximum(h, w)
        size = tf.where(long / short * size > max_size,
                        tf.round(float(max_size) * short / long), size)
    out_h = tf.where(w < h, tf.floor(size * h / w), size)
    out_w = tf.where(w < h, size, tf.floor(size * w / h))
    return tf.cast(out_h, tf.int32), tf.cast(out_w, tf.int32)


def resize_to(image, boxes, out_h, out_w):
    """Resizes image (bilinear, antialiased, rounded to uint8 values) and boxes."""
    shape = tf.shape(image)
    ratio_w = tf.cast(out_w, tf.float32) / tf.cast(shape[1], tf.float32)
    ratio_h = tf.cast(out_h, tf.float32) / tf.cast(shape[0], tf.float32)
    resized = tf.image.resize(image, tf.stack([out_h, out_w]), method="bilinear",
                              antialias=True)
    resized = tf.clip_by_value(tf.round(resized), 0.0, 255.0)
    return resized, boxes * tf.stack([ratio_w, ratio_h, ratio_w, ratio_h])


def resize(image, boxes, size, max_size=None):
    """DETR ``resize``: shortest side to ``size`` (longest <= ``max_size``)."""
    shape = tf.shape(image)
    out_h, out_w = resize_size(shape[0], shape[1], size, max_size)
    return resize_to(image, boxes, out_h, out_w)


def resize_with_keypoints(image, boxes, keypoints, size, max_size=None):
    """`resize` that also scales keypoints (n, J, 3) [x, y, v] (J may be 0)."""
    shape = tf.shape(image)
    out_h, out_w = resize_size(shape[0], shape[1], size, max_size)
    image, boxes = resize_to(image, boxes, out_h, out_w)
    ratio = tf.cast(tf.stack([out_w, out_h]), tf.float32) / tf.cast(
        tf.stack([shape[1], shape[0]]), tf.float32)
    return image, boxes, tf.concat([keypoints[..., :2] * ratio, keypoints[..., 2:]], axis=-1)


def crop(image, boxes, region):
    """DETR ``crop``: region (top, left, height, width); boxes shifted, clipped to the
    crop, and those with zero width or height after clipping dropped.

    Returns (image (height, width, 3), boxes (m, 4), keep (n,) bool)."""
    top, left, height, width = (tf.cast(v, tf.int32) for v in region)
    image = image[top:top + height, left:left + width]
    offset = tf.cast(tf.stack([left, top, left, top]), boxes.dtype)
    limit = tf.cast(tf.stack([width, height, width, height]), boxes.dtype)
    boxes = tf.maximum(tf.minimum(boxes - offset, limit), 0.0)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return image, tf.boolean_mask(boxes, keep), keep


def _choice(values, seed):
    values = tf.constant(values, tf.int32)
    i = tf.random.stateless_uniform([], seed, minval=0, maxval=tf.size(values), dtype=tf.int32)
    return values[i]


def _randint(low, high, seed):
    """Uniform int32 in [low, high] (inclusive, like Python's random.randint)."""
    return tf.random.stateless_uniform([], seed, minval=low, maxval=high + 1, dtype=tf.int32)


class DetectionAugmenter:
    """DETR's training augmentation from a stateless seed (see the module docstring).

    ``augment(image, boxes, seed)`` -> (image, boxes): image float32 (h, w, 3) in
    [0, 255], boxes float32 (n, 4) xyxy pixels, seed int (2,). With ``keypoints``
    (n, J, 3) [x, y, v] (continuous pixel coordinates) -> (image, boxes, keypoints):
    the keypoints follow every geometric step (mirrored with their left/right joints
    swapped by ``flip_index``, scaled, shifted by the crop), those that leave the crop
    get v = 0, and the rows of dropped boxes are dropped. Fields of ``data_config``
    (aliases after "|"): scales, max_size, crop_min|crop_min_size,
    crop_max|crop_max_size, random_resize_before_crop|crop_resize_scales, and
    optionally flip (True), flip_prob (0.5), crop (True), crop_prob (0.5: probability
    of the crop branch).
    """

    def __init__(self, data_config, flip_index=None):
        self.scales = [int(s) for s in config_field(data_config, "scales")]
        self.max_size = int(config_field(data_config, "max_size"))
        self.flip = bool(config_field(data_config, "flip", default=True))
        self.flip_prob = float(config_field(data_config, "flip_prob", default=0.5))
        self.crop = bool(config_field(data_config, "crop", default=True))
        self.crop_prob = (float(config_field(data_config, "crop_prob", default=0.5))
                          if self.crop else 0.0)
        self.crop_min = int(config_field(data_config, "crop_min", "crop_min_size"))
        self.crop_max = int(config_field(data_config, "crop_max", "crop_max_size"))
        self.pre_crop_scales = [int(s) for s in config_field(
            data_config, "random_resize_before_crop", "crop_resize_scales")]
        self.flip_index = None if flip_index is None else [int(i) for i in flip_index]

    # Each step maps (image, boxes, keypoints) -> the same; keypoints (n, J, 3), J may be 0.

    def _hflip(self, image, boxes, kpts):
        width = tf.cast(tf.shape(image)[1], kpts.dtype)
        image, boxes = hflip(image, boxes)
        if self.flip_index is not None:
            kpts = tf.gather(kpts, self.flip_index, axis=1)
        kpts = tf.concat([width - kpts[..., :1], kpts[..., 1:]], axis=-1)
        return image, boxes, kpts

    def random_size_crop(self, image, boxes, seed, kpts=None):
        """DETR ``RandomSizeCrop(crop_min, crop_max)`` (the minimum is lowered to the
        image side when the image is smaller, where DETR would fail)."""
        s_w, s_h, s_i, s_j = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
        shape = tf.shape(image)
        img_h, img_w = shape[0], shape[1]
        max_w = tf.minimum(img_w, self.crop_max)
        max_h = tf.minimum(img_h, self.crop_max)
        w = _randint(tf.minimum(self.crop_min, max_w), max_w, s_w)
        h = _randint(tf.minimum(self.crop_min, max_h), max_h, s_h)
        i = _randint(0, img_h - h, s_i)
        j = _randint(0, img_w - w, s_j)
        image, boxes, keep = crop(image, boxes, (i, j, h, w))
        if kpts is None:
            return image, boxes
        xy = kpts[..., :2] - tf.cast(tf.stack([j, i]), kpts.dtype)
        size = tf.cast(tf.stack([w, h]), kpts.dtype)
        inside = tf.reduce_all((xy >= 0.0) & (xy < size), axis=-1)
        v = tf.where(inside, kpts[..., 2], 0.0)
        kpts = tf.concat([xy, v[..., None]], axis=-1)
        return image, boxes, tf.boolean_mask(kpts, keep)

    def __call__(self, image, boxes, seed, keypoints=None):
        (s_flip, s_branch, s_scale, s_pre, s_crop,
         s_scale2) = tf.unstack(tf.random.experimental.stateless_split(seed, 6))
        kpts = (tf.zeros([tf.shape(boxes)[0], 0, 3], tf.float32) if keypoints is None
                else tf.cast(keypoints, tf.float32))
        if self.flip:
            flipped = tf.random.stateless_uniform([], s_flip) < self.flip_prob
            image, boxes, kpts = tf.cond(flipped, lambda: self._hflip(image, boxes, kpts),
                                         lambda: (image, boxes, kpts))

        def plain():
            return resize_with_keypoints(image, boxes, kpts, _choice(self.scales, s_scale),
                                         self.max_size)

        def cropped():
            im, bx, kp = resize_with_keypoints(image, boxes, kpts,
                                               _choice(self.pre_crop_scales, s_pre))
            im, bx, kp = self.random_size_crop(im, bx, s_crop, kp)
            return resize_with_keypoints(im, bx, kp, _choice(self.scales, s_scale2),
                                         self.max_size)

        if self.crop:
            use_crop = tf.random.stateless_uniform([], s_branch) < self.crop_prob
            image, boxes, kpts = tf.cond(use_crop, cropped, plain)
        else:
            image, boxes, kpts = plain()
        image.set_shape([None, None, 3])
        boxes.set_shape([None, 4])
        if keypoints is None:
            return image, boxes
        kpts.set_shape([None, keypoints.shape[1], 3])
        return image, boxes, kpts


# ---------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------

class _DetectionLoader:
    """One element from one record: decode, augment/resize, normalise, targets."""

    def __init__(self, config, training, num_joints=None):
        data = config.data
        self.training = training
        self.num_joints = num_joints
        flip_index = None
        if num_joints is not None:
            dataset = config_field(data, "dataset", default="coco")
            flip_index = flip_permutation(num_joints, DATASETS[dataset]["flip_pairs"])
        self.max_boxes = int(config_field(data, "max_boxes", default=DEFAULT_MAX_BOXES))
        self.test_size = int(config_field(data, "test_size"))
        self.max_size = int(config_field(data, "max_size"))
        self.label = person_label(config)
        self.gain, self.offset = normalization(data.mean, data.std)
        self.augment = DetectionAugmenter(data, flip_index) if training else None

    def __call__(self, rec):
        image = decode_image(rec["image_path"])
        orig_size = tf.shape(image)[:2]
        image = tf.cast(image, tf.float32)
        xywh = rec["boxes"][:rec["count"]]
        boxes = tf.concat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=-1)
        kpts = None
        if self.num_joints is not None:
            kpts = rec["keypoints"][:rec["count"]]
        if self.training:
            out = self.augment(image, boxes, tf.stack([rec["seed"], rec["index"]]), kpts)
        else:
            out = resize_with_keypoints(
                image, boxes, tf.zeros([rec["count"], 0, 3]) if kpts is None else kpts,
                self.test_size, self.max_size)
        image, boxes = out[0], out[1]
        size = tf.shape(image)[:2]
        image = image * self.gain - self.offset
        height, width = tf.cast(size[0], tf.float32), tf.cast(size[1], tf.float32)
        boxes = box_xyxy_to_cxcywh(boxes) / tf.stack([width, height, width, height])
        num = tf.shape(boxes)[0]
        pad = self.max_boxes - num
        extra = {}
        if self.num_joints is not None:
            kpts = out[2]
            xy = kpts[..., :2] / tf.stack([width, height])
            extra["keypoints"] = tf.ensure_shape(tf.pad(xy, [[0, pad], [0, 0], [0, 0]]),
                                                 (self.max_boxes, self.num_joints, 2))
            extra["keypoint_weights"] = tf.ensure_shape(
                tf.pad(tf.cast(kpts[..., 2] > 0, tf.float32), [[0, pad], [0, 0]]),
                (self.max_boxes, self.num_joints))
        return dict(**extra,
            image=image,
            mask=tf.zeros(size, tf.float32),
            boxes=tf.ensure_shape(tf.pad(boxes, [[0, pad], [0, 0]]), (self.max_boxes, 4)),
            labels=tf.where(tf.sequence_mask(num, self.max_boxes), self.label, 0),
            valid=tf.sequence_mask(num, self.max_boxes, dtype=tf.float32),
            image_id=rec["image_id"],
            orig_size=tf.cast(orig_size, tf.int32),
            size=tf.cast(size, tf.int32),
            index=rec["index"],
            _ok=tf.constant(True),
            _path=rec["image_path"],
        )

    def placeholder(self, rec):
        """An element of the same structure marking a failed load (``_ok`` False)."""
        m = self.max_boxes
        extra = {}
        if self.num_joints is not None:
            extra = dict(keypoints=tf.zeros((m, self.num_joints, 2)),
                         keypoint_weights=tf.zeros((m, self.num_joints)))
        return dict(**extra,
            image=tf.zeros((1, 1, 3)), mask=tf.zeros((1, 1)), boxes=tf.zeros((m, 4)),
            labels=tf.zeros((m,), tf.int32), valid=tf.zeros((m,)), image_id=rec["image_id"],
            orig_size=tf.zeros((2,), tf.int32), size=tf.zeros((2,), tf.int32),
            index=rec["index"], _ok=tf.constant(False), _path=rec["image_path"])


def _padding_values(element_spec):
    values = {k: tf.constant(0, spec.dtype) for k, spec in element_spec.items()}
    values["mask"] = tf.constant(1.0, tf.float32)
    return values


def pad_to_multiple(batch, multiple):
    """Pads a batched element's image (zeros) and mask (1) at the bottom and right up
    to the next multiple of ``multiple`` in height and width."""
    shape = tf.shape(batch["image"])
    pad_h = -shape[1] % multiple
    pad_w = -shape[2] % multiple
    batch = dict(batch)
    batch["image"] = tf.pad(batch["image"], [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
    batch["mask"] = tf.pad(batch["mask"], [[0, 0], [0, pad_h], [0, pad_w]],
                           constant_values=1.0)
    return batch


def batch_detection(ds, batch, drop_remainder=False, pad_size=None, pad_multiple=None):
    """``padded_batch`` of unbatched detection elements: image and mask padded to the
    largest (h, w) of the batch, or to ``pad_size`` (H, W) (a fixed shape, e.g. for XLA;
    every image must fit), mask 1 on the padding; with ``pad_multiple`` further to the
    next multiple of it (HRNet needs sides divisible by 32, and the end-to-end crop
    assumes feature maps that cover the padded image exactly)."""
    spec = ds.element_spec
    shapes = {k: s.shape for k, s in spec.items()}
    if pad_size is not None:
        pad_h, pad_w = (int(v) for v in pad_size)
        if pad_multiple and (pad_h % pad_multiple or pad_w % pad_multiple):
            raise ValueError(f"data.pad_size={tuple(pad_size)} is not a multiple of "
                             f"data.pad_multiple={pad_multiple}")
        shapes["image"] = tf.TensorShape([pad_h, pad_w, 3])
        shapes["mask"] = tf.TensorShape([pad_h, pad_w])
    ds = ds.padded_batch(int(batch), padded_shapes=shapes,
                         padding_values=_padding_values(spec),
                         drop_remainder=drop_remainder)
    if pad_multiple and pad_size is None:
        ds = ds.map(lambda b: pad_to_multiple(b, int(pad_multiple)))
    return ds


def build_detection_dataset(records, config, training, deterministic=False, seed=0,
                            batch=None, drop_remainder=False, skip_counter=None):
    """A tf.data.Dataset of detection samples (see the module docstring).

    Args:
      records: list of records from `load_person_boxes`.
      config: a config whose ``config.data`` has scales, max_size, test_size, mean,
        std, num_parallel_calls (-1 = AUTOTUNE), crop_min|crop_min_size,
        crop_max|crop_max_size, random_resize_before_crop|crop_resize_scales (aliases
        after "|") and optionally max_boxes (100), flip (True), flip_prob (0.5), crop
        (True), crop_prob (0.5), skip_bad_samples (True), pad_size (None) and
        person_label (default: `person_label`, from ``config.model.num_classes``).
      training: shuffle every epoch and augment; otherwise records in order, resized to
        ``data.test_size``.
      deterministic: same elements in the same order on every run for a given ``seed``.
      seed: seed of the shuffle and the augmentation when ``deterministic``.
      batch: if given, `batch_detection` (padded to the batch's largest image).
      skip_counter: a `SkipCounter` for bad image files; a new one if None. Also
        available as ``dataset.skip_counter``.
    """
    data = config.data
    columns = records_to_columns(
        records, int(config_field(data, "max_boxes", default=DEFAULT_MAX_BOXES)))
    counter = skip_counter if skip_counter is not None else SkipCounter()
    num_joints = columns["keypoints"].shape[2] if "keypoints" in columns else None
    ds = load_robustly(columns, _DetectionLoader(config, training, num_joints), training,
                       deterministic,
                       seed, data.num_parallel_calls,
                       bool(config_field(data, "skip_bad_samples", default=True)), counter,
                       "image_id", "image id")
    if batch:
        ds = batch_detection(ds, batch, drop_remainder,
                             config_field(data, "pad_size", default=None),
                             config_field(data, "pad_multiple", default=None))
    return finish(ds, deterministic or not training, counter)


def unnormalize_boxes(boxes, orig_size):
    """NumPy/TF helper: normalised cxcywh targets/predictions -> [x, y, w, h] pixels of
    the original image (h, w) = ``orig_size`` (valid in eval mode, where the image is
    only resized; a prediction on a padded batch must be normalised by the unpadded
    size first, which DETR's box head already is)."""
    boxes = np.asarray(boxes, np.float64)
    h, w = (float(v) for v in np.asarray(orig_size).reshape(-1)[:2])
    cx, cy, bw, bh = (boxes[..., k] for k in range(4))
    return np.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h], axis=-1)

