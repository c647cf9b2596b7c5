"""The two-stage keypoint-detection Transformer (official ``PoseTransformer``, spec §1).

crop (B, H, W, 3) -> backbone C5 (B, h, w, C) -> 1x1 conv to d -> S = h*w tokens
-> encoder-decoder -> class head (J+1, background last) and sigmoid coordinate
head on every decoder layer.
"""
import keras
import tensorflow as tf

from prtr_tf.models.backbones import build_backbone
from prtr_tf.models.layers import conv, dense, named
from prtr_tf.models.position_encoding import sine_position_encoding
from prtr_tf.models.transformer import Transformer


def torch_linear_init():
    """torch.nn.Linear's default weight init, U(±1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def query_embedding(num_queries, d):
    """The learned queries (torch ``nn.Embedding``, N(0, 1) init), built."""
    layer = named(keras.layers.Embedding(
        num_queries, d, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0)),
        "query_embed")
    layer.build(None)
    return layer


class MLP(keras.layers.Layer):
    """DETR's MLP: Linear+ReLU layers, the last one linear."""

    def __init__(self, hidden_dim, output_dim, num_layers, torch_name, **kw):
        super().__init__(**kw)
        self.layers_ = [
            dense(hidden_dim if i < num_layers - 1 else output_dim, f"{torch_name}.layers.{i}",
                  kernel_initializer=torch_linear_init())
            for i in range(num_layers)]

    def call(self, x):
        for i, layer in enumerate(self.layers_):
            x = layer(x)
            if i < len(self.layers_) - 1:
                x = tf.nn.relu(x)
        return x


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
        self.backbone = build_backbone(config.backbone, frozen=config.get("frozen_backbone"))
        self.input_proj = conv(d, 1, padding=0, use_bias=True, torch_name="input_proj")
        self.query_embed = query_embedding(config.num_queries, d)
        self.transformer = Transformer(d, config.nheads, config.enc_layers, config.dec_layers,
                                       config.dim_feedforward, config.dropout)
        self.class_embed = dense(config.num_joints + 1, "class_embed",
                                 kernel_initializer=torch_linear_init())
        self.kpt_embed = MLP(d, 2, 3, "kpt_embed", name="kpt_embed")

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
        query = self.query_embed.embeddings
        hs, _ = self.transformer(tokens, pos, tf.cast(query, src.dtype), training=training)
        logits = self.class_embed(hs)
        coords = tf.sigmoid(self.kpt_embed(hs))
        return {
            "pred_logits": logits[-1],
            "pred_coords": coords[-1],
            "aux_pred_logits": logits[:-1],
            "aux_pred_coords": coords[:-1],
        }
