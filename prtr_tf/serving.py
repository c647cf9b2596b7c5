"""In-graph serving functions: what `export/saved_model.py` writes into a SavedModel.

    serving = PoseServing(keypoint_model, config, detector, detector_config)
    serving.serve_crops(crops)          # float32 (B, H, W, 3) normalised crops
    serving.serve_image(image)          # uint8 (H, W, 3), any size: the two-stage pipeline
    serving.serve_encoded(image_bytes)  # string scalar: JPEG/PNG/BMP/GIF bytes

Everything is plain TensorFlow (no py_function / numpy_function), so the graphs can be
saved, served by TF Serving / ``saved_model_cli`` and converted by tf2onnx.

`serve_image` reproduces `prtr_tf.pipeline.PoseEstimator` with a
`prtr_tf.detection.evaluate.DetrPersonDetector`:

1. DETR preprocessing (`prtr_tf.detection.data.resize`: shortest side
   ``data.test_size``, longest <= ``data.max_size``; DETR normalisation) and forward;
   P(person) = softmax over all classes (no-object included);
2. boxes with P(person) >= ``score_threshold`` (and positive width and height), at most
   ``max_persons`` of them, best first;
3. box -> center/scale (HRNet ``_xywh2cs``: crop aspect ratio, ``data.box_padding``,
   ``data.pixel_std``; computed in float64 like the NumPy code), crops with `Cropper`;
4. keypoint model + readout (+ flip test when enabled), crop -> image pixels;
5. rescoring (mean of the joint scores > ``test.in_vis_thre``, times the box score) and
   greedy OKS-NMS at ``test.oks_thre`` (`oks_nms_tf`, = `prtr_tf.evaluation.nms.oks_nms`).

``resize="matmul"`` computes the detector resize and the crops as matrix products
(`resize_matmul`, `crops_matmul`; equal up to float rounding) instead of the
ScaleAndTranslate / MatrixInverse / ImageProjectiveTransformV3 ops that tf2onnx cannot
convert: then the whole pipeline converts to ONNX. Joint sets other than COCO's 17 have
no OKS sigmas: no NMS there (persons best first).

Outputs (N = persons kept, best first): boxes (N, 4) [x1, y1, x2, y2] pixels, scores
(N,) (rescored), box_scores (N,) (the detector's P(person) of each kept box, the
``box_score`` of `PoseEstimator`; same order as the other outputs), keypoints (N, J, 2)
pixels, keypoint_scores (N, J), num_persons () int32. N may be 0: every output is then
empty. (SavedModels exported before box_scores existed lack that output.)
"""
import os

import numpy as np
import tensorflow as tf

from prtr_tf.config import DATASETS
from prtr_tf.data.pipeline import Cropper, decode_bytes, normalization
from prtr_tf.detection.data import person_label, resize, resize_size
from prtr_tf.detection.evaluate import person_scores
from prtr_tf.evaluation.nms import COCO_SIGMAS
from prtr_tf.inference import crop_to_image, predict_crops

DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_MAX_PERSONS = 20
RESIZE_MODES = ("tf", "matmul")


def _antialias_weights(in_size, out_size):
    """(out, in) float32 weights of TF's antialiased bilinear resize along one axis
    (ScaleAndTranslate with the triangle kernel, translation 0, as `tf.image.resize`)."""
    in_f, out_f = tf.cast(in_size, tf.float32), tf.cast(out_size, tf.float32)
    inv_scale = 1.0 / (out_f / in_f)           # TF's rounding: 1 / (out / in)
    inv_kernel_scale = 1.0 / tf.maximum(inv_scale, 1.0)
    sample = (tf.cast(tf.range(out_size), tf.float32) + 0.5) * inv_scale
    source = tf.cast(tf.range(in_size), tf.float32) + 0.5
    w = tf.maximum(0.0, 1.0 - tf.abs((source[None, :] - sample[:, None]) * inv_kernel_scale))
    return w / tf.reduce_sum(w, axis=1, keepdims=True)


