"""Positional encodings, level masks and valid ratios of the deformable models
(``deformable-spec.md`` §1.2, §1.3, §2.4), channels-last.

Two sine variants (both ``normalize=True``, scale 2π, eps 1e-6, 128 features per axis,
[sin, cos] interleaved, channels 0..127 from y, 128..255 from x, float32):

- deformable PRTR (``positional_encoding.py`` of PRTR): every pixel valid, position
  ``k + 1``, ``offset=0.0``: ``y = (r + 1) / (H + 1e-6) * 2π``;
- Deformable DETR (``models/position_encoding.py``): cumulative count of the valid
  pixels, ``offset=-0.5``: ``y = (cumsum - 0.5) / (n_valid + 1e-6) * 2π``.

New axes are made with ``tf.expand_dims`` and the sin/cos interleave with
reshape/unstack (no ellipsis / new-axis strided slices), so that the encodings stay
TFLite-builtin when they are computed in the graph (the detector's masks).
"""
import math

import keras
import numpy as np
import tensorflow as tf

PRTR_OFFSET = 0.0
DDETR_OFFSET = -0.5


def sine_encoding(mask_or_shape, offset=PRTR_OFFSET, num_pos_feats=128, temperature=10000.0,
                  scale=2 * math.pi, eps=1e-6):
    """Sine encoding (B, H, W, 2 * num_pos_feats), float32.

    Args:
      mask_or_shape: (B, H, W) bool tensor, True on PADDED pixels (Deformable DETR), or a
        (B, H, W) tuple / list for an unpadded batch (deformable PRTR: the mask is
        ignored, every pixel is valid).
      offset: 0.0 for PRTR, -0.5 for Deformable DETR (added to the cumulative count).
    """
    if isinstance(mask_or_shape, (tuple, list)):
        not_mask = tf.ones(mask_or_shape, tf.float32)
    else:
        not_mask = 1.0 - tf.cast(mask_or_shape, tf.float32)
    y_embed = tf.cumsum(not_mask, axis=1)
    x_embed = tf.cumsum(not_mask, axis=2)
    y_total = tf.reduce_max(y_embed, axis=1, keepdims=True)   # = the last row's count
    x_total = tf.reduce_max(x_embed, axis=2, keepdims=True)
    y_embed = (y_embed + offset) / (y_total + eps) * scale
    x_embed = (x_embed + offset) / (x_total + eps) * scale
    i = np.arange(num_pos_feats, dtype=np.float64)
    dim_t = tf.constant((temperature ** (2.0 * np.floor(i / 2.0) / num_pos_feats))
                        .astype(np.float32))

    def interleave(p):
        p = tf.expand_dims(p, -1) / dim_t                    # (B, H, W, F)
        shape = tf.shape(p)
        pairs = tf.reshape(p, tf.concat([shape[:-1], [num_pos_feats // 2, 2]], 0))
        even, odd = tf.unstack(pairs, axis=-1)
        return tf.reshape(tf.stack([tf.sin(even), tf.cos(odd)], axis=-1), shape)

    return tf.concat([interleave(y_embed), interleave(x_embed)], axis=-1)


def nearest_level_mask(mask, size_hw):
    """torch ``F.interpolate(mask[None].float(), size).bool()`` (mode 'nearest', the
    legacy non-half-pixel rule): ``src = min(floor(dst * float32(in / out)), in - 1)``.
    mask (B, H, W) bool -> (B, h, w) bool."""
    mask = tf.convert_to_tensor(mask)
    out_h, out_w = (int(s) for s in size_hw)
    in_h, in_w = mask.shape[1], mask.shape[2]
    if in_h is None or in_w is None:
        shape = tf.shape(mask)
        in_h, in_w = shape[1], shape[2]

    def index(n_out, n_in):
        if isinstance(n_in, int):
            s = np.float32(n_in) / np.float32(n_out)
            return tf.constant(np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * s)
                                          .astype(np.int64), n_in - 1).astype(np.int32))
        s = tf.cast(n_in, tf.float32) / float(n_out)
        return tf.minimum(tf.cast(tf.floor(tf.range(n_out, dtype=tf.float32) * s), tf.int32),
                          n_in - 1)

    out = tf.gather(tf.cast(mask, tf.int32), index(out_h, in_h), axis=1)
    out = tf.gather(out, index(out_w, in_w), axis=2)
    return tf.cast(out, tf.bool)


def valid_ratio(mask):
    """(B, 2) in (w, h) order: valid columns of the first row / W, valid rows of the
    first column / H (the official ``get_valid_ratio``), float32."""
    not_mask = 1.0 - tf.cast(mask, tf.float32)
    h = tf.cast(tf.shape(mask)[1], tf.float32)
    w = tf.cast(tf.shape(mask)[2], tf.float32)
    valid_h = tf.reduce_sum(tf.gather(not_mask, 0, axis=2), axis=1)
    valid_w = tf.reduce_sum(tf.gather(not_mask, 0, axis=1), axis=1)
    return tf.stack([valid_w / w, valid_h / h], axis=-1)


class LevelEmbedding(keras.layers.Layer):
    """The (L, d) parameter ``transformer.level_embed`` (init N(0, 1))."""

    def __init__(self, num_levels, d_model, official_name=None, **kw):
        super().__init__(**kw)
        self.num_levels, self.d_model = num_levels, d_model
        self.official_name = official_name
        self.embeddings = self.add_weight(
            name="embeddings", shape=(num_levels, d_model),
            initializer=keras.initializers.RandomNormal(0.0, 1.0))
        self.built = True

    def vector(self, level):
        """Level ``level``'s embedding as (1, 1, d)."""
        return tf.reshape(tf.gather(self.embeddings, level), [1, 1, self.d_model])

    def call(self, level):
        return self.vector(level)
