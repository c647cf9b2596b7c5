"""The deformable encoder-decoder transformer (Deformable DETR's plain
``DeformableTransformer``, which deformable PRTR copies; ``deformable-spec.md`` §1.3-1.5,
§3, §4), channels-last.

One block serves both models; what differs is configuration:

=====================  =========================  ==============================
                       deformable PRTR (§1)        Deformable DETR (§3)
=====================  =========================  ==============================
``dim_feedforward``    2048                       1024
``dropout``            0.0                        0.1
masks                  None (all valid)           per-level padding masks
positional encoding    ``sine_encoding(shape)``   ``sine_encoding(mask, -0.5)``
queries                100                        300
=====================  =========================  ==============================

(positional encodings: `prtr_tf.nn.deformable_position`.)

Encoder layer (post-norm): ``src = norm1(src + MSDeformAttn(src + lvl_pos, ref, src))``,
``src = norm2(src + linear2(relu(linear1(src))))``; no final LayerNorm.
Decoder layer (note the official norm names): ``tgt = norm2(tgt + MHA(tgt + qpos,
tgt + qpos, tgt))``, ``tgt = norm1(tgt + MSDeformAttn(tgt + qpos, ref, memory))``,
``tgt = norm3(tgt + FFN(tgt))``; no final LayerNorm, every layer's output is returned.
Decoder reference points ``sigmoid(reference_points(query_pos))``, the same for every
layer (no box refinement, no two-stage).

`InputProjection` is the official ``input_proj`` (shared by both models).

Every layer holding official tensors carries ``torch_name`` (see
`prtr_tf.nn.layers.named`); the level embedding carries ``official_name``
(``transformer.level_embed`` is a bare parameter, not a module). `official_mapping`
lists every official tensor of a (built) model with its Keras variable and layout
change; `load_official` copies the ``transformer.*`` entries of a state_dict.
"""
import keras
import numpy as np
import tensorflow as tf

from prtr_tf.nn.deformable_position import LevelEmbedding, valid_ratio
from prtr_tf.nn.layers import Composite, TorchConv2D, layer_norm, named
from prtr_tf.nn.ms_deform_attn import MSDeformAttn, static_shapes, level_start_index


def _torch_linear(units, torch_name, fan_in, activation=None):
    """Linear with xavier-uniform weight (the transformer's ``_reset_parameters``) and
    torch's default bias init U(±1/sqrt(fan_in)) (biases are not reset there)."""
    bound = 1.0 / float(np.sqrt(fan_in))
    return named(keras.layers.Dense(
        units, activation=activation, kernel_initializer="glorot_uniform",
        bias_initializer=keras.initializers.RandomUniform(-bound, bound)), torch_name)


def _mha(d_model, n_heads, dropout, torch_name):
    """torch ``nn.MultiheadAttention`` (packed in_proj; imported by
    `prtr_tf.nn.torch_import`), xavier-uniform weights, zero biases as torch."""
    return named(keras.layers.MultiHeadAttention(
        num_heads=n_heads, key_dim=d_model // n_heads, dropout=dropout,
        kernel_initializer="glorot_uniform"), torch_name)


class DeformableEncoderLayer(Composite):
    """``DeformableTransformerEncoderLayer`` (post-norm)."""

    def __init__(self, d_model=256, d_ffn=1024, dropout=0.1, n_levels=4, n_heads=8,
                 n_points=4, prefix="transformer.encoder.layers.0", **kw):
        super().__init__(**kw)
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points,
                                      torch_name=f"{prefix}.self_attn", name="self_attn")
        self.norm1 = layer_norm(f"{prefix}.norm1")
        self.linear1 = _torch_linear(d_ffn, f"{prefix}.linear1", d_model, activation="relu")
        self.linear2 = _torch_linear(d_model, f"{prefix}.linear2", d_ffn)
        self.norm2 = layer_norm(f"{prefix}.norm2")
        self.dropout1 = keras.layers.Dropout(dropout)
        self.dropout2 = keras.layers.Dropout(dropout)
        self.dropout3 = keras.layers.Dropout(dropout)

    def call(self, src, pos, reference_points, spatial_shapes, padding_mask=None,
             training=False):
        src2 = self.self_attn(src + pos, reference_points, src, input_spatial_shapes=spatial_shapes,
                              input_padding_mask=padding_mask, training=training)
        src = self.norm1(src + self.dropout1(src2, training=training))
        ffn = self.linear2(self.dropout2(self.linear1(src), training=training))
        return self.norm2(src + self.dropout3(ffn, training=training))


