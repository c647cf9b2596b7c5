"""Deformable DETR (plain: 4 levels, 300 queries, no box refinement, no two-stage) as an
architecture of the detector family (``model.kind = "deformable_detr"``;
``deformable-spec.md`` §3-4; fundamentalvision/Deformable-DETR).

padded images (B, H, W, 3) + padding mask (B, H, W) -> ResNet C3, C4, C5 -> the official
``input_proj`` (+ a 3x3 stride-2 level on raw C5) -> per-level masks (torch nearest resize
of the image mask), masked sine encodings with the -0.5 offset -> the deformable
transformer (`prtr_tf.nn.deformable_transformer`) -> per decoder layer: ``class_embed``
(K sigmoid classes, NO no-object column) and ``bbox_embed`` (cx, cy, w, h) whose centre
gets ``inverse_sigmoid(reference)`` before the sigmoid.

Scores are per-class sigmoids, not DETR's softmax with no-object: the model says so
through `DeformableDETR.person_scores` and `DeformableDETR.postprocess`, which the
family's consumers call (`prtr_tf.models.detector.predict.model_person_scores`).

Spatial shapes are static per trace (the sampling's index arithmetic is built from them):
a batch of a new padded size retraces. The detector pipeline therefore pads batches to a
few fixed sizes (``config.data.pad_size`` / ``pad_multiple``) and the model sets
``static_spatial_shapes`` so that `prtr_tf.models.detector.predict` traces per shape
instead of relaxing the shapes to None.

Official checkpoints (``r50_deformable_detr-checkpoint.pth``, a training checkpoint whose
``model`` entry `prtr_tf.checkpoints.torch_file.read_state_dict` picks) store the heads 6
times (``class_embed.{0..5}``, ``bbox_embed.{0..5}``, one module repeated): copy 0 is
loaded after checking that copies 1..5 equal it (`official_heads`).
"""
import re

import keras
import ml_collections
import numpy as np
import tensorflow as tf

from prtr_tf.checkpoints.torch_import import strip_prefix
from prtr_tf.models.detector.config import COCO_PERSON, detector
from prtr_tf.models.detector.family import DetectorFamily
from prtr_tf.models.detector.loss import global_num_boxes, stack_layers
from prtr_tf.nn import hungarian, set_criterion
from prtr_tf.nn.boxes import (box_cxcywh_to_xyxy, elementwise_generalized_box_iou,
                              generalized_box_iou)
from prtr_tf.nn.backbones import build_backbone
from prtr_tf.nn.deformable_position import DDETR_OFFSET, nearest_level_mask, sine_encoding
from prtr_tf.checkpoints.deformable_import import (OfficialWeightsError, copy_official,
                                                   official_mapping)
from prtr_tf.nn.deformable_transformer import DeformableTransformer, InputProjection
from prtr_tf.nn.heads import MLP, query_embedding, torch_linear_init
from prtr_tf.nn.layers import named
from prtr_tf.nn.set_predictor import layer_outputs

PRIOR_BIAS = -float(np.log((1 - 0.01) / 0.01))  # class prior 0.01 (sigmoid focal loss)
HEADS = ("class_embed", "bbox_embed")
IGNORED_SUFFIXES = ("total_params", "total_ops")  # thop counters (main.py skips them)
DEFORMABLE_FIELDS = dict(num_feature_levels=4, enc_n_points=4, dec_n_points=4)


def inverse_sigmoid(x, eps=1e-5):
    """The official ``inverse_sigmoid``: log(clamp(x, eps) / clamp(1 - x, eps)), x in [0, 1]."""
    x = tf.clip_by_value(x, 0.0, 1.0)
    return tf.math.log(tf.maximum(x, eps) / tf.maximum(1.0 - x, eps))


