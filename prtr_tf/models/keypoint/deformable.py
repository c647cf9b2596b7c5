"""The official deformable keypoint Transformer (``model.kind = "prtr_deformable"``;
``deformable_pose_transformer.py``, ``deformable-spec.md`` §1), an architecture of the
keypoint family: same task, matcher, losses, readout, evaluation, flip test and
serving as `prtr_tf.models.keypoint.model.PoseTransformer`; only the network differs.

crop (B, H, W, 3) -> ResNet, its last three levels (R50/R101: C3, C4, C5) -> 1x1 conv +
GroupNorm(32) per level, plus a 3x3 stride-2 conv + GroupNorm on the raw last level
(`InputProjection`) -> sine encodings per level (no offset, no mask) -> the deformable
encoder-decoder (`DeformableTransformer`, 100 queries of ``query_embed`` (Q, 2d):
positional half, content half) -> per decoder layer ``class_embed`` (J+1 logits,
background last) and ``sigmoid(kpt_embed(hs) + inverse_sigmoid(reference))``.

The official state_dict holds the heads 6 times (``class_embed.{0..5}``,
``kpt_embed.{0..5}``: one module repeated); `import_official_state_dict` loads copy 0
and refuses a file whose copies differ, naming them.
"""
import keras
import numpy as np
import tensorflow as tf

from prtr_tf.models.keypoint.config import two_stage
from prtr_tf.checkpoints.deformable_import import (OfficialWeightsError, copy_official,
                                                 official_mapping)
from prtr_tf.models.keypoint.family import KeypointFamily
from prtr_tf.nn.backbones import build_backbone
from prtr_tf.nn.deformable_position import sine_encoding
from prtr_tf.nn.deformable_transformer import DeformableTransformer, InputProjection
from prtr_tf.nn.heads import MLP, query_embedding, torch_linear_init
from prtr_tf.nn.layers import dense
from prtr_tf.nn.set_predictor import layer_outputs

DEFORMABLE_FIELDS = dict(num_feature_levels=4, enc_n_points=4, dec_n_points=4)
HEADS = ("class_embed", "kpt_embed")  # stored once per decoder layer in the official file
PRIOR_BIAS = -float(np.log((1 - 0.01) / 0.01))  # the official class_embed bias init


def deformable_two_stage(backbone, image_size, *, num_feature_levels=4, enc_n_points=4,
                         dec_n_points=4, **two_stage_args):
    """A deformable PRTR config: `two_stage` (data, loss, train, test as the vanilla
    model), ``model.kind = "prtr_deformable"`` and the deformable fields."""
    if not backbone.startswith("resnet") or backbone == "resnet152":
        raise ValueError(f"the deformable keypoint Transformer exists for ResNet-50/101 "
                         f"(and resnet_tiny), not {backbone!r} (the official code "
                         "rejects HRNet and ResNet-152)")
    c = two_stage(backbone, "coco", image_size, **two_stage_args)
    c.model.kind = "prtr_deformable"
    c.model.num_feature_levels = num_feature_levels
    c.model.enc_n_points = enc_n_points
    c.model.dec_n_points = dec_n_points
    c.test.batch_size = 32  # TEST.BATCH_SIZE_PER_GPU of the deformable yaml files
    return c


def inverse_sigmoid(x, eps=1e-5):
    """The official ``inverse_sigmoid``: log(clamp(x, eps) / clamp(1 - x, eps))."""
    x = tf.clip_by_value(x, 0.0, 1.0)
    return tf.math.log(tf.maximum(x, eps) / tf.maximum(1.0 - x, eps))