class DeformableDecoderLayer(Composite):
    """``DeformableTransformerDecoderLayer``: self-attention -> norm2, deformable
    cross-attention -> norm1, FFN -> norm3 (the official names)."""

    def __init__(self, d_model=256, d_ffn=1024, dropout=0.1, n_levels=4, n_heads=8,
                 n_points=4, prefix="transformer.decoder.layers.0", **kw):
        super().__init__(**kw)
        self.cross_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points,
                                       torch_name=f"{prefix}.cross_attn", name="cross_attn")
        self.norm1 = layer_norm(f"{prefix}.norm1")
        self.self_attn = _mha(d_model, n_heads, dropout, f"{prefix}.self_attn")
        self.norm2 = layer_norm(f"{prefix}.norm2")
        self.linear1 = _torch_linear(d_ffn, f"{prefix}.linear1", d_model, activation="relu")
        self.linear2 = _torch_linear(d_model, f"{prefix}.linear2", d_ffn)
        self.norm3 = layer_norm(f"{prefix}.norm3")
        self.dropout1 = keras.layers.Dropout(dropout)
        self.dropout2 = keras.layers.Dropout(dropout)
        self.dropout3 = keras.layers.Dropout(dropout)
        self.dropout4 = keras.layers.Dropout(dropout)

    def self_attention(self, tgt, query_pos, training=False):
        """The first block: ``norm2(tgt + MHA(q = k = tgt + query_pos, v = tgt))``."""
        q = tgt + query_pos
        tgt2 = self.self_attn(q, tgt, key=q, training=training)
        return self.norm2(tgt + self.dropout2(tgt2, training=training))

    def call(self, tgt, query_pos, reference_points, memory, spatial_shapes,
             padding_mask=None, training=False):
        tgt = self.self_attention(tgt, query_pos, training=training)
        tgt2 = self.cross_attn(tgt + query_pos, reference_points, memory,
                               input_spatial_shapes=spatial_shapes,
                               input_padding_mask=padding_mask, training=training)
        tgt = self.norm1(tgt + self.dropout1(tgt2, training=training))
        ffn = self.linear2(self.dropout3(self.linear1(tgt), training=training))
        return self.norm3(tgt + self.dropout4(ffn, training=training))


def encoder_reference_points(spatial_shapes, valid_ratios=None):
    """``DeformableTransformerEncoder.get_reference_points``: (B, S, L, 2) (x, y).

    Each token's own pixel centre ``((j + 0.5) / (vr_w W_l), (i + 0.5) / (vr_h H_l))``,
    then multiplied by every level's valid ratios. ``valid_ratios`` (B, L, 2) in (w, h)
    order, or None (all valid: a constant (1, S, L, 2)).
    """
    shapes = static_shapes(spatial_shapes)
    if valid_ratios is None:
        refs = []
        for h, w in shapes:
            y, x = np.meshgrid(np.arange(h, dtype=np.float32) + np.float32(0.5),
                               np.arange(w, dtype=np.float32) + np.float32(0.5), indexing="ij")
            refs.append(np.stack([x.reshape(-1) / np.float32(w),
                                  y.reshape(-1) / np.float32(h)], -1))
        ref = np.concatenate(refs, 0).astype(np.float32)              # (S, 2)
        ref = np.tile(ref[None, :, None, :], (1, 1, len(shapes), 1))  # (1, S, L, 2)
        return tf.constant(ref)
    valid_ratios = tf.cast(valid_ratios, tf.float32)
    refs = []
    for lvl, (h, w) in enumerate(shapes):
        y, x = np.meshgrid(np.arange(h, dtype=np.float32) + np.float32(0.5),
                           np.arange(w, dtype=np.float32) + np.float32(0.5), indexing="ij")
        vr = tf.gather(valid_ratios, lvl, axis=1)                    # (B, 2)
        vr_w = tf.expand_dims(tf.gather(vr, 0, axis=1), 1)            # (B, 1)
        vr_h = tf.expand_dims(tf.gather(vr, 1, axis=1), 1)
        ref_x = tf.constant(x.reshape(1, -1)) / (vr_w * float(w))
        ref_y = tf.constant(y.reshape(1, -1)) / (vr_h * float(h))
        refs.append(tf.stack([ref_x, ref_y], -1))                    # (B, HW, 2)
    ref = tf.concat(refs, 1)                                          # (B, S, 2)
    return tf.expand_dims(ref, 2) * tf.expand_dims(valid_ratios, 1)   # (B, S, L, 2)