class DeformableDETR(keras.Model):
    """Deformable DETR. ``call(images, mask=None, training=False)`` as `DETR`: a
    zero-padded batch (B, H, W, 3) and its padding mask (B, H, W), True on padding
    (None: no padding; by keyword). Returns pred_logits (B, Q, K) (sigmoid classes, no
    no-object column), pred_boxes (B, Q, 4) sigmoid (cx, cy, w, h) normalised by each
    image's unpadded size, aux_pred_logits / aux_pred_boxes (L-1, ...)."""

    static_spatial_shapes = True  # see the module docstring

    def __init__(self, config, **kw):
        kw.setdefault("name", "deformable_detr")
        super().__init__(**kw)
        d = int(config.hidden_dim)
        self.num_classes = int(config.num_classes)
        self.hidden_dim = d
        self.backbone = build_backbone(config.backbone, frozen=config.get("frozen_backbone"))
        levels = int(config.num_feature_levels)
        # The backbone maps read (the last ones): 3, C3..C5, as the official model; a
        # small backbone whose last map has stride 16 (resnet_tiny) reads 2 to keep the
        # official strides 8..64 (configs/demo_deformable_detector.py).
        self.backbone_levels = int(config.get("backbone_levels", 3))
        if not 1 <= self.backbone_levels <= levels:
            raise ValueError(f"config.model.backbone_levels={self.backbone_levels}: 1 to "
                             f"num_feature_levels ({levels})")
        self.input_proj = InputProjection(levels, d, self.backbone_levels,
                                          groups=int(config.get("groups", 32)))
        self.transformer = DeformableTransformer(
            d, int(config.nheads), int(config.enc_layers), int(config.dec_layers),
            int(config.dim_feedforward), float(config.dropout), levels,
            int(config.dec_n_points), int(config.enc_n_points))
        self.query_embed = query_embedding(int(config.num_queries), 2 * d)
        self.class_embed = named(keras.layers.Dense(
            self.num_classes, kernel_initializer=torch_linear_init(),
            bias_initializer=keras.initializers.Constant(PRIOR_BIAS)), "class_embed.0")
        self.bbox_embed = MLP(d, 4, 3, "bbox_embed.0", name="bbox_embed")
        self.supports_masking = True  # ``mask`` is the padding mask (as DETR)

    def compute_mask(self, inputs, mask=None):
        return None

    def initialize(self, size=(64, 64)):
        """Creates the weights (one small zero image) and sets the official head init:
        ``bbox_embed.layers.2`` weight 0, bias (0, 0, -2, -2)."""
        self(tf.zeros((1, *size, 3), self.compute_dtype), training=False)
        last = self.bbox_embed.layers_[-1]
        last.kernel.assign(tf.zeros_like(last.kernel))
        last.bias.assign(tf.constant([0.0, 0.0, -2.0, -2.0], last.bias.dtype))
        return self

    def features(self, images, mask=None, training=False):
        """(srcs: the L projected maps (B, H_l, W_l, d), masks: L (B, H_l, W_l) bool)."""
        levels = self.backbone(images, training=training, return_levels=True)
        feats = [levels[k] for k in sorted(levels)[-self.backbone_levels:]]  # C3..C5
        srcs = self.input_proj(feats)
        if mask is None:
            mask = tf.zeros(tf.shape(images)[:3], tf.bool)
        masks = [nearest_level_mask(mask, (s.shape[1], s.shape[2])) for s in srcs]
        return srcs, masks

    def call(self, images, mask=None, training=False):
        srcs, masks = self.features(images, mask, training=training)
        pos = [sine_encoding(m, DDETR_OFFSET, num_pos_feats=self.hidden_dim // 2)
               for m in masks]
        out = self.transformer(srcs, pos, self.query_embed.embeddings, masks=masks,
                               training=training)
        hs = out["hs"]
        logits = tf.cast(self.class_embed(hs), tf.float32)
        tmp = tf.cast(self.bbox_embed(hs), tf.float32)
        ref = inverse_sigmoid(tf.cast(out["reference_points"], tf.float32))[None]
        boxes = tf.sigmoid(tf.concat([tmp[..., :2] + ref, tmp[..., 2:]], -1))
        return layer_outputs(logits, boxes, "boxes")

    def backbone_lr_variables(self):
        """Trained at ``lr_backbone`` (the official optimiser's groups): the backbone's
        trainable variables, the sampling offsets of every deformable attention and the
        decoder's reference-point projection."""
        own = list(self.backbone.trainable_variables)
        for layer in self._flatten_layers(include_self=False, recursive=True):
            name = getattr(layer, "torch_name", None) or ""
            if name.endswith(("sampling_offsets", "reference_points")):
                own += list(layer.trainable_variables)
        return own

    # ---- scores (sigmoid classes; DETR's softmax with no-object does not apply)

    def person_scores(self, outputs, label):
        """P(person) per query (B, Q): the sigmoid of the person logit."""
        return tf.sigmoid(tf.cast(outputs["pred_logits"], tf.float32)[..., label])

    def postprocess(self, outputs, sizes, k=100, classes=None):
        """The official ``PostProcess``: top ``k`` (query, class) pairs over all Q x K
        sigmoid scores; ``sizes`` (B, 2) the unpadded (h, w) in pixels; ``classes``: keep
        only these class columns (e.g. ``[label]``: a person-only detector, labels then
        index ``classes``). Returns scores (B, k), labels (B, k), query (B, k), boxes
        (B, k, 4) xyxy pixels (no clipping)."""
        logits = tf.cast(outputs["pred_logits"], tf.float32)
        if classes is not None:
            logits = tf.gather(logits, list(classes), axis=-1)
        num_classes = logits.shape[-1]
        prob = tf.reshape(tf.sigmoid(logits), [tf.shape(logits)[0], -1])
        scores, index = tf.math.top_k(prob, k=k)
        query, labels = index // num_classes, index % num_classes
        cx, cy, w, h = tf.unstack(tf.cast(outputs["pred_boxes"], tf.float32), axis=-1)
        xyxy = tf.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)
        xyxy = tf.gather(xyxy, query, batch_dims=1)
        sizes = tf.cast(sizes, tf.float32)
        scale = tf.stack([sizes[:, 1], sizes[:, 0], sizes[:, 1], sizes[:, 0]], -1)
        return dict(scores=scores, labels=labels, query=query, boxes=xyxy * scale[:, None])

    # ---- official import

    def official_mapping(self):
        """{official name: (shape, targets)} of every tensor (heads: copy 0 only)."""
        return official_mapping(self)

    def load_official(self, state_dict):
        """Copies an official state_dict (as `prepare_state_dict` returns it) into the
        model; any missing, unknown or mis-shaped tensor raises one error naming them all,
        and then nothing is assigned. Returns the names copied."""
        return copy_official(self.official_mapping(), dict(state_dict),
                             "the Deformable DETR configuration")