class DeformablePoseTransformer(keras.Model):
    """Deformable keypoint-detection Transformer of two-stage PRTR.

    ``call(images)`` takes normalised crops (B, H, W, 3) and returns the dict of
    `PoseTransformer`: pred_logits (B, Q, J+1), pred_coords (B, Q, 2) (x, y normalised
    by the crop size) from the last decoder layer, aux_pred_logits / aux_pred_coords
    (L-1, B, Q, ...) from the others. Call with ``training=True`` when training (the
    sampling's memory-lean gradient).
    """

    def __init__(self, config, **kw):
        kw.setdefault("name", "deformable_pose_transformer")
        super().__init__(**kw)
        self.config = config
        self.num_joints = config.num_joints
        self.image_size = tuple(config.image_size)
        d = config.hidden_dim
        levels = config.get("num_feature_levels", 4)
        # The backbone maps read (the last ones): 3, C3..C5, as the official model; a
        # small backbone whose last map has stride 16 (resnet_tiny) reads 2 to keep the
        # official strides 8..64 (configs/demo_deform_keypoints.py), as the Deformable
        # DETR's ``model.backbone_levels``.
        self.num_backbone_levels = int(config.get("backbone_levels", min(3, levels)))
        if not 1 <= self.num_backbone_levels <= levels:
            raise ValueError(f"config.model.backbone_levels={self.num_backbone_levels}: 1 to "
                             f"num_feature_levels ({levels})")
        self.backbone = build_backbone(config.backbone, frozen=config.get("frozen_backbone"))
        self.input_proj = InputProjection(levels, d, self.num_backbone_levels)
        self.query_embed = query_embedding(config.num_queries, 2 * d)
        self.transformer = DeformableTransformer(
            d, config.nheads, config.enc_layers, config.dec_layers, config.dim_feedforward,
            config.dropout, levels, config.get("dec_n_points", 4),
            config.get("enc_n_points", 4))
        self.class_embed = dense(config.num_joints + 1, "class_embed.0",
                                 kernel_initializer=torch_linear_init())
        self.kpt_embed = MLP(d, 2, 3, "kpt_embed.0", name="kpt_embed")

    def build(self, input_shape):
        self.built = True  # sublayers build on their first call

    def initialize(self):
        """Creates the weights (they do not depend on the crop size: one small zero crop)
        and sets the official head init: every class bias -4.595, the last coordinate
        layer zero (the first predictions sit on the reference points)."""
        self(tf.zeros((1, 64, 64, 3), self.compute_dtype), training=False)
        self.class_embed.bias.assign(tf.fill(self.class_embed.bias.shape, PRIOR_BIAS))
        last = self.kpt_embed.layers_[-1]
        last.kernel.assign(tf.zeros_like(last.kernel))
        last.bias.assign(tf.zeros_like(last.bias))
        return self

    def backbone_levels(self, images, training=False):
        """The backbone maps the input projection reads (the last ``backbone_levels``,
        default three)."""
        levels = self.backbone(images, training=training, return_levels=True)
        names = sorted(levels, key=lambda k: int(k[1:]))[-self.num_backbone_levels:]
        return [levels[k] for k in names]

    def call(self, images, training=False):
        return self.decode(self.backbone_levels(images, training=training), training=training)

    def decode(self, features, training=False):
        """Input projection, transformer and heads on the backbone levels."""
        out = self.transformer_outputs(features, training=training)
        hs = out["hs"]
        logits = tf.cast(self.class_embed(hs), tf.float32)
        ref = inverse_sigmoid(tf.cast(out["reference_points"], tf.float32))
        coords = tf.sigmoid(tf.cast(self.kpt_embed(hs), tf.float32) + ref[None])
        return layer_outputs(logits, coords, "coords")

    def transformer_outputs(self, features, training=False):
        """`DeformableTransformer`'s dict (hs, reference_points, memory, ...) plus
        ``srcs`` (the projected levels) and ``pos`` (their sine encodings)."""
        srcs = self.input_proj(features)
        batch = tf.shape(srcs[0])[0]
        pos = [tf.cast(sine_encoding([batch, s.shape[1], s.shape[2]],
                                     num_pos_feats=s.shape[-1] // 2), s.dtype)
               for s in srcs]
        # float32: the transformer casts it (its reference points stay float32)
        query = self.query_embed.embeddings
        out = dict(self.transformer(srcs, pos, query, training=training))
        out.update(srcs=srcs, pos=pos)
        return out

    def backbone_lr_variables(self):
        """Trained at ``lr_backbone`` (spec §1.9): the backbone's trainable variables, and
        those of every ``sampling_offsets`` and of ``transformer.reference_points``."""
        own = list(self.backbone.trainable_variables)
        layers = [self.transformer.reference_points]
        for layer in self.transformer.encoder_layers:
            layers.append(layer.self_attn.sampling_offsets)
        for layer in self.transformer.decoder_layers:
            layers.append(layer.cross_attn.sampling_offsets)
        return own + [v for layer in layers for v in layer.trainable_variables]


def build_deformable_model(model_config):
    """Builds (and initialises) the deformable keypoint model of ``config.model``."""
    return DeformablePoseTransformer(model_config).initialize()


# --------------------------------------------------------------------- official import


def _official_names(state_dict):
    """numpy arrays; DataParallel ``module.`` stripped, the older ``backbone.body``
    prefix renamed ``backbone.0.body`` (as the official ``model_key_helper``)."""
    out = {}
    keys = list(state_dict)
    strip = bool(keys) and all(k.startswith("module.") for k in keys)
    for key, value in state_dict.items():
        name = key[len("module."):] if strip else key
        if name.endswith(".num_batches_tracked"):  # torch BatchNorm's counter: no values
            continue
        if name.startswith("backbone.body."):
            name = "backbone.0." + name[len("backbone."):]
        out[name] = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    return out


def tied_head_copies(state_dict, num_layers):
    """Checks that the per-layer copies ``class_embed.{k}`` / ``kpt_embed.{k}`` (k = 1..
    num_layers-1) equal copy 0 and returns the state_dict without them. Raises an
    `OfficialWeightsError` naming every copy that differs (the official model repeats one
    module: such a file was not written by it) or is missing."""
    differ, missing, kept = [], [], {}
    for name, value in state_dict.items():
        head, _, rest = name.partition(".")
        index, _, tail = rest.partition(".")
        if head not in HEADS or not index.isdigit() or index == "0":
            kept[name] = value
            continue
        ref = state_dict.get(f"{head}.0.{tail}")
        if ref is None or ref.shape != value.shape or not np.array_equal(ref, value):
            differ.append(name)
    for name in [k for k in kept if k.split(".")[0] in HEADS and k.split(".")[1] == "0"]:
        head, _, tail = name.split(".", 2)
        missing += [f"{head}.{k}.{tail}" for k in range(1, num_layers)
                    if f"{head}.{k}.{tail}" not in state_dict]
    if differ or missing:
        text = []
        if differ:
            text.append(f"{len(differ)} per-layer head copies differ from copy 0 (the "
                        "official model stores one head repeated per decoder layer, so its "
                        "copies are equal): " + ", ".join(sorted(differ)))
        if missing:
            text.append(f"{len(missing)} per-layer head copies missing: "
                        + ", ".join(sorted(missing)))
        raise OfficialWeightsError("the state_dict's heads are not the official tied "
                                   "heads: " + "; ".join(text))
    return kept


def import_official_state_dict(model, state_dict):
    """Copies an official deformable PRTR state_dict into a built model: every tensor of
    the file (heads from copy 0, the other copies checked equal). A missing, unknown or
    mis-shaped tensor raises one `OfficialWeightsError` naming them all, and then nothing
    is assigned. Returns the names copied."""
    state_dict = tied_head_copies(_official_names(state_dict), model.config.dec_layers)
    return copy_official(official_mapping(model), state_dict,
                         "the deformable keypoint Transformer")


def check_official_state_dict(model_config, state_dict):
    """The checks that need no model (fail before building one): the head copies."""
    tied_head_copies(_official_names(state_dict), model_config.dec_layers)


class DeformableKeypointFamily(KeypointFamily):
    """The keypoint family with the deformable network; everything else inherited."""

    name = "prtr_deformable"
    title = "deformable PRTR keypoint Transformer"
    # Outputs cast to float32; the sampling locations, bilinear weights and reference
    # points stay float32 (prtr_tf.nn.ms_deform_attn, deformable_transformer). The
    # official fixture in bfloat16: logits within 0.06, coordinates 0.005 of float32
    # (the vanilla R50 fixture: 0.27 and 0.029); tests/nn/test_precision.py.
    bfloat16_inference = True

    def build(self, model_config):
        return build_deformable_model(model_config)

    def import_official(self, model_config, state_dict):
        check_official_state_dict(model_config, state_dict)
        model = self.build(model_config)
        return model, len(import_official_state_dict(model, state_dict))


FAMILY = DeformableKeypointFamily()