class DeformableTransformer(Composite):
    """The plain ``DeformableTransformer`` (no box refinement, no two-stage).

    ``call(srcs, pos_embeds, query_embed, masks=None, training=False)``:
      srcs, pos_embeds: lists of L maps (B, H_l, W_l, d) with static H_l, W_l (pos without
        the level embedding); query_embed (Q, 2d): columns [:d] the positional query,
        [d:] the initial target (the official ``torch.split(query_embed, d, 1)``);
      masks: None (deformable PRTR: all valid) or L bool maps (B, H_l, W_l), True on
        padding (Deformable DETR).
    Returns a dict: ``hs`` (num_decoder_layers, B, Q, d) every decoder layer's output (no
    final LN), ``reference_points`` (B, Q, 2) = sigmoid(reference_points(query_pos)),
    ``memory`` (B, S, d), ``spatial_shapes`` [(H_l, W_l)], ``level_start_index``,
    ``valid_ratios`` (B, L, 2) (w, h) or None, ``mask_flatten`` (B, S) or None.
    """

    def __init__(self, d_model=256, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                 dim_feedforward=1024, dropout=0.1, num_feature_levels=4, dec_n_points=4,
                 enc_n_points=4, prefix="transformer", **kw):
        kw.setdefault("name", "deformable_transformer")
        super().__init__(**kw)
        self.d_model, self.nhead = d_model, nhead
        self.num_feature_levels = num_feature_levels
        self.prefix = prefix
        self.encoder_layers = [
            DeformableEncoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead,
                                   enc_n_points, f"{prefix}.encoder.layers.{i}",
                                   name=f"encoder_{i}")
            for i in range(num_encoder_layers)]
        self.decoder_layers = [
            DeformableDecoderLayer(d_model, dim_feedforward, dropout, num_feature_levels, nhead,
                                   dec_n_points, f"{prefix}.decoder.layers.{i}",
                                   name=f"decoder_{i}")
            for i in range(num_decoder_layers)]
        self.level_embed = LevelEmbedding(num_feature_levels, d_model,
                                          official_name=f"{prefix}.level_embed",
                                          name="level_embed")
        # float32 under mixed precision too: the reference points place the samples (and
        # the keypoint / box centres); bfloat16 would round them by up to 2^-9, a quarter
        # of a pixel on a 134-wide level 0.
        self.reference_points = named(keras.layers.Dense(
            2, kernel_initializer="glorot_uniform", bias_initializer="zeros",
            dtype="float32", name="reference_points"), f"{prefix}.reference_points")

    def flatten(self, srcs, pos_embeds, masks=None):
        """Per-level flattening (row-major, level 0 first) -> (src (B, S, d), lvl_pos
        (B, S, d), mask (B, S) or None, spatial shapes, valid ratios (B, L, 2) or None)."""
        if len(srcs) != self.num_feature_levels or len(pos_embeds) != len(srcs):
            raise ValueError(f"expected {self.num_feature_levels} levels of srcs and "
                             f"pos_embeds, got {len(srcs)} and {len(pos_embeds)}")
        if masks is not None and len(masks) != len(srcs):
            raise ValueError(f"{len(masks)} masks for {len(srcs)} levels")
        shapes, src_flat, pos_flat, mask_flat, ratios = [], [], [], [], []
        for lvl, (src, pos) in enumerate(zip(srcs, pos_embeds)):
            h, w = src.shape[1], src.shape[2]
            if h is None or w is None:
                raise ValueError(f"level {lvl}: the spatial size must be static, got "
                                 f"{tuple(src.shape)}")
            shapes.append((int(h), int(w)))
            batch = tf.shape(src)[0]
            src_flat.append(tf.reshape(src, tf.stack([batch, h * w, self.d_model])))
            pos = tf.reshape(tf.cast(pos, src.dtype), tf.stack([batch, h * w, self.d_model]))
            pos_flat.append(pos + tf.cast(self.level_embed.vector(lvl), src.dtype))
            if masks is not None:
                mask = tf.cast(masks[lvl], tf.bool)
                mask_flat.append(tf.reshape(mask, tf.stack([batch, h * w])))
                ratios.append(valid_ratio(mask))
        src = tf.concat(src_flat, 1)
        lvl_pos = tf.concat(pos_flat, 1)
        mask = tf.concat(mask_flat, 1) if masks is not None else None
        valid_ratios = tf.stack(ratios, 1) if masks is not None else None
        return src, lvl_pos, mask, shapes, valid_ratios

    def decoder_inputs(self, query_embed, batch, dtype=tf.float32):
        """(tgt, query_pos) (B, Q, d) in ``dtype`` and the reference points (B, Q, 2),
        float32 (from the float32 embedding, whatever ``dtype``)."""
        query_pos32, _ = tf.split(tf.cast(query_embed, tf.float32), 2, axis=-1)
        query_embed = tf.cast(query_embed, dtype)
        query_pos, tgt = tf.split(query_embed, 2, axis=-1)
        query_pos = tf.tile(tf.expand_dims(query_pos, 0), tf.stack([batch, 1, 1]))
        tgt = tf.tile(tf.expand_dims(tgt, 0), tf.stack([batch, 1, 1]))
        query_pos32 = tf.tile(tf.expand_dims(query_pos32, 0), tf.stack([batch, 1, 1]))
        reference_points = tf.sigmoid(self.reference_points(query_pos32))
        return tgt, query_pos, reference_points

    def encode(self, src, lvl_pos, shapes, mask=None, valid_ratios=None, training=False):
        # float32 (the sampling locations are, `prtr_tf.nn.ms_deform_attn`)
        ref = encoder_reference_points(shapes, valid_ratios)
        memory = src
        for layer in self.encoder_layers:
            memory = layer(memory, lvl_pos, ref, spatial_shapes=shapes, padding_mask=mask,
                           training=training)
        return memory

    def decode(self, memory, query_embed, shapes, mask=None, valid_ratios=None,
               training=False):
        batch = tf.shape(memory)[0]
        tgt, query_pos, reference_points = self.decoder_inputs(query_embed, batch, memory.dtype)
        ref = tf.expand_dims(reference_points, 2)                     # (B, Q, 1, 2)
        if valid_ratios is not None:
            ref_input = ref * tf.expand_dims(tf.cast(valid_ratios, ref.dtype), 1)
        else:
            ref_input = tf.tile(ref, [1, 1, len(shapes), 1])
        outputs = []
        for layer in self.decoder_layers:
            tgt = layer(tgt, query_pos, ref_input, memory, spatial_shapes=shapes, padding_mask=mask,
                        training=training)
            outputs.append(tgt)
        return tf.stack(outputs), reference_points

    def call(self, srcs, pos_embeds, query_embed, masks=None, training=False):
        src, lvl_pos, mask, shapes, valid_ratios = self.flatten(srcs, pos_embeds, masks)
        memory = self.encode(src, lvl_pos, shapes, mask, valid_ratios, training=training)
        hs, reference_points = self.decode(memory, query_embed, shapes, mask, valid_ratios,
                                           training=training)
        return {"hs": hs, "reference_points": reference_points, "memory": memory,
                "spatial_shapes": shapes, "level_start_index": level_start_index(shapes),
                "valid_ratios": valid_ratios, "mask_flatten": mask}