def official_heads(state_dict, num_layers):
    """The state_dict with the 6 stored head copies reduced to copy 0, after checking that
    copies 1..num_layers-1 exist and equal copy 0 (one module repeated in the official
    model). Raises `OfficialWeightsError` naming every copy that differs or is missing."""
    out, problems = {}, []
    pattern = re.compile(rf"^({'|'.join(HEADS)})\.(\d+)\.(.+)$")
    for key, value in state_dict.items():
        m = pattern.match(key)
        if m is None or m.group(2) == "0":
            out[key] = value
            continue
        first = state_dict.get(f"{m.group(1)}.0.{m.group(3)}")
        if first is None or np.shape(first) != np.shape(value) \
                or not np.array_equal(np.asarray(first), np.asarray(value)):
            problems.append(key)
    for key in [k for k in out if pattern.match(k)]:
        head, _, rest = pattern.match(key).groups()
        problems += [f"{head}.{i}.{rest} (missing)" for i in range(1, num_layers)
                     if f"{head}.{i}.{rest}" not in state_dict]
    if problems:
        raise OfficialWeightsError(
            "the per-layer head copies of this checkpoint differ from copy 0 (the plain "
            "Deformable DETR ties them; box refinement / two-stage checkpoints are not "
            f"supported): {', '.join(sorted(problems)[:20])}")
    return out


def prepare_state_dict(model_config, state_dict):
    """An official state_dict as `DeformableDETR.load_official` takes it: ``module.``
    stripped, thop counters dropped, head copies checked and reduced to copy 0, and for a
    person-only config (``num_classes`` 1) from a 91-class checkpoint the person row
    (``person_row``, COCO id 1) of the classifier kept."""
    sd = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v)
          for k, v in strip_prefix(dict(state_dict)).items()
          if not k.endswith(IGNORED_SUFFIXES)}
    sd = official_heads(sd, int(model_config.dec_layers))
    rows = np.shape(sd.get("class_embed.0.weight", np.zeros((0,))))[0]
    if int(model_config.num_classes) == 1 and rows > 1:
        row = int(model_config.get("person_row", COCO_PERSON))
        for key in ("class_embed.0.weight", "class_embed.0.bias"):
            sd[key] = sd[key][row:row + 1]
    return sd


# ---------------------------------------------------------------- the set criterion
# spec §3.4: sigmoid focal loss (alpha 0.25, gamma 2) on one-hot targets over the K
# columns (unmatched queries: all zeros), L1 and GIoU on the matched boxes, all summed /
# num_boxes (DETR's global count across replicas); matcher 2 * focal cost + 5 * L1 +
# 2 * (-GIoU); every decoder layer matched and weighted alike.


