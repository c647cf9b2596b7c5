"""DETR's post-norm encoder-decoder transformer (spec §1.2), channels-last.

Positional encodings are added to queries and keys at every layer, never to
values. The decoder returns every layer's output through one shared final
LayerNorm (``return_intermediate=True`` in DETR), stacked as (L, B, Q, d).
"""
import keras
import tensorflow as tf

from prtr_tf.nn.layers import Composite, dense, layer_norm, named


def attention(d_model, nheads, dropout, torch_name):
    """torch ``nn.MultiheadAttention`` equivalent (same parameters, 263,168 at d=256)."""
    layer = keras.layers.MultiHeadAttention(
        num_heads=nheads, key_dim=d_model // nheads, dropout=dropout,
        kernel_initializer="glorot_uniform")
    return named(layer, torch_name)


def _key_mask(key_padding_mask):
    """(B, S) True-on-padding -> Keras attention mask (B, 1, S), True = attend."""
    if key_padding_mask is None:
        return None
    return tf.logical_not(tf.cast(key_padding_mask, tf.bool))[:, None, :]


class EncoderLayer(Composite):

    def __init__(self, d_model, nheads, dim_feedforward, dropout, prefix, **kw):
        super().__init__(**kw)
        self.self_attn = attention(d_model, nheads, dropout, f"{prefix}.self_attn")
        self.linear1 = dense(dim_feedforward, f"{prefix}.linear1", activation="relu")
        self.linear2 = dense(d_model, f"{prefix}.linear2")
        self.norm1 = layer_norm(f"{prefix}.norm1")
        self.norm2 = layer_norm(f"{prefix}.norm2")
        self.dropout1 = keras.layers.Dropout(dropout)
        self.dropout2 = keras.layers.Dropout(dropout)
        self.dropout = keras.layers.Dropout(dropout)

    def call(self, src, pos, key_padding_mask=None, training=False):
        q = src + pos
        attn = self.self_attn(q, src, key=q, attention_mask=_key_mask(key_padding_mask),
                              training=training)
        src = self.norm1(src + self.dropout1(attn, training=training))
        ffn = self.linear2(self.dropout(self.linear1(src), training=training))
        return self.norm2(src + self.dropout2(ffn, training=training))


class DecoderLayer(Composite):

    def __init__(self, d_model, nheads, dim_feedforward, dropout, prefix, **kw):
        super().__init__(**kw)
        self.self_attn = attention(d_model, nheads, dropout, f"{prefix}.self_attn")
        self.multihead_attn = attention(d_model, nheads, dropout, f"{prefix}.multihead_attn")
        self.linear1 = dense(dim_feedforward, f"{prefix}.linear1", activation="relu")
        self.linear2 = dense(d_model, f"{prefix}.linear2")
        self.norm1 = layer_norm(f"{prefix}.norm1")
        self.norm2 = layer_norm(f"{prefix}.norm2")
        self.norm3 = layer_norm(f"{prefix}.norm3")
        self.dropout1 = keras.layers.Dropout(dropout)
        self.dropout2 = keras.layers.Dropout(dropout)
        self.dropout3 = keras.layers.Dropout(dropout)
        self.dropout = keras.layers.Dropout(dropout)

    def call(self, tgt, memory, pos, query_pos, memory_key_padding_mask=None, training=False):
        q = tgt + query_pos
        attn = self.self_attn(q, tgt, key=q, training=training)
        tgt = self.norm1(tgt + self.dropout1(attn, training=training))
        attn = self.multihead_attn(tgt + query_pos, memory, key=memory + pos,
                                   attention_mask=_key_mask(memory_key_padding_mask),
                                   training=training)
        tgt = self.norm2(tgt + self.dropout2(attn, training=training))
        ffn = self.linear2(self.dropout(self.linear1(tgt), training=training))
        return self.norm3(tgt + self.dropout3(ffn, training=training))


class Transformer(Composite):
    """Encoder-decoder; returns the decoder stack (L, B, Q, d) after the final LN."""

    def __init__(self, d_model=256, nheads=8, enc_layers=6, dec_layers=6, dim_feedforward=2048,
                 dropout=0.0, prefix="transformer", **kw):
        kw.setdefault("name", "transformer")
        super().__init__(**kw)
        self.d_model = d_model
        self.encoder_layers = [
            EncoderLayer(d_model, nheads, dim_feedforward, dropout,
                         f"{prefix}.encoder.layers.{i}", name=f"encoder_{i}")
            for i in range(enc_layers)]
        self.decoder_layers = [
            DecoderLayer(d_model, nheads, dim_feedforward, dropout,
                         f"{prefix}.decoder.layers.{i}", name=f"decoder_{i}")
            for i in range(dec_layers)]
        self.decoder_norm = layer_norm(f"{prefix}.decoder.norm")

    def call(self, src, pos, query_embed, key_padding_mask=None, training=False):
        """src, pos: (B, S, d) tokens; query_embed: (Q, d); key_padding_mask: (B, S) or None."""
        memory = src
        for layer in self.encoder_layers:
            memory = layer(memory, pos, key_padding_mask=key_padding_mask, training=training)
        batch = tf.shape(src)[0]
        query_pos = tf.tile(query_embed[None], [batch, 1, 1])
        tgt = tf.zeros_like(query_pos)
        outputs = []
        for layer in self.decoder_layers:
            tgt = layer(tgt, memory, pos, query_pos,
                        memory_key_padding_mask=key_padding_mask, training=training)
            outputs.append(self.decoder_norm(tgt))
        return tf.stack(outputs), memory
