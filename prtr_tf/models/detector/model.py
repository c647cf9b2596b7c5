"""DETR, the person detector of PRTR (facebookresearch/detr; spec §1.2, §2, §8).

padded images (B, H, W, 3) + padding mask (B, H, W) -> ResNet C5 (B, h, w, C) and the
mask downsampled to (B, h, w) by torch-style nearest interpolation -> 1x1 conv to d
-> S = h*w tokens with the masked sine encoding -> encoder-decoder whose attention
ignores padded keys -> class head (K+1, no-object LAST) and a sigmoid box head
(cx, cy, w, h) on every decoder layer.

Boxes are normalised by each image's unpadded size (that is what DETR's targets
are); the network only outputs the sigmoid values, whatever the padding.
"""
import tensorflow as tf

from prtr_tf.models.detector.config import DETR_BACKBONES
from prtr_tf.nn.set_predictor import SetPredictor, layer_outputs


def downsample_mask(mask, size):
    """Padding mask (B, H, W) -> (B, h, w), as DETR does it.

    DETR: ``F.interpolate(m[None].float(), size=(h, w)).to(torch.bool)[0]``, torch's
    'nearest': source index = min(floor(dst * (in / out)), in - 1), computed in
    float32 exactly as torch does.
    """
    mask = tf.cast(mask, tf.bool)
    shape = tf.shape(mask)

    def source_index(out_size, in_size):
        scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
        index = tf.cast(tf.floor(tf.cast(tf.range(out_size), tf.float32) * scale), tf.int32)
        return tf.minimum(index, in_size - 1)

    mask = tf.gather(mask, source_index(size[0], shape[1]), axis=1)
    return tf.gather(mask, source_index(size[1], shape[2]), axis=2)


class DETR(SetPredictor):
    """DETR detector.

    ``call(images, mask=None)`` takes a zero-padded batch (B, H, W, 3) of normalised
    images and its padding mask (B, H, W), True/1 on padded pixels (None: no
    padding; pass it by keyword, ``model(images, mask=m)``), and returns a dict:
      pred_logits (B, Q, K+1) (no-object last), pred_boxes (B, Q, 4) sigmoid
      (cx, cy, w, h) from the last decoder layer; aux_pred_logits (L-1, B, Q, K+1),
      aux_pred_boxes (L-1, B, Q, 4) from the others.
    """

    def __init__(self, config, **kw):
        kw.setdefault("name", "detr")
        if config.backbone not in DETR_BACKBONES:
            raise ValueError(f"unknown DETR backbone {config.backbone!r}; choose one of "
                             f"{DETR_BACKBONES}")
        super().__init__(config, config.num_classes, 4, "bbox_embed", **kw)
        self.num_classes = config.num_classes
        # ``mask`` is the padding mask. Keras treats a ``mask`` argument as a Keras mask:
        # accept it without the "destroys the mask" warning and attach none to outputs.
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None

    def initialize(self, size=(64, 64)):
        """Creates the weights by running one small zero image (any size works)."""
        self(tf.zeros((1, *size, 3), self.compute_dtype), training=False)
        return self

    def call(self, images, mask=None, training=False):
        features, feature_mask = self.extract(images, mask, training=training)
        return self.decode(features, feature_mask, training=training)

    def extract(self, images, mask=None, training=False):
        """Backbone C5 (B, h, w, C) and the padding mask at its size (B, h, w) or None."""
        features = self.backbone(images, training=training)
        if mask is None:
            return features, None
        return features, downsample_mask(mask, tf.shape(features)[1:3])

    def decode(self, features, mask=None, training=False):
        """Transformer and heads on backbone features (B, h, w, C) with their mask
        (B, h, w), True on padding (None: no padding)."""
        logits, boxes = self.predict_sets(features, mask, training=training)
        return layer_outputs(logits, boxes, "boxes")


def build_detector(model_config):
    """Builds (and initialises) the DETR described by a detector ``config.model``."""
    return DETR(model_config).initialize()