def resize_matmul(image, size, max_size=None):
    """`prtr_tf.detection.data.resize` (image only) as two matrix products: the same
    antialiased bilinear weights, without the ScaleAndTranslate op (which tf2onnx cannot
    convert). Before rounding it equals `tf.image.resize` to ~1e-4 (of 255); values
    within that of a .5 round the other way (a few pixels per image)."""
    shape = tf.shape(image)
    out_h, out_w = resize_size(shape[0], shape[1], size, max_size)
    rows = _antialias_weights(shape[0], out_h)
    cols = _antialias_weights(shape[1], out_w)
    x = tf.transpose(tf.cast(image, tf.float32), [2, 0, 1])              # (3, H, W)
    y = tf.matmul(tf.matmul(rows, x), cols, transpose_b=True)          # (3, h, w)
    return tf.clip_by_value(tf.round(tf.transpose(y, [1, 2, 0])), 0.0, 255.0)


def detector_resize(image, test_size, max_size, mode="tf"):
    """uint8 (H, W, 3) -> float32 image resized as the detector evaluates (shortest side
    ``test_size``, longest <= ``max_size``): `prtr_tf.detection.data.resize` ("tf") or
    `resize_matmul` ("matmul": equal up to float rounding, convertible by tf2onnx)."""
    if mode == "matmul":
        return resize_matmul(image, test_size, max_size)
    x, _ = resize(tf.cast(image, tf.float32), tf.zeros((0, 4)), test_size, max_size)
    return x


def _sampling_weights(in_size, out_size, a, b):
    """(N, out, in) float32 weights of the bilinear, zero-border sampling of source
    coordinate a * i + b at output index i (a, b: (N,) float32): ImageProjectiveTransformV3
    along one axis (each neighbour outside the source contributes 0)."""
    i = tf.cast(tf.range(out_size), tf.float32)
    pos = a[:, None] * i[None, :] + b[:, None]                                # (N, out)
    floor = tf.floor(pos)
    frac = (pos - floor)[..., None]
    source = tf.cast(tf.range(in_size), tf.float32)[None, None, :]
    zeros = tf.zeros_like(source * frac)
    return (tf.where(source == floor[..., None], (floor[..., None] + 1.0) - pos[..., None],
                     zeros)
            + tf.where(source == floor[..., None] + 1.0, frac, zeros))


def crops_matmul(cropper, image, centers, scales):
    """`Cropper` (rotation 0, no flip) for N boxes at once as matrix products: the
    axis-aligned bilinear warp is separable. No MatrixInverse / ImageProjectiveTransform
    ops (which tf2onnx cannot convert); equal to `Cropper` up to float rounding (a value
    within ~1e-4 of a .5 may round the other way)."""
    height, width = cropper.size_hw
    centers = tf.cast(centers, tf.float64)
    k = width / (cropper.pixel_std * tf.cast(scales[:, 0], tf.float64))        # (N,)
    # crop = k (p - c) + (W/2, H/2); inverse p = q / k + (c - (W/2, H/2) / k)
    inv = 1.0 / k
    bx = centers[:, 0] - inv * (width * 0.5)
    by = centers[:, 1] - inv * (height * 0.5)
    shape = tf.shape(image)
    rows = _sampling_weights(shape[0], height, tf.cast(inv, tf.float32),
                             tf.cast(by, tf.float32))                           # (N, H, h)
    cols = _sampling_weights(shape[1], width, tf.cast(inv, tf.float32),
                             tf.cast(bx, tf.float32))                           # (N, W, w)
    x = tf.transpose(tf.cast(image, tf.float32), [2, 0, 1])[None]              # (1, 3, h, w)
    crops = tf.matmul(tf.matmul(rows[:, None], x), cols[:, None], transpose_b=True)
    crops = tf.transpose(crops, [0, 2, 3, 1])                                  # (N, H, W, 3)
    if not cropper.color_rgb:
        crops = tf.reverse(crops, axis=[-1])
    return tf.round(crops) * cropper.gain - cropper.offset


