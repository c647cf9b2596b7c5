"""The two-stage keypoint-detection Transformer (official ``PoseTransformer``, spec §1).

crop (B, H, W, 3) -> backbone C5 (B, h, w, C) -> 1x1 conv to d -> S = h*w tokens
-> encoder-decoder -> class head (J+1, background last) and sigmoid coordinate
head on every decoder layer.
"""
import tensorflow as tf

from prtr_tf.nn.set_predictor import SetPredictor, layer_outputs


class PoseTransformer(SetPredictor):
    """Keypoint-detection Transformer of two-stage PRTR.

    ``call(images)`` takes normalised crops (B, H, W, 3) and returns a dict:
      pred_logits (B, Q, J+1), pred_coords (B, Q, 2) from the last decoder layer,
      aux_pred_logits (L-1, B, Q, J+1), aux_pred_coords (L-1, B, Q, 2) from the others.
    Coordinates are (x, y) normalised by the crop size.
    """

    def __init__(self, config, **kw):
        kw.setdefault("name", "pose_transformer")
        super().__init__(config, config.num_joints, 2, "kpt_embed", **kw)
        self.num_joints = config.num_joints
        self.image_size = tuple(config.image_size)
        # Not in the paper (default False): also add the positional encoding to the tokens
        # once before the encoder, so that attention values carry where a token is (DETR
        # adds it to queries and keys only). configs/demo_keypoints.py uses it: the tiny
        # model trained from scratch leaves the mean pose sooner (docs/demo.md).
        self.pos_in_tokens = bool(config.get("pos_in_tokens", False))

    def initialize(self):
        """Creates the weights by running one zero crop of the configured size."""
        self(tf.zeros((1, *self.image_size, 3), self.compute_dtype), training=False)
        return self

    def call(self, images, training=False):
        return self.decode(self.backbone(images, training=training), training=training)

    def decode(self, features, training=False):
        """Transformer and heads on backbone features (B, h, w, C)."""
        logits, coords = self.predict_sets(features, pos_in_tokens=self.pos_in_tokens,
                                           training=training)
        return layer_outputs(logits, coords, "coords")


def build_model(model_config):
    """Builds (and initialises) the keypoint model described by ``config.model``."""
    return PoseTransformer(model_config).initialize()
