"""The tf.data pipeline of person-detection samples for the DETR detector and the
end-to-end PRTR (spec §8): elements from records, and their padded batches.

`build_detection_dataset` does everything after the record list
(`prtr_tf.models.detector.records`) in-graph with stateless random ops: decode, DETR's
augmentation when training (`prtr_tf.models.detector.augment.DetectionAugmenter`) or the
evaluation resize (shortest side ``data.test_size``, longest <= ``data.max_size``),
normalisation of the RGB image as (x / 255 - mean) / std, and the targets.

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
when ``data.skip_bad_samples`` is False (as `prtr_tf.models.keypoint.data`).
"""
import numpy as np
import tensorflow as tf

from prtr_tf.data.keypoint_sets import flip_pairs_of, flip_permutation
from prtr_tf.data.image import decode_image, finish, load_robustly, normalization
from prtr_tf.data.skips import SkipCounter
from prtr_tf.models.detector.augment import DetectionAugmenter, resize_with_keypoints
from prtr_tf.models.detector.records import person_label, records_to_columns
from prtr_tf.nn.boxes import box_xyxy_to_cxcywh


class _DetectionLoader:
    """One element from one record: decode, augment/resize, normalise, targets."""

    def __init__(self, config, training, num_joints=None):
        data = config.data
        self.training = training
        self.num_joints = num_joints
        flip_index = pairs = None
        if num_joints is not None:
            pairs = flip_pairs_of(config)  # None: a set without pairs is not mirrored
            flip_index = flip_permutation(num_joints, pairs or ())
        self.max_boxes = int(data.max_boxes)
        self.test_size = int(data.test_size)
        self.max_size = int(data.max_size)
        self.label = person_label(config)
        self.gain, self.offset = normalization(data.mean, data.std)
        self.augment = DetectionAugmenter(data, flip_index) if training else None
        if self.augment is not None and num_joints is not None and pairs is None:
            self.augment.flip = False

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
      config: a detector or end-to-end config (`prtr_tf.models.detector.config.detector`
        declares every ``config.data`` field read here: dataset, max_boxes, test_size,
        max_size, mean, std, num_parallel_calls, skip_bad_samples, pad_size,
        pad_multiple, person_label, and the augmentation's fields); ``config.model``
        gives the person label (`person_label`).
      training: shuffle every epoch and augment; otherwise records in order, resized to
        ``data.test_size``.
      deterministic: same elements in the same order on every run for a given ``seed``.
      seed: seed of the shuffle and the augmentation when ``deterministic``.
      batch: if given, `batch_detection` (padded to the batch's largest image).
      skip_counter: a `SkipCounter` for bad image files; a new one if None. Also
        available as ``dataset.skip_counter``.
    """
    data = config.data
    columns = records_to_columns(records, int(data.max_boxes))
    counter = skip_counter if skip_counter is not None else SkipCounter()
    num_joints = columns["keypoints"].shape[2] if "keypoints" in columns else None
    ds = load_robustly(columns, _DetectionLoader(config, training, num_joints), training,
                       deterministic, seed, data.num_parallel_calls,
                       bool(data.skip_bad_samples), counter, "image_id", "image id")
    if batch:
        ds = batch_detection(ds, batch, drop_remainder, data.pad_size, data.pad_multiple)
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
