"""The keypoint family's tf.data input pipeline: records -> normalised person crops and
coordinate targets (spec §5); the shared image steps are in `prtr_tf.data.image`.

Every step after the record list runs in-graph: read and decode the image, draw the
augmentation (scale, rotation with probability, flip; spec §5.3) with stateless random
ops, warp the crop with ImageProjectiveTransformV3 (§5.2), transform the visible joints
with the same matrix, normalise (§5.4) and build the targets (§5.5).

Elements (before the optional batching) are dicts::

    image          float32 (H, W, 3)  (x/255 - mean) / std per channel position;
                                      BGR unless config.data.color_rgb
    target         float32 (J, 2)     joints in crop pixels / (W, H)
    target_weight  float32 (J,)       visibility in {0, 1}
    center         float32 (2,)       crop centre (after augmentation and flip)
    scale          float32 (2,)       crop scale (after augmentation)
    rotation       float32 ()         degrees
    image_id       int64 ()
    box_score      float32 ()
    flipped        float32 ()         1 if the sample was mirrored
    index          int64 ()           position of the sample's record in ``records``

Bad image files (missing, unreadable, undecodable) are skipped with a warning naming the
file and the annotation id and counted in ``dataset.skip_counter`` (a `SkipCounter`),
or raise an error naming the file when ``config.data.skip_bad_samples`` is False.
"""
import os

import numpy as np
import tensorflow as tf

from prtr_tf.data.image import decode_image, finish, load_robustly, normalization
from prtr_tf.data.keypoint_sets import flip_pairs_of, flip_permutation
from prtr_tf.data.skips import SkipCounter
from prtr_tf.data.transforms import affine_matrix_tf, transform_joints_tf, warp_affine_tf

def records_to_columns(records, num_joints):
    """A list of records -> dict of NumPy arrays, one row per record (plus ``index``)."""
    if not records:
        raise ValueError("no records: the dataset is empty")
    joints = np.stack([np.asarray(r["joints"], np.float32) for r in records])
    if joints.shape[1:] != (num_joints, 3):
        raise ValueError(f"records have joints of shape {joints.shape[1:]}, expected "
                         f"({num_joints}, 3)")
    return dict(
        image_path=np.array([os.fspath(r["image_path"]) for r in records], dtype=object),
        center=np.stack([np.asarray(r["center"], np.float32) for r in records]),
        scale=np.stack([np.asarray(r["scale"], np.float32).reshape(2) for r in records]),
        joints=joints,
        image_id=np.array([r["image_id"] for r in records], np.int64),
        box_score=np.array([r.get("box_score", 1.0) for r in records], np.float32),
        ann_id=np.array([r.get("ann_id", -1) for r in records], np.int64),
        index=np.arange(len(records), dtype=np.int64),
    )


class _Augmenter:
    """Draws scale, rotation and flip for one sample from a stateless seed (spec §5.3),
    and with ``data.shift_factor`` > 0 (not in the official code) a box shift."""

    def __init__(self, data_config, flip_pairs, num_joints):
        self.sf = float(data_config.scale_factor)
        # The box centre moves by U(-f, f) x the (padded) box size in x and y (mmpose's
        # RandomBBoxTransform shift): a model trained on ground-truth boxes then
        # tolerates a detector's looser ones. 0 (the official recipe): no shift.
        self.shift = float(data_config.shift_factor)
        self.pixel_std = float(data_config.pixel_std)
        self.rf = float(data_config.rotation_factor)
        self.rot_prob = float(data_config.rotation_prob)
        # A set without flip pairs is not mirrored (`prtr_tf.data.keypoint_sets.flip_pairs_of`).
        self.flip = bool(data_config.flip) and flip_pairs is not None
        self.perm = tf.constant(flip_permutation(num_joints, flip_pairs or ()), tf.int32)

    def __call__(self, seed, center, scale, joints, image_width):
        s0, s1, s2, s3 = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
        if self.shift > 0:  # its own stream: the other draws stay those of shift 0
            s4 = tf.random.experimental.stateless_fold_in(seed, 4)
            center = center + tf.random.stateless_uniform(
                [2], s4, -self.shift, self.shift) * tf.cast(scale, tf.float32) * self.pixel_std
        # HRNet JointsDataset (COCO and MPII alike): s * clip(N(0,1) sf + 1, 1 - sf, 1 + sf).
        factor = tf.clip_by_value(
            tf.random.stateless_normal([], s0) * self.sf + 1, 1 - self.sf, 1 + self.sf)
        scale = scale * factor
        rot = tf.clip_by_value(tf.random.stateless_normal([], s2) * self.rf,
                               -2 * self.rf, 2 * self.rf)
        rot = tf.where(tf.random.stateless_uniform([], s1) <= self.rot_prob, rot, 0.0)
        if self.flip:
            flipped = tf.random.stateless_uniform([], s3) <= 0.5
        else:
            flipped = tf.constant(False)
        # HRNet fliplr_joints: x <- w - 1 - x, swap pairs, joints *= vis; c_x <- w - 1 - c_x.
        w1 = tf.cast(image_width, tf.float32) - 1.0
        mirrored = tf.gather(tf.stack([w1 - joints[:, 0], joints[:, 1], joints[:, 2]], 1),
                             self.perm)
        mirrored = mirrored * mirrored[:, 2:3]
        joints = tf.where(flipped, mirrored, joints)
        center = tf.where(flipped, tf.stack([w1 - center[0], center[1]]), center)
        return center, scale, rot, flipped, joints


