"""DETR's resizing, in-graph (DETR ``datasets/transforms.py``): the detector's input
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