def focal_class_cost(logits, labels, alpha=0.25, gamma=2.0):
    """The matcher's class cost (..., B, Q, N) of sigmoid logits (..., B, Q, K) at the
    GT labels (B, N): alpha (1-p)^g (-log(p + 1e-8)) - (1-alpha) p^g (-log(1-p + 1e-8))."""
    p = tf.sigmoid(tf.stop_gradient(tf.cast(logits, tf.float32)))
    pos = alpha * (1.0 - p) ** gamma * -tf.math.log(p + 1e-8)
    neg = (1.0 - alpha) * p ** gamma * -tf.math.log(1.0 - p + 1e-8)
    onehot = tf.one_hot(tf.cast(labels, tf.int32), p.shape[-1])
    return tf.einsum("...bqc,bnc->...bqn", pos - neg, onehot)


def match_layers(logits, pred_boxes, boxes, labels, valid, cost_class=2.0, cost_bbox=5.0,
                 cost_giou=2.0, alpha=0.25, gamma=2.0):
    """int32 (L, B, N): the query of layer l matched to GT slot n (-1: none); outside
    XLA (``tf.numpy_function``)."""
    pred_boxes = tf.stop_gradient(tf.cast(pred_boxes, tf.float32))
    boxes = tf.cast(boxes, tf.float32)
    l1 = tf.reduce_sum(tf.abs(pred_boxes[..., :, None, :] - boxes[:, None]), axis=-1)
    giou = generalized_box_iou(box_cxcywh_to_xyxy(pred_boxes), box_cxcywh_to_xyxy(boxes))
    cost = (cost_bbox * l1 + cost_class * focal_class_cost(logits, labels, alpha, gamma)
            - cost_giou * giou)
    return hungarian.assign(cost, valid, targets_last=True, name="ddetr_hungarian")


def sigmoid_focal_loss(logits, target, alpha=0.25, gamma=2.0):
    """The official ``sigmoid_focal_loss`` per element (not reduced)."""
    p = tf.sigmoid(logits)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logits)
    p_t = p * target + (1.0 - p) * (1.0 - target)
    alpha_t = alpha * target + (1.0 - alpha) * (1.0 - target)
    return alpha_t * ce * (1.0 - p_t) ** gamma


def focal_set_loss(outputs, targets, indices, num_boxes, loss_config):
    """The losses dict (`prtr_tf.nn.set_criterion.loss_dict`: "loss", "loss_ce",
    "loss_bbox", "loss_giou" and the aux layers' ``_i``) given the matching
    ``indices`` (L, B, N) and ``num_boxes`` (e.g. `global_num_boxes`), XLA-safe."""
    logits, pred_boxes = stack_layers(outputs)
    logits, pred_boxes = tf.cast(logits, tf.float32), tf.cast(pred_boxes, tf.float32)
    valid = tf.cast(targets["valid"], tf.float32)
    indices = tf.cast(indices, tf.int32)
    num_boxes = tf.maximum(tf.cast(num_boxes, tf.float32), 1.0)
    matched = valid * tf.cast(indices >= 0, tf.float32)                       # (L, B, N)
    slot_to_query = tf.one_hot(tf.where(matched > 0, indices, -1), tf.shape(logits)[2])
    onehot = tf.one_hot(tf.cast(targets["labels"], tf.int32), logits.shape[-1])
    target = tf.einsum("lbnq,bnc->lbqc", slot_to_query, onehot)               # (L, B, Q, K)
    focal = sigmoid_focal_loss(logits, target, float(loss_config.focal_alpha),
                               float(loss_config.focal_gamma))
    loss_ce = tf.reduce_sum(focal, axis=[1, 2, 3]) / num_boxes
    src = tf.gather(pred_boxes, tf.maximum(indices, 0), axis=2, batch_dims=2)
    tgt = tf.where(valid[..., None] > 0, tf.cast(targets["boxes"], tf.float32),
                   tf.constant([0.5, 0.5, 1.0, 1.0]))
    l1 = tf.reduce_sum(tf.abs(src - tgt), axis=-1)
    giou = elementwise_generalized_box_iou(box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt))
    return set_criterion.loss_dict({
        "ce": (float(loss_config.ce_loss_coef), loss_ce),
        "bbox": (float(loss_config.bbox_loss_coef),
                 tf.reduce_sum(l1 * matched, axis=[1, 2]) / num_boxes),
        "giou": (float(loss_config.giou_loss_coef),
                 tf.reduce_sum((1.0 - giou) * matched, axis=[1, 2]) / num_boxes)})


