"""End-to-end ("sequential") PRTR: DETR person detector -> STN crop -> keypoint
Transformer, trained as one network (spec §8; options in `prtr_tf.models.end_to_end.config`).

images (B, H, W, 3) + padding mask
  -> shared backbone, levels C3..C5 (names as the backbone's ``call(return_levels=True)``
     gives; ResNet stages or HRNet's last-stage branches)
  -> DETR on the backbone's main output (``main_level``: ResNet C5, HRNet's head):
     person logits (B, Q, 2) (no-object last), boxes (B, Q, 4)
  -> the selected person queries (inference: probability >= person_threshold, at most
     max_persons per image; training: the given matched queries)
  -> their last-decoder-layer boxes, turned into sampling grids over 1.25 x the box
     (`prtr_tf.models.end_to_end.stn`) and cropped bilinearly from every configured level,
     concatenated along channels: (N, y_res, x_res, sum C_l)
  -> 1x1 conv to kpt_hidden_dim, positional encoding (``kpt_pos``), encoder-decoder
     with kpt_num_queries queries
  -> class head (J+1, background LAST, the two-stage convention) and a 3-layer MLP +
     sigmoid u in [0, 1]^2 per query, mapped to image-normalised coordinates
     x = cx + (enlarge u_x - enlarge / 2) w (1.25 u_x - 0.625 for enlarge 1.25), y
     likewise, clamped to [0, 1].

Boxes and keypoints are normalised by each image's UNPADDED size (DETR's
convention). The crop samples the padded feature maps, so the boxes are first
scaled by the valid fraction of the padded batch (spec §8 "Box conversion"),
measured on the full-resolution padding mask; the feature maps are taken to cover
the padded image exactly (true when its size is a multiple of the backbone
stride).

Output dict of ``call``:
  pred_logits (B, Q, 2), pred_boxes (B, Q, 4), aux_pred_logits, aux_pred_boxes:
      the detector's (as `prtr_tf.models.detector.model.DETR`);
  crop_batch_index, crop_query_index: int32 (N,), the image and person query of
      each crop; crop_scores (N,): its person probability; crop_boxes (N, 4): its
      box (cxcywh, image-normalised);
  kpt_pred_logits (N, Qk, J+1), kpt_pred_coords (N, Qk, 2) image-normalised (x, y),
  kpt_pred_crop_coords (N, Qk, 2): u, normalised by the crop;
  kpt_aux_pred_logits, kpt_aux_pred_coords: (Lk-1, N, Qk, ...) of the other layers.
`keypoint_outputs` renames the kpt_* entries to the keys `prtr_tf.models.keypoint.readout.readout`
and `prtr_tf.models.keypoint.loss` expect.
"""
import keras
import tensorflow as tf

from prtr_tf.models.detector.model import DETR, downsample_mask
from prtr_tf.nn.layers import conv, dense
from prtr_tf.nn.heads import MLP, query_embedding, torch_linear_init
from prtr_tf.nn.position_encoding import sine_position_encoding
from prtr_tf.models.end_to_end.stn import multi_level_crop
from prtr_tf.nn.guards import nonempty
from prtr_tf.nn.transformer import Transformer

PERSON = 0  # class index of "person" in the detector head (no-object is last)


def crop_to_image_coords(u, boxes, enlarge=1.25):
    """Crop-normalised u (..., Q, 2) -> image-normalised (x, y) (..., Q, 2).

    ``boxes`` (..., 4) cxcywh are the crops' boxes (image-normalised). The crop spans
    cx +- enlarge / 2 * w, so x = cx + (enlarge * u_x - enlarge / 2) * w; y likewise.
    Clamped to [0, 1].
    """
    boxes = tf.cast(boxes, u.dtype)
    centre = boxes[..., None, 0:2]
    size = boxes[..., None, 2:4]
    xy = centre + (enlarge * u - 0.5 * enlarge) * size
    return tf.clip_by_value(xy, 0.0, 1.0)


def select_persons(pred_logits, threshold, max_persons):
    """Inference selection: for each image, the queries with person probability
    >= threshold, at most max_persons, highest first.

    Returns (batch_index int32 (N,), query_index int32 (N,), scores (N,)), image-major.
    """
    prob = tf.nn.softmax(tf.cast(pred_logits, tf.float32), axis=-1)[..., PERSON]  # (B, Q)
    k = min(int(max_persons), int(pred_logits.shape[1]))
    scores, queries = tf.math.top_k(prob, k=k)                                 # (B, k)
    keep = scores >= threshold
    batch_index = tf.cast(tf.where(keep)[:, 0], tf.int32)
    return batch_index, tf.boolean_mask(queries, keep), tf.boolean_mask(scores, keep)


