"""The DETR-style set-prediction skeleton shared by the DETR person detector and the
two-stage keypoint Transformer (spec §1-§2).

backbone C5 (B, h, w, C) -> 1x1 conv to d -> S = h*w tokens with the sine encoding
(masked where padded) -> encoder-decoder over learned queries -> a class head
(K+1, the no-object / background class last) and a sigmoid MLP head (2 coordinates
or 4 box values) on every decoder layer.

The sublayers keep the official names (``backbone``, ``input_proj``, ``query_embed``,
``transformer``, ``class_embed`` and the coordinate head's, ``kpt_embed`` or
``bbox_embed``): checkpoint import and saved weights files address them so.
"""
import keras
import tensorflow as tf

from prtr_tf.nn.backbones import build_backbone
from prtr_tf.nn.heads import MLP, query_embedding, torch_linear_init
from prtr_tf.nn.layers import conv, dense
from prtr_tf.nn.position_encoding import sine_position_encoding
from prtr_tf.nn.transformer import Transformer


class SetPredictor(keras.Model):
    """Backbone, input projection, queries, Transformer and the two heads of a
    DETR-style model of ``config`` (``backbone``, ``hidden_dim``, ``nheads``,
    ``enc_layers``, ``dec_layers``, ``dim_feedforward``, ``dropout``,
    ``num_queries``, ``frozen_backbone``): ``num_classes`` + 1 logits and ``coord_dim``
    sigmoid values per query from the head named ``coord_head``."""

    def __init__(self, config, num_classes, coord_dim, coord_head, **kw):
        super().__init__(**kw)
        self.config = config
        d = config.hidden_dim
        self.backbone = build_backbone(config.backbone, frozen=config.get("frozen_backbone"))
        self.input_proj = conv(d, 1, padding=0, use_bias=True, torch_name="input_proj")
        self.query_embed = query_embedding(config.num_queries, d)
        self.transformer = Transformer(d, config.nheads, config.enc_layers, config.dec_layers,
                                       config.dim_feedforward, config.dropout)
        self.class_embed = dense(num_classes + 1, "class_embed",
                                 kernel_initializer=torch_linear_init())
        self.coord_head = coord_head
        setattr(self, coord_head, MLP(d, coord_dim, 3, coord_head, name=coord_head))

    def build(self, input_shape):
        # Sublayers build themselves on their first call (`prtr_tf.nn.layers.Composite`).
        self.built = True

    def predict_sets(self, features, mask=None, pos_in_tokens=False, training=False):
        """Transformer and heads on backbone features (B, h, w, C), with their padding
        mask (B, h, w), True on padding (None: none). ``pos_in_tokens``: also add the
        positional encoding to the tokens before the encoder. Returns (logits, coords)
        of every decoder layer, (L, B, Q, K+1) and (L, B, Q, coord_dim), float32 also
        under a bfloat16 policy (`prtr_tf.nn.precision`)."""
        src = self.input_proj(features)
        shape = tf.shape(src)
        b, h, w, d = shape[0], shape[1], shape[2], src.shape[-1]
        if mask is None:
            pos = sine_position_encoding(tf.stack([b, h, w]), d // 2, dtype=src.dtype)
            key_padding_mask = None
        else:
            mask = tf.cast(mask, tf.bool)
            pos = sine_position_encoding(mask, d // 2, dtype=src.dtype)
            key_padding_mask = tf.reshape(mask, [b, h * w])
        tokens = tf.reshape(src, [b, h * w, d])
        pos = tf.reshape(pos, [b, h * w, d])
        if pos_in_tokens:
            tokens = tokens + pos
        query = self.query_embed.embeddings
        hs, _ = self.transformer(tokens, pos, tf.cast(query, src.dtype),
                                 key_padding_mask=key_padding_mask, training=training)
        logits = tf.cast(self.class_embed(hs), tf.float32)
        coords = tf.sigmoid(tf.cast(getattr(self, self.coord_head)(hs), tf.float32))
        return logits, coords


def layer_outputs(logits, coords, coord_key):
    """The output dict: the last decoder layer's ``pred_logits`` / ``pred_<coord_key>``
    and the others' ``aux_pred_*``."""
    return {"pred_logits": logits[-1], f"pred_{coord_key}": coords[-1],
            "aux_pred_logits": logits[:-1], f"aux_pred_{coord_key}": coords[:-1]}