def box_to_center_scale_tf(boxes, aspect_ratio, pixel_std=200.0, padding=1.25):
    """Vectorised `prtr_tf.data.transforms.box_to_center_scale`: [x, y, w, h] boxes (N, 4)
    -> (center (N, 2), scale (N, 2)), float32; computed in the boxes' dtype (use float64
    to match the NumPy function to the last bit)."""
    boxes = tf.convert_to_tensor(boxes)
    x, y, w, h = tf.unstack(boxes, 4, axis=-1)
    center = tf.stack([x + w * 0.5, y + h * 0.5], axis=-1)
    wider = w > aspect_ratio * h
    taller = w < aspect_ratio * h
    h2 = tf.where(wider, w * 1.0 / aspect_ratio, h)
    w2 = tf.where(taller, h * aspect_ratio, w)
    scale = tf.stack([w2 / pixel_std, h2 / pixel_std], axis=-1)
    # NumPy: the center is rounded to float32 before the (never true) -1 test.
    center32 = tf.cast(center, tf.float32)
    pad = tf.where(center32[:, :1] != -1.0, tf.cast(padding, boxes.dtype),
                   tf.ones_like(scale[:, :1]))
    scale = tf.cast(tf.cast(scale, tf.float32), boxes.dtype) * pad  # float32 scale, as NumPy
    return center32, tf.cast(scale, tf.float32)


def oks_iou_matrix_tf(keypoints, areas, sigmas):
    """OKS between all pairs: keypoints (N, J, 2), areas (N,) -> (N, N), as
    `prtr_tf.evaluation.nms.oks_iou` with ``in_vis_thre=None``."""
    dtype = keypoints.dtype
    variances = tf.constant((np.asarray(sigmas, np.float64) * 2) ** 2, dtype)
    sq = tf.reduce_sum(tf.square(keypoints[None, :, :, :2] - keypoints[:, None, :, :2]),
                       axis=-1)                                              # (g, d, J)
    denom = (areas[:, None] + areas[None, :]) / 2.0 + tf.constant(np.spacing(1), dtype)
    e = sq / variances / denom[..., None] / 2.0
    return tf.reduce_mean(tf.exp(-e), axis=-1)


def oks_nms_tf(keypoints, scores, areas, thresh=0.9, sigmas=None):
    """Greedy OKS-NMS in-graph (`prtr_tf.evaluation.nms.oks_nms` with in_vis_thre None).

    Args:
      keypoints: (N, J, 2) or (N, J, 3) poses (only x, y are used); N may be 0.
      scores: (N,) person scores; areas: (N,) the poses' areas.
      thresh: OKS above which a lower-scored pose is suppressed.
      sigmas: (J,) per-joint sigmas; None = COCO's (J must then be 17).

    Returns:
      int32 (K,) indices of the kept poses, best score first.
    """
    keypoints = tf.convert_to_tensor(keypoints)
    num_joints = keypoints.shape[1]
    sigmas = COCO_SIGMAS if sigmas is None else np.asarray(sigmas, np.float64)
    if sigmas.shape != (num_joints,):
        raise ValueError(f"OKS sigmas have shape {sigmas.shape}, but poses have {num_joints} "
                         "joints; pass sigmas= for non-COCO joint sets")
    scores = tf.convert_to_tensor(scores)
    areas = tf.cast(areas, keypoints.dtype)
    n = tf.shape(scores)[0]
    # HRNet's order is scores.argsort()[::-1]: a stable ascending sort, reversed.
    order = tf.reverse(tf.argsort(scores, stable=True), axis=[0])
    kpts = tf.gather(keypoints[..., :2], order)
    oks = oks_iou_matrix_tf(kpts, tf.gather(areas, order), sigmas)      # sorted (N, N)
    positions = tf.range(n)

    def body(i, alive):
        # Pose i (in score order) survives if nothing before it suppressed it; then it
        # removes every later pose whose OKS with it is not <= thresh (NaN included).
        is_alive = tf.gather(alive, i)
        drop = tf.logical_not(tf.gather(oks, i) <= thresh) & (positions > i) & is_alive
        return i + 1, alive & tf.logical_not(drop)

    _, alive = tf.while_loop(lambda i, alive: i < n, body,
                             (tf.constant(0), tf.ones_like(positions, tf.bool)))
    return tf.boolean_mask(order, alive)


