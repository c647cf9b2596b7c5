"""DETR's training augmentation, in-graph (DETR ``datasets/transforms.py``).

image: float32 (h, w, 3) in [0, 255]; boxes: float32 (n, 4) xyxy pixels; keypoints
(n, J, 3) [x, y, v] in continuous pixel coordinates follow every geometric step.

* the geometric steps, each a function of image and boxes: `hflip`, `resize` (with
  its output size `resize_size`, and `resize_to` a given size),
  `resize_with_keypoints`, `crop`;
* training (`DetectionAugmenter`, from a stateless seed, DETR's
  ``make_coco_transforms``): a horizontal flip with probability ``data.flip_prob``,
  then with probability ``data.crop_prob`` the crop branch: a random resize of the
  shortest side to one of ``data.crop_resize_scales`` (no max size), a random crop
  of width and height in [crop_min_size, min(side, crop_max_size)] at a random
  position (boxes clipped to the crop, boxes of zero width or height dropped) and a
  random resize as in the other branch; otherwise a random resize of the shortest
  side to one of ``data.scales`` (longest side <= ``data.max_size``);
* evaluation: `prtr_tf.models.detector.resize` (the inference preprocessing, which
  the resizing steps here share).
"""
import tensorflow as tf

from prtr_tf.models.detector.resize import resize_size, resize_to


def hflip(image, boxes):
    """Mirrors image and boxes: x0' = w - x1, x1' = w - x0."""
    width = tf.cast(tf.shape(image)[1], boxes.dtype)
    x0, y0, x1, y1 = tf.unstack(boxes, 4, axis=-1)
    return tf.reverse(image, axis=[1]), tf.stack([width - x1, y0, width - x0, y1], axis=-1)


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
    get v = 0, and the rows of dropped boxes are dropped. Reads the fields scales,
    max_size, flip_prob, crop_prob, crop_resize_scales, crop_min_size and
    crop_max_size of ``data_config`` (`prtr_tf.models.detector.config.detector`); a
    probability of 0 leaves its step out of the graph.
    """

    def __init__(self, data_config, flip_index=None):
        self.scales = [int(s) for s in data_config.scales]
        self.max_size = int(data_config.max_size)
        self.flip_prob = float(data_config.flip_prob)
        self.crop_prob = float(data_config.crop_prob)
        self.flip = self.flip_prob > 0.0
        self.crop = self.crop_prob > 0.0
        self.crop_min = int(data_config.crop_min_size)
        self.crop_max = int(data_config.crop_max_size)
        self.pre_crop_scales = [int(s) for s in data_config.crop_resize_scales]
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
