"""The two-stage keypoint-detection Transformer (official ``PoseTransformer``, spec §1).

crop (B, H, W, 3) -> backbone C5 (B, h, w, C) -> 1x1 conv to d -> S = h*w tokens
-> encoder-decoder -> class head (J+1, background last) and sigmoid coordinate
head on every decoder layer.
"""
import keras
import tensorflow as tf

from prtr_tf.nn.backbones import build_backbone
from prtr_tf.nn.layers import conv, dense
from prtr_tf.nn.heads import MLP, query_embedding, torch_linear_init
from prtr_tf.nn.position_encoding import sine_position_encoding
from prtr_tf.nn.transformer import Transformer


class PoseTransformer(keras.Model):
    """Keypoint-detection Transformer of two-stage PRTR.

    ``call(images)`` takes normalised crops (B, H, W, 3) and returns a dict:
      pred_logits (B, Q, J+1), pred_coords (B, Q, 2) from the last decoder layer,
      aux_pred_logits (L-1, B, Q, J+1), aux_pred_coords (L-1, B, Q, 2) from the others.
    Coordinates are (x, y) normalised by the crop size.
    """

    def __init__(self, config, **kw):
        kw.setdefault("name", "pose_transformer")
        super().__init__(**kw)
        self.config = config
        d = config.hidden_dim
        self.num_joints = config.num_joints
        self.image_size = tuple(config.image_size)
        # Not in the paper (default False): also add the positional encoding to the tokens
        # once before the encoder, so that attention values carry where a token is (DETR
        # adds it to queries and keys only). configs/demo_keypoints.py uses it: the tiny
        # model trained from scratch leaves the mean pose sooner (README "The demo").
        self.pos_in_tokens = bool(config.get("pos_in_tokens", False))
        self.backbone = build_backbone(config.backbone, frozen=config.get("frozen_backbone"))
        self.input_proj = conv(d, 1, padding=0, use_bias=True, torch_name="input_proj")
        self.query_embed = query_embedding(config.num_queries, d)
        self.transformer = Transformer(d, config.nheads, config.enc_layers, config.dec_layers,
                                       config.dim_feedforward, config.dropout)
        self.class_embed = dense(config.num_joints + 1, "class_embed",
                                 kernel_initializer=torch_linear_init())
        self.kpt_embed = MLP(d, 2, 3, "kpt_embed", name="kpt_embed")

    def build(self, input_shape):
        # Sublayers build themselves on their first call (`prtr_tf.nn.layers.Composite`).
        self.built = True

    def initialize(self):
        """Creates the weights by running one zero crop of the configured size."""
        self(tf.zeros((1, *self.image_size, 3), self.compute_dtype), training=False)
        return self

    def call(self, images, training=False):
        return self.decode(self.backbone(images, training=training), training=training)

    def decode(self, features, training=False):
        """Transformer and heads on backbone features (B, h, w, C)."""
        src = self.input_proj(features)
        shape = tf.shape(src)
        b, h, w, d = shape[0], shape[1], shape[2], src.shape[-1]
        pos = sine_position_encoding(tf.stack([b, h, w]), d // 2, dtype=src.dtype)
        tokens = tf.reshape(src, [b, h * w, d])
        pos = tf.reshape(pos, [b, h * w, d])
        if self.pos_in_tokens:
            tokens = tokens + pos
        query = self.query_embed.embeddings
        hs, _ = self.transformer(tokens, pos, tf.cast(query, src.dtype), training=training)
        # float32 outputs also under a bfloat16 policy (prtr_tf.nn.precision); a no-op
        # in float32.
        logits = tf.cast(self.class_embed(hs), tf.float32)
        coords = tf.sigmoid(tf.cast(self.kpt_embed(hs), tf.float32))
        return {
            "pred_logits": logits[-1],
            "pred_coords": coords[-1],
            "aux_pred_logits": logits[:-1],
            "aux_pred_coords": coords[:-1],
        }


def build_model(model_config):
    """Builds (and initialises) the keypoint model described by ``config.model``."""
    return PoseTransformer(model_config).initialize()
