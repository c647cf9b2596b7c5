"""DETR's resizing (and, for detectors with static spatial shapes, the fixed-size
padding: `detector_pad_size`, `pad_with_mask`), in-graph (DETR ``datasets/transforms.py``): the detector's input
preprocessing at evaluation and serving (`resize`: the shortest side to
``data.test_size``, the longest <= ``data.max_size``), also used by the training
augmentation (`prtr_tf.models.detector.augment`).

Resizing is bilinear with antialiasing, rounded to uint8 values as PIL does; sizes are
DETR's ``get_size_with_aspect_ratio`` (int truncation and round-half-even included).
"""
import tensorflow as tf


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


def detector_pad_size(data_config, multiple=32):
    """(H, W) every resized image fits into (shortest side ``test_size``, longest <=
    ``max_size``): ``data.pad_size`` when set (checked to hold ``max_size`` both ways),
    else ``max_size`` x ``max_size`` up to a multiple of ``data.pad_multiple`` (or
    ``multiple``). For detectors whose spatial shapes must be static per trace."""
    max_size = int(data_config.max_size)
    if data_config.get("pad_size") is not None:
        pad_h, pad_w = (int(v) for v in data_config.pad_size)
        if min(pad_h, pad_w) < max_size:
            raise ValueError(f"data.pad_size={(pad_h, pad_w)} cannot hold an image resized "
                             f"to a longest side of data.max_size={max_size}")
        return pad_h, pad_w
    m = int(data_config.get("pad_multiple") or multiple)
    side = -(-max_size // m) * m
    return side, side


def pad_with_mask(image, pad_hw):
    """float (h, w, C) -> (image zero-padded bottom/right to the static ``pad_hw`` (H, W),
    mask (H, W) bool, True on the padding): the detector pipeline's fixed-size padding
    (`prtr_tf.models.detector.data.batch_detection` with ``data.pad_size``) of one
    image; h <= H and w <= W."""
    pad_h, pad_w = pad_hw
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    padded = tf.pad(image, [[0, pad_h - h], [0, pad_w - w], [0, 0]])
    padded = tf.ensure_shape(padded, [pad_h, pad_w, image.shape[-1]])
    mask = tf.logical_or(tf.range(pad_h)[:, None] >= h, tf.range(pad_w)[None, :] >= w)
    return padded, mask