def rescore_tf(keypoint_scores, box_scores, in_vis_thre=0.2):
    """`prtr_tf.evaluation.coco.rescore` in-graph: (N, J), (N,) -> (N,)."""
    valid = keypoint_scores > in_vis_thre
    count = tf.reduce_sum(tf.cast(valid, keypoint_scores.dtype), axis=1)
    total = tf.reduce_sum(tf.where(valid, keypoint_scores, tf.zeros_like(keypoint_scores)), 1)
    mean = tf.where(count > 0, total / tf.maximum(count, 1.0), tf.zeros_like(total))
    return mean * tf.cast(box_scores, keypoint_scores.dtype)


class PoseServing(tf.Module):
    """The exported functions (see the module docstring).

    Args:
      keypoint_model: the built PRTR keypoint model.
      config: its config (``model.image_size``, ``data``, ``test``).
      detector: the built DETR (only needed by `serve_image` / `serve_encoded`).
      detector_config: its config (``data.test_size``, ``max_size``, ``mean``, ``std``).
      score_threshold: minimum P(person) of a box (>=).
      max_persons: the most boxes kept (best first) per image.
      flip_test: average with the mirrored crop (None: ``config.test.flip_test``).
      resize: "tf": the detector's resize and the crops as `DetrPersonDetector` and
        `PoseEstimator` (tf.image.resize, `Cropper`); "matmul": both as matrix
        products (`resize_matmul`, `crops_matmul`: the same up to float rounding), which
        lets tf2onnx convert the whole pipeline.
    """

    def __init__(self, keypoint_model, config, detector=None, detector_config=None,
                 score_threshold=DEFAULT_SCORE_THRESHOLD, max_persons=DEFAULT_MAX_PERSONS,
                 flip_test=None, resize="tf"):
        super().__init__(name="pose_serving")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        self.resize = resize
        if max_persons < 1:
            raise ValueError(f"max_persons must be >= 1, got {max_persons}")
        self.model = keypoint_model
        self.detector = detector
        self.config = config
        self.size_hw = tuple(int(v) for v in config.model.image_size)
        self.num_joints = int(config.model.num_joints)
        self.flip_test = bool(config.test.flip_test if flip_test is None else flip_test)
        self.flip_pairs = (DATASETS[config.data.dataset]["flip_pairs"]
                           if self.flip_test else None)
        self.pixel_std = float(config.data.pixel_std)
        self.padding = float(config.data.box_padding)
        self.in_vis_thre = float(config.test.in_vis_thre)
        self.oks_thre = float(config.test.oks_thre)
        self.sigmas = COCO_SIGMAS if self.num_joints == len(COCO_SIGMAS) else None
        self.score_threshold = float(score_threshold)
        self.max_persons = int(max_persons)
        self.cropper = Cropper(config)
        if detector is not None:
            if detector_config is None:
                raise ValueError("a detector needs its detector_config")
            data = detector_config.data
            self.label = person_label(detector_config)
            self.det_gain, self.det_offset = normalization(data.mean, data.std)
            self.test_size, self.max_size = int(data.test_size), int(data.max_size)
        height, width = self.size_hw
        self.crops_signature = [tf.TensorSpec([None, height, width, 3], tf.float32,
                                              name="images")]
        self.image_signature = [tf.TensorSpec([None, None, 3], tf.uint8, name="image")]
        self.encoded_signature = [tf.TensorSpec([], tf.string, name="image_bytes")]

    # --- crops ---------------------------------------------------------------------

    def _predict(self, images):
        """(coords (B, J, 2) normalised, scores (B, J), query (B, J)): `predict_crops`
        plus the readout's queries (of the unflipped crop)."""
        coords, scores, query = predict_crops(self.model, images, self.flip_pairs,
                                              return_query=True)
        return coords, scores, query

    def serve_crops(self, images):
        """images float32 (B, H, W, 3), normalised crops -> keypoints (B, J, 2) in crop
        pixels, keypoint_scores (B, J), query int32 (B, J)."""
        coords, scores, query = self._predict(images)
        height, width = self.size_hw
        return {"keypoints": coords * tf.constant([width, height], coords.dtype),
                "keypoint_scores": scores, "query": query}

    # --- whole images --------------------------------------------------------------

    def _detect(self, image):
        """uint8 (H, W, 3) -> (boxes [x, y, w, h] float64 (n, 4), scores float32 (n,)),
        thresholded, at most max_persons, best first."""
        x = detector_resize(image, self.test_size, self.max_size, self.resize)
        out = self.detector((x * self.det_gain - self.det_offset)[None], training=False)
        boxes = tf.cast(out["pred_boxes"][0], tf.float64)
        scores = person_scores(out["pred_logits"], self.label)[0]
        shape = tf.cast(tf.shape(image), tf.float64)
        h, w = shape[0], shape[1]
        cx, cy, bw, bh = tf.unstack(boxes, 4, axis=-1)
        boxes = tf.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h], axis=-1)
        keep = (scores >= self.score_threshold) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        boxes, scores = tf.boolean_mask(boxes, keep), tf.boolean_mask(scores, keep)
        k = tf.minimum(tf.shape(scores)[0], self.max_persons)
        top = tf.math.top_k(scores, k=k, sorted=True).indices
        return tf.gather(boxes, top), tf.gather(scores, top)

    def serve_image(self, image):
        """uint8 (H, W, 3) -> the persons (see the module docstring)."""
        if self.detector is None:
            raise ValueError("serve_image needs a detector")
        image = tf.convert_to_tensor(image)
        boxes, box_scores = self._detect(image)
        n = tf.shape(boxes)[0]
        height, width = self.size_hw
        centers, scales = box_to_center_scale_tf(boxes, width / height, self.pixel_std,
                                                 self.padding)
        # At least one crop goes through the model (a dummy one when no box is left), so
        # that the model and the readout never see an empty batch; sliced off below.
        pad = tf.maximum(1 - n, 0)
        centers_p = tf.concat([centers, tf.zeros([pad, 2], tf.float32)], axis=0)
        scales_p = tf.concat([scales, tf.ones([pad, 2], tf.float32)], axis=0)
        if self.resize == "matmul":
            crops = crops_matmul(self.cropper, image, centers_p, scales_p)
        else:
            crops = tf.map_fn(lambda cs: self.cropper(image, cs[0], cs[1])[0],
                              (centers_p, scales_p), fn_output_signature=tf.float32)
        crops = tf.ensure_shape(crops, [None, height, width, 3])
        coords, kpt_scores, _ = self._predict(crops)
        xy = crop_to_image(coords, centers_p, scales_p, self.size_hw, self.pixel_std)
        xy, kpt_scores = xy[:n], kpt_scores[:n]
        scores = rescore_tf(kpt_scores, box_scores, self.in_vis_thre)
        if self.sigmas is not None:
            areas = tf.reduce_prod(scales * self.pixel_std, axis=1)
            kept = oks_nms_tf(xy, scores, areas, self.oks_thre, self.sigmas)
        else:  # no OKS sigmas for this joint set: no NMS, best first
            kept = tf.reverse(tf.argsort(scores, stable=True), axis=[0])
        boxes = tf.cast(tf.gather(boxes, kept), tf.float32)
        xyxy = tf.concat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=-1)
        return {"boxes": tf.reshape(xyxy, [-1, 4]),
                "scores": tf.gather(scores, kept),
                "box_scores": tf.reshape(tf.cast(tf.gather(box_scores, kept), tf.float32),
                                         [-1]),
                "keypoints": tf.reshape(tf.gather(xy, kept), [-1, self.num_joints, 2]),
                "keypoint_scores": tf.reshape(tf.gather(kpt_scores, kept),
                                              [-1, self.num_joints]),
                "num_persons": tf.shape(kept)[0]}

    def serve_encoded(self, image_bytes):
        """JPEG/PNG/BMP/GIF bytes (string scalar) -> as `serve_image` (RGB, first frame;
        JPEGs with the accurate DCT, as PIL and the data pipeline decode them:
        `prtr_tf.data.pipeline.decode_bytes`)."""
        return self.serve_image(decode_bytes(image_bytes))

    def functions(self):
        """{endpoint name: (function, input signature)}; serving_default = serve_image
        (only the crop endpoint without a detector)."""
        fns = {"serve_crops": (self.serve_crops, self.crops_signature)}
        if self.detector is not None:
            fns["serving_default"] = (self.serve_image, self.image_signature)
            fns["serve_encoded"] = (self.serve_encoded, self.encoded_signature)
        return fns

    def tf_functions(self):
        """The same as `tf.function`s (for use without exporting)."""
        return {name: tf.function(fn, input_signature=sig)
                for name, (fn, sig) in self.functions().items()}