def valid_fraction(mask, dtype=tf.float32):
    """(B, 2) valid (width, height) fraction of each padded image; mask True on padding."""
    not_mask = 1.0 - tf.cast(mask, tf.float32)
    shape = tf.cast(tf.shape(not_mask), tf.float32)
    valid_w = tf.reduce_max(tf.reduce_sum(not_mask, axis=2), axis=1) / shape[2]
    valid_h = tf.reduce_max(tf.reduce_sum(not_mask, axis=1), axis=1) / shape[1]
    return tf.cast(tf.stack([valid_w, valid_h], axis=-1), dtype)


def keypoint_outputs(outputs):
    """The per-crop keypoint predictions under the two-stage key names
    (pred_logits, pred_coords, aux_pred_logits, aux_pred_coords), image-normalised."""
    return {
        "pred_logits": outputs["kpt_pred_logits"],
        "pred_coords": outputs["kpt_pred_coords"],
        "aux_pred_logits": outputs["kpt_aux_pred_logits"],
        "aux_pred_coords": outputs["kpt_aux_pred_coords"],
    }


class EndToEndPRTR(keras.Model):
    """End-to-end PRTR (see the module docstring).

    ``call(images, mask=None, crop_queries=None, training=False)``: ``mask`` (B, H, W)
    True on padding (None: no padding; pass it by keyword); ``crop_queries`` an
    optional pair (batch_index (N,), query_index (N,)) of person queries to crop
    (training: the matched ones, see `sample_matched_queries`); None selects them
    by person probability (``person_threshold``, ``max_persons``).
    """

    def __init__(self, config, **kw):
        kw.setdefault("name", "prtr_e2e")
        super().__init__(**kw)
        self.config = config
        self.num_joints = config.num_joints
        self.levels = tuple(config.levels)
        self.crop_size = tuple(config.crop_size)
        self.enlarge = float(config.enlarge)
        self.detector = DETR(config.detector)
        d = config.kpt_hidden_dim
        self.kpt_input_proj = conv(d, 1, padding=0, use_bias=True,
                                   torch_name="kpt.input_proj")
        self.kpt_query_embed = query_embedding(config.kpt_num_queries, d)
        self.kpt_query_embed.torch_name = "kpt.query_embed"
        self.kpt_transformer = Transformer(d, config.kpt_nheads, config.kpt_enc_layers,
                                           config.kpt_dec_layers, config.kpt_dim_feedforward,
                                           config.kpt_dropout, prefix="kpt.transformer",
                                           name="kpt_transformer")
        self.kpt_class_embed = dense(config.num_joints + 1, "kpt.class_embed",
                                     kernel_initializer=torch_linear_init())
        self.kpt_coord_embed = MLP(d, 2, 3, "kpt.kpt_embed", name="kpt_embed")
        if config.kpt_pos == "sine+learned":
            # DETR's PositionEmbeddingLearned tables (uniform [0, 1) init), one row per
            # crop row / column: d/4 features each.
            y_res, x_res = self.crop_size
            self.kpt_row_embed = self.add_weight(
                name="kpt_row_embed", shape=(y_res, d // 4),
                initializer=keras.initializers.RandomUniform(0.0, 1.0))
            self.kpt_col_embed = self.add_weight(
                name="kpt_col_embed", shape=(x_res, d // 4),
                initializer=keras.initializers.RandomUniform(0.0, 1.0))
        elif config.kpt_pos != "sine":
            raise ValueError(f"unknown kpt_pos {config.kpt_pos!r}")
        self.supports_masking = True  # ``mask`` is the padding mask, as in DETR

    def compute_mask(self, inputs, mask=None):
        return None

    def build(self, input_shape):
        # Sublayers build themselves on their first call (``initialize`` runs one).
        self.built = True

    @property
    def backbone(self):
        return self.detector.backbone

    def initialize(self, size=(64, 64)):
        """Creates every weight by running one small zero image (one crop forced)."""
        self(tf.zeros((1, *size, 3), self.compute_dtype),
             crop_queries=(tf.zeros([1], tf.int32), tf.zeros([1], tf.int32)), training=False)
        # The detector ran through its parts (`detect`): every weight of it exists now,
        # so it counts as built (e.g. for loading a DETR's weights into it).
        self.detector.built = True
        return self

    # -- the two halves, usable separately (training matches between them) --

    def detect(self, images, mask=None, training=False):
        """Backbone + DETR. Returns (levels dict, detector outputs, valid (B, 2))."""
        levels = self.detector.backbone(images, training=training, return_levels=True)
        missing = [name for name in self.levels if name not in levels]
        if missing:
            raise ValueError(f"levels {missing} not produced by the backbone "
                             f"(it gives {sorted(levels)})")
        last = levels[self.detector.backbone.main_level]
        feature_mask = None if mask is None else downsample_mask(mask, tf.shape(last)[1:3])
        outputs = self.detector.decode(last, feature_mask, training=training)
        if mask is None:
            valid = tf.ones([tf.shape(images)[0], 2], last.dtype)
        else:
            valid = valid_fraction(mask, last.dtype)
        return levels, outputs, valid

    def crop_keypoints(self, levels, boxes, batch_index, valid, training=False):
        """STN crop of image-normalised ``boxes`` (N, 4) of images ``batch_index`` and
        the keypoint transformer on it. Returns the kpt_* entries of the output."""
        boxes = tf.cast(boxes, levels[self.levels[0]].dtype)
        if self.config.detach_boxes:
            boxes = tf.stop_gradient(boxes)
        crops = self.crop(levels, boxes, batch_index, valid)
        return self.decode_keypoints(crops, boxes, training=training)

    def crop(self, levels, boxes, batch_index, valid):
        """(N, y_res, x_res, sum C_l) STN crops of image-normalised ``boxes`` (N, 4);
        ``valid`` (B, 2) is the valid (width, height) fraction of each padded image."""
        boxes = tf.cast(boxes, levels[self.levels[0]].dtype)
        scale = tf.cast(tf.gather(valid, batch_index), boxes.dtype)               # (N, 2)
        padded_boxes = boxes * tf.concat([scale, scale], axis=-1)
        return multi_level_crop([levels[name] for name in self.levels], padded_boxes,
                                batch_index, self.crop_size, self.enlarge)

    def position_encoding(self, dtype=tf.float32):
        """(1, y_res, x_res, d) positional encoding shared by every crop."""
        y_res, x_res = self.crop_size
        d = self.config.kpt_hidden_dim
        if self.config.kpt_pos == "sine":
            return sine_position_encoding((1, y_res, x_res), d // 2, dtype=dtype)
        sine = sine_position_encoding((1, y_res, x_res), d // 4, dtype=dtype)
        col = tf.broadcast_to(self.kpt_col_embed[None, :, :], [y_res, x_res, d // 4])
        row = tf.broadcast_to(self.kpt_row_embed[:, None, :], [y_res, x_res, d // 4])
        learned = tf.cast(tf.concat([col, row], axis=-1), dtype)[None]  # DETR: x then y
        return tf.concat([sine, learned], axis=-1)

    def decode_keypoints(self, crops, boxes, training=False):
        """Keypoint transformer on crops (N, y_res, x_res, C) of boxes (N, 4)."""
        n = tf.shape(crops)[0]
        # TF's Conv2D mishandles an empty batch (no person selected): `nonempty`.
        src = self.kpt_input_proj(nonempty(crops))[:n]
        y_res, x_res = self.crop_size
        d = src.shape[-1]
        tokens = tf.reshape(src, [n, y_res * x_res, d])
        pos = tf.reshape(self.position_encoding(src.dtype), [1, y_res * x_res, d])
        pos = tf.tile(pos, [n, 1, 1])
        query = tf.cast(self.kpt_query_embed.embeddings, src.dtype)
        hs, _ = self.kpt_transformer(tokens, pos, query, training=training)
        logits = self.kpt_class_embed(hs)                                       # (L, N, Qk, J+1)
        u = tf.sigmoid(self.kpt_coord_embed(hs))                                # (L, N, Qk, 2)
        coords = crop_to_image_coords(u, boxes[None], self.enlarge)
        return {
            "kpt_pred_logits": logits[-1],
            "kpt_pred_coords": coords[-1],
            "kpt_pred_crop_coords": u[-1],
            "kpt_aux_pred_logits": logits[:-1],
            "kpt_aux_pred_coords": coords[:-1],
        }

    def call(self, images, mask=None, crop_queries=None, training=False):
        levels, outputs, valid = self.detect(images, mask, training=training)
        if crop_queries is None:
            batch_index, query_index, scores = select_persons(
                outputs["pred_logits"], self.config.person_threshold, self.config.max_persons)
        else:
            batch_index = tf.cast(crop_queries[0], tf.int32)
            query_index = tf.cast(crop_queries[1], tf.int32)
            prob = tf.nn.softmax(tf.cast(outputs["pred_logits"], tf.float32), axis=-1)
            scores = tf.gather_nd(prob[..., PERSON], tf.stack([batch_index, query_index], -1))
        pairs = tf.stack([batch_index, query_index], axis=-1)
        boxes = tf.gather_nd(outputs["pred_boxes"], pairs)                     # (N, 4)
        outputs = dict(outputs)
        outputs.update(crop_batch_index=batch_index, crop_query_index=query_index,
                       crop_scores=scores, crop_boxes=boxes)
        outputs.update(self.crop_keypoints(levels, boxes, batch_index, valid, training))
        return outputs


def build_end_to_end(model_config, size=(64, 64)):
    """Builds (and initialises) the EndToEndPRTR of an e2e ``config.model``."""
    return EndToEndPRTR(model_config).initialize(size)
