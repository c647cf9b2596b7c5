"""DETR's sine positional encoding (spec §2), channels-last.

With ``normalize=True`` positions are the cumulative count of valid pixels,
divided by the valid extent and scaled to (0, 2π]. Channels interleave
[sin, cos] pairs; the first half encodes y, the second half x.
"""
import math

import tensorflow as tf


def sine_position_encoding(mask_or_shape, num_pos_feats=128, temperature=10000.0,
                           normalize=True, scale=2 * math.pi, dtype=tf.float32):
    """Sine encoding for a feature map.

    Args:
      mask_or_shape: either a (B, h, w) bool/float tensor that is True/1 on PADDED
        positions (DETR's convention), or a (B, h, w) tuple-like shape for an
        unpadded batch (all positions valid).
    Returns:
      (B, h, w, 2 * num_pos_feats) tensor.
    """
    if isinstance(mask_or_shape, (tuple, list)) or (
            isinstance(mask_or_shape, tf.Tensor) and mask_or_shape.shape.rank == 1):
        not_mask = tf.ones(mask_or_shape, tf.float32)
    else:
        not_mask = 1.0 - tf.cast(mask_or_shape, tf.float32)
    y_embed = tf.cumsum(not_mask, axis=1)
    x_embed = tf.cumsum(not_mask, axis=2)
    if normalize:
        eps = 1e-6
        y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
        x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    i = tf.range(num_pos_feats, dtype=tf.float32)
    dim_t = temperature ** (2.0 * tf.math.floordiv(i, 2.0) / num_pos_feats)
    pos_x = x_embed[..., None] / dim_t
    pos_y = y_embed[..., None] / dim_t

    def interleave(p):
        s = tf.sin(p[..., 0::2])
        c = tf.cos(p[..., 1::2])
        shape = tf.concat([tf.shape(p)[:-1], [num_pos_feats]], 0)
        return tf.reshape(tf.stack([s, c], axis=-1), shape)

    return tf.cast(tf.concat([interleave(pos_y), interleave(pos_x)], axis=-1), dtype)