def focal_criterion_loss(model, batch, loss_config, global_norm=True):
    """One training batch's losses: forward (training=True), matching (outside XLA),
    `focal_set_loss` normalised by the global box count across replicas."""
    outputs = model(batch["image"], mask=batch["mask"], training=True)
    if not loss_config.get("aux_loss", True):
        outputs = {k: outputs[k] for k in ("pred_logits", "pred_boxes")}
    logits, pred_boxes = stack_layers(outputs)
    indices = match_layers(logits, pred_boxes, batch["boxes"], batch["labels"],
                           batch["valid"], float(loss_config.cost_class),
                           float(loss_config.cost_bbox), float(loss_config.cost_giou),
                           float(loss_config.focal_alpha), float(loss_config.focal_gamma))
    num_boxes = (global_num_boxes(batch["valid"]) if global_norm
                 else tf.reduce_sum(tf.cast(batch["valid"], tf.float32)))
    return focal_set_loss(outputs, batch, indices, num_boxes, loss_config)


def build_deformable_detr(model_config):
    """Builds (and initialises) the Deformable DETR of a ``config.model``."""
    return DeformableDETR(model_config).initialize()


def deformable_detector(backbone="resnet50", num_classes=91, *, lr=2e-4, lr_backbone=2e-5,
                        epochs=50, lr_steps=(40,), batch_size=32, paper_ap=None,
                        model_overrides=None, **data_overrides):
    """The full config of a Deformable DETR: `prtr_tf.models.detector.config.detector`
    (data pipeline, train and test sections) with the official model, loss and schedule
    (main.py defaults: d_ffn 1024, dropout 0.1, 300 queries, 4 levels and points; focal
    loss alpha 0.25 gamma 2, matcher and loss weights 2 / 5 / 2; LR 2e-4, backbone and
    sampling offsets / reference points 2e-5, 50 epochs, x0.1 at 40)."""
    model = dict(dict(dim_feedforward=1024, num_queries=300, dropout=0.1), **(model_overrides
                                                                              or {}))
    extra = {k: model.pop(k) for k in list(model) if k in DEFORMABLE_FIELDS or k == "groups"}
    c = detector(backbone, num_classes, lr=lr, lr_backbone=lr_backbone, epochs=epochs,
                 lr_steps=lr_steps, batch_size=batch_size, paper_ap=paper_ap,
                 model_overrides=model, **data_overrides)
    c.model.kind = "deformable_detr"
    c.model.update(dict(DEFORMABLE_FIELDS, groups=32, person_row=COCO_PERSON))
    c.model.update(extra)
    c.loss = ml_collections.ConfigDict(dict(
        cost_class=2.0, cost_bbox=5.0, cost_giou=2.0,
        ce_loss_coef=2.0, bbox_loss_coef=5.0, giou_loss_coef=2.0,
        focal_alpha=0.25, focal_gamma=2.0, aux_loss=True))
    c.test.top_k = 100  # the official PostProcess keeps the top 100 (query, class) pairs
    return c


class DeformableDetrFamily(DetectorFamily):
    name = "deformable_detr"
    title = "Deformable DETR detector"
    # As the deformable keypoint model's (prtr_tf/models/keypoint/deformable.py): the
    # official fixture in bfloat16: logits within 0.09, boxes 0.011 of float32 (measured
    # with the reference points still in bfloat16; DETR's fixture: 0.28 and 0.025);
    # tests/nn/test_precision.py.
    bfloat16_inference = True
    person_score = "sigmoid of the person logit"
    # The two-stage SavedModel holds it (padded to a fixed size with its mask: static
    # spatial shapes); a detector .tflite of its own at a fixed input size.
    export_formats = ("saved_model", "tflite")

    def build(self, model_config):
        return build_deformable_detr(model_config)

    def prepare_official(self, model_config, state_dict):
        """(built model, `prepare_state_dict` of ``state_dict``) for
        `DeformableDETR.load_official`; the head copies are checked before building."""
        state_dict = prepare_state_dict(model_config, state_dict)
        return self.build(model_config), state_dict

    def import_official(self, model_config, state_dict):
        """The model with the official tensors copied (`prepare_official` +
        `DeformableDETR.load_official`, which maps GroupNorm and ``level_embed`` too)."""
        model, state_dict = self.prepare_official(model_config, state_dict)
        return model, len(model.load_official(state_dict))

    def loss(self, model, batch):
        return focal_criterion_loss(model, batch, self.config.loss)


FAMILY = DeformableDetrFamily()