# --- loading and exporting -----------------------------------------------------------

def load_weights(model, checkpoint, what, config_name):
    """Loads a *.weights.h5 into ``model``; errors name the file, the model kind
    (``what``) and the config, with the likely cause."""
    if not checkpoint or not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"{what} checkpoint {checkpoint!r} does not exist")
    if not str(checkpoint).endswith(".weights.h5"):
        raise ValueError(f"{what} checkpoint {checkpoint!r} is not a Keras weights file "
                         "(*.weights.h5; convert official .pth files with prtr_tf.convert)")
    try:
        model.load_weights(checkpoint)
    except Exception as e:  # noqa: BLE001 - re-raised with the likely cause
        raise ValueError(f"{what} checkpoint {checkpoint!r} does not fit the model of "
                         f"config {config_name!r} (wrong config?): {e}") from e
    return model


def load_models(config, checkpoint, detector_config=None, detector_checkpoint=None):
    """Config names/paths (or ConfigDicts) and weights files -> (keypoint model, config,
    detector or None, detector config or None), with clear errors for missing files
    and for a detector config given as keypoint config (or the reverse)."""
    from prtr_tf.config import load_config
    from prtr_tf.models import build_model

    def _config(value, what):
        return (load_config(value), str(value)) if isinstance(value, str) else (value, what)

    config, name = _config(config, "keypoint config")
    if config.model.get("kind", "prtr") == "detr":
        raise ValueError(f"--config {name!r} is a DETR detector config; pass a keypoint "
                         "config (e.g. configs/coco_res50_384x288.py)")
    model = load_weights(build_model(config.model), checkpoint, "keypoint", name)
    detector = None
    if detector_config is not None:
        from prtr_tf.models.detr import build_detector
        detector_config, det_name = _config(detector_config, "detector config")
        if detector_config.model.get("kind", "prtr") != "detr":
            raise ValueError(f"--detector_config {det_name!r} is not a DETR detector config "
                             "(model.kind != 'detr'); e.g. configs/detr_r50_person.py")
        detector = load_weights(build_detector(detector_config.model), detector_checkpoint,
                                 "detector", det_name)
    return model, config, detector, detector_config


def export_saved_model(serving, output, verbose=False):
    """Writes ``serving``'s functions as a SavedModel (`keras.export.ExportArchive`):
    signatures serving_default (= serve_image), serve_crops, serve_encoded."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(serving.model)
    if serving.detector is not None:
        archive.track(serving.detector)
    for name, (fn, signature) in serving.functions().items():
        archive.add_endpoint(name, fn, input_signature=signature)
    archive.write_out(output, verbose=verbose)
    return output