class Cropper:
    """RGB uint8 image + box (center, scale) -> normalised model input crop, in-graph.

    The affine warp of spec §5.2, then the colour order and normalisation of §5.4.
    Shared by the training/eval pipeline and the two-stage inference pipeline.
    """

    def __init__(self, config):
        data = config.data
        self.size_hw = tuple(int(v) for v in config.model.image_size)
        self.pixel_std = float(data.pixel_std)
        self.color_rgb = bool(data.color_rgb)
        self.gain, self.offset = normalization(data.mean, data.std)

    def __call__(self, image, center, scale, rot=0.0, flipped=False):
        """Returns (crop (H, W, 3) float32, the (2, 3) image -> crop matrix)."""
        matrix = affine_matrix_tf(center, scale, rot, self.size_hw, pixel_std=self.pixel_std)
        crop = warp_affine_tf(tf.cast(image, tf.float32), matrix, self.size_hw, flip=flipped)
        if not self.color_rgb:
            crop = tf.reverse(crop, axis=[-1])  # decoders give RGB; ResNet configs feed BGR
        # Round as cv2 warps uint8 to uint8 (bilinear keeps values in [0, 255]), then
        # (x / 255 - mean) / std as one multiply-add.
        crop = tf.round(crop) * self.gain - self.offset
        return crop, matrix


class _SampleLoader:
    """Builds one element from one record (decode, augment, warp, normalise, targets)."""

    def __init__(self, config, training):
        data = config.data
        self.size_hw = tuple(int(v) for v in config.model.image_size)
        self.num_joints = int(config.model.num_joints)
        self.training = training
        self.crop = Cropper(config)
        self.augment = _Augmenter(data, flip_pairs_of(config, bool(data.flip)),
                                  self.num_joints)

    def __call__(self, rec):
        image = decode_image(rec["image_path"])
        center, scale, joints = rec["center"], rec["scale"], rec["joints"]
        if self.training:
            seed = tf.stack([rec["seed"], rec["index"]])
            center, scale, rot, flipped, joints = self.augment(
                seed, center, scale, joints, tf.shape(image)[1])
        else:
            rot, flipped = tf.constant(0.0), tf.constant(False)
        crop, matrix = self.crop(image, center, scale, rot, flipped)
        joints = transform_joints_tf(joints, matrix)
        height, width = self.size_hw
        return dict(
            image=tf.ensure_shape(crop, (height, width, 3)),
            target=joints[:, :2] / tf.constant([width, height], tf.float32),
            target_weight=joints[:, 2],
            center=tf.cast(center, tf.float32),
            scale=tf.cast(scale, tf.float32),
            rotation=tf.cast(rot, tf.float32),
            image_id=rec["image_id"],
            box_score=rec["box_score"],
            flipped=tf.cast(flipped, tf.float32),
            index=rec["index"],
            _ok=tf.constant(True),
            _path=rec["image_path"],
            _ann_id=rec["ann_id"],
        )

    def placeholder(self, rec):
        """An element of the same structure marking a failed load (``_ok`` False)."""
        height, width = self.size_hw
        j = self.num_joints
        return dict(
            image=tf.zeros((height, width, 3)), target=tf.zeros((j, 2)),
            target_weight=tf.zeros((j,)), center=tf.zeros((2,)), scale=tf.zeros((2,)),
            rotation=tf.constant(0.0), image_id=rec["image_id"], box_score=rec["box_score"],
            flipped=tf.constant(0.0), index=rec["index"], _ok=tf.constant(False),
            _path=rec["image_path"], _ann_id=rec["ann_id"])


def build_dataset(records, config, training, deterministic=False, seed=0, batch=None,
                  drop_remainder=False, skip_counter=None):
    """A tf.data.Dataset of crops (see the module docstring for the element spec).

    Args:
      records: list of records from `prtr_tf.data.coco` / `prtr_tf.data.mpii`.
      config: a full config (``config.data``, ``config.model.image_size`` (H, W),
        ``config.model.num_joints``).
      training: shuffle every epoch and augment (scale, rotation, flip); otherwise
        records in order, no augmentation (flip test is the model side's job).
      deterministic: same elements in the same order on every run for a given ``seed``
        (seeded shuffle and augmentation, ordered parallelism). Training epochs still
        differ from each other. Evaluation datasets are always ordered.
      seed: seed of the shuffle and the augmentation when ``deterministic``.
      batch: if given, batch elements (``drop_remainder`` as in ``Dataset.batch``).
      skip_counter: a `SkipCounter` for bad image files; a new one if None. It is also
        available as ``dataset.skip_counter``.

    Loading is parallel (``config.data.num_parallel_calls``, -1 = AUTOTUNE) and the
    result is prefetched.
    """
    data = config.data
    columns = records_to_columns(records, int(config.model.num_joints))
    counter = skip_counter if skip_counter is not None else SkipCounter()
    ds = load_robustly(columns, _SampleLoader(config, training), training, deterministic, seed,
                       data.num_parallel_calls, bool(data.skip_bad_samples), counter,
                       "_ann_id", "annotation id")
    if batch:
        ds = ds.batch(int(batch), drop_remainder=drop_remainder)
    return finish(ds, deterministic or not training, counter)


def build_eval_dataset(records, config, batch=None, skip_counter=None):
    """`build_dataset` for evaluation/test records: ordered, no augmentation."""
    return build_dataset(records, config, training=False, batch=batch,
                         skip_counter=skip_counter)