class InputProjection(Composite):
    """The official ``input_proj`` (both models): for backbone levels C3, C4, C5
    ``Conv2d(C_in, d, 1)`` + ``GroupNorm(32, d)``, then for each extra level
    ``Conv2d(C_prev, d, 3, stride 2, padding 1)`` + ``GroupNorm(32, d)``, the first one on
    the **raw** last backbone map (C5, 2048 channels), later ones on the previous extra
    level (torch's symmetric padding: `prtr_tf.nn.layers.TorchConv2D`). Tagged
    ``input_proj.{i}.0`` (conv) / ``input_proj.{i}.1`` (GroupNorm, eps 1e-5).
    Init as the official models: conv xavier-uniform (gain 1), bias 0; GroupNorm 1 / 0.

    ``call(features)``: list of the backbone maps (B, H, W, C) (C3, C4, C5) -> list of
    ``num_levels`` maps (B, H_l, W_l, d).
    """

    def __init__(self, num_levels=4, d_model=256, num_backbone_levels=3, groups=32,
                 prefix="input_proj", **kw):
        kw.setdefault("name", "input_proj")
        super().__init__(**kw)
        self.num_backbone_levels = num_backbone_levels
        self.convs, self.norms = [], []
        for i in range(num_levels):
            extra = i >= num_backbone_levels
            conv = TorchConv2D(d_model, 3 if extra else 1, strides=2 if extra else 1,
                               torch_padding=1 if extra else 0, use_bias=True,
                               kernel_initializer="glorot_uniform", name=f"conv_{i}")
            self.convs.append(named(conv, f"{prefix}.{i}.0"))
            self.norms.append(named(keras.layers.GroupNormalization(
                groups, epsilon=1e-5, name=f"norm_{i}"), f"{prefix}.{i}.1"))

    def call(self, features):
        if len(features) != self.num_backbone_levels:
            raise ValueError(f"expected {self.num_backbone_levels} backbone maps, got "
                             f"{len(features)}")
        srcs = []
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            if i < self.num_backbone_levels:
                x = features[i]
            else:   # the first extra level from the raw last backbone map
                x = features[-1] if i == self.num_backbone_levels else srcs[-1]
            srcs.append(norm(conv(x)))
        return srcs


# --------------------------------------------------------------------- official import
