"""In-graph serving functions: what `export/to_saved_model.py` writes into a SavedModel.

    serving = PoseServing(keypoint_model, config, detector, detector_config)
    serving.serve_crops(crops)          # float32 (B, H, W, 3) normalised crops
    serving.serve_image(image)          # uint8 (H, W, 3), any size: the two-stage pipeline
    serving.serve_encoded(image_bytes)  # string scalar: JPEG/PNG/BMP/GIF bytes

Everything is plain TensorFlow (no py_function / numpy_function), so the graphs can be
saved, served by TF Serving / ``saved_model_cli`` and converted by tf2onnx.

`serve_image` reproduces `prtr_tf.serving.estimator.PoseEstimator` with a
`prtr_tf.models.detector.predict.DetrPersonDetector`:

1. DETR preprocessing (`prtr_tf.models.detector.augment.resize`: shortest side
   ``data.test_size``, longest <= ``data.max_size``; DETR normalisation) and forward;
   P(person) = the model's own score (`model_person_scores`: DETR's softmax over all
   classes, no-object included; Deformable DETR's sigmoid). A detector with static
   spatial shapes (``static_spatial_shapes``: Deformable DETR) gets the resized image
   zero-padded to one fixed size (`detector_pad_size`: ``data.pad_size``, else
   ``max_size`` squared) with its padding mask, as its evaluation batches;
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
import tensorflow as tf

from prtr_tf.data import keypoint_sets
from prtr_tf.data.image import normalization
from prtr_tf.models.keypoint.data import Cropper
from prtr_tf.data.transforms import box_to_center_scale_tf
from prtr_tf.models.detector.predict import model_person_scores, relax_shapes
from prtr_tf.models.detector.records import person_label
from prtr_tf.models.keypoint.predict import crop_to_image, predict_crops
from prtr_tf.nn.guards import nonempty
from prtr_tf.serving.inputs import checked_crops
from prtr_tf.serving.module import ServingModule
from prtr_tf.models.detector.resize import detector_pad_size, pad_with_mask
from prtr_tf.serving.ops import crops_matmul, detector_resize, select_poses_tf

DEFAULT_MAX_PERSONS = 20


class PoseServing(ServingModule):
    """The exported functions (see the module docstring).

    Args:
      keypoint_model: the built PRTR keypoint model.
      config: its config (``model.image_size``, ``data``, ``test``).
      detector: the built DETR (only needed by `serve_image` / `serve_encoded`).
      detector_config: its config (``data.test_size``, ``max_size``, ``mean``, ``std``).
      score_threshold: minimum P(person) of a box (>=); None: the prediction default
        `prtr_tf.serving.defaults.PERSON_SCORE_THRESHOLD`.
      max_persons: the most boxes kept (best first) per image.
      flip_test: average with the mirrored crop (None: ``config.test.flip_test``).
      resize: "tf": the detector's resize and the crops as `DetrPersonDetector` and
        `PoseEstimator` (tf.image.resize, `Cropper`); "matmul": both as matrix
        products (`resize_matmul`, `crops_matmul`: the same up to float rounding), which
        lets tf2onnx convert the whole pipeline.
    """

    def __init__(self, keypoint_model, config, detector=None, detector_config=None,
                 score_threshold=None, max_persons=DEFAULT_MAX_PERSONS,
                 flip_test=None, resize="tf"):
        super().__init__(keypoint_model, config, score_threshold, resize, "pose_serving")
        if max_persons < 1:
            raise ValueError(f"max_persons must be >= 1, got {max_persons}")
        self.detector = detector
        self.size_hw = tuple(int(v) for v in config.model.image_size)
        self.flip_test = bool(config.test.flip_test if flip_test is None else flip_test)
        self.flip_pairs = keypoint_sets.flip_pairs_of(config, self.flip_test)  # None: no pairs
        self.flip_test = self.flip_pairs is not None
        self.pixel_std = float(config.data.pixel_std)
        self.padding = float(config.data.box_padding)
        self.max_persons = int(max_persons)
        self.cropper = Cropper(config)
        if detector is not None:
            if detector_config is None:
                raise ValueError("a detector needs its detector_config")
            data = detector_config.data
            self.label = person_label(detector_config)
            self.det_gain, self.det_offset = normalization(data.mean, data.std)
            self.test_size, self.max_size = int(data.test_size), int(data.max_size)
            # Static spatial shapes (Deformable DETR): pad to one fixed size with a mask.
            self.det_pad_hw = None if relax_shapes(detector) else detector_pad_size(data)
        height, width = self.size_hw
        self.crops_signature = [tf.TensorSpec([None, height, width, 3], tf.float32,
                                              name="images")]

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
        images = checked_crops(images, self.size_hw)
        n = tf.shape(images)[0]  # an empty batch goes through as one filler crop
        coords, scores, query = self._predict(nonempty(images))
        height, width = self.size_hw
        return {"keypoints": coords[:n] * tf.constant([width, height], coords.dtype),
                "keypoint_scores": scores[:n], "query": query[:n]}

    # --- whole images --------------------------------------------------------------

    def _detect(self, image):
        """uint8 (H, W, 3) -> (boxes [x, y, w, h] float64 (n, 4), scores float32 (n,)),
        thresholded, at most max_persons, best first."""
        x = detector_resize(image, self.test_size, self.max_size, self.resize)
        x = x * self.det_gain - self.det_offset
        if self.det_pad_hw is None:
            out = self.detector(x[None], training=False)
        else:  # boxes stay normalised by the unpadded size
            x, mask = pad_with_mask(x, self.det_pad_hw)
            out = self.detector(x[None], mask=mask[None], training=False)
        boxes = tf.cast(out["pred_boxes"][0], tf.float64)
        scores = model_person_scores(self.detector, out, self.label)[0]
        shape = tf.cast(tf.shape(image), tf.float64)
        h, w = shape[0], shape[1]
        cx, cy, bw, bh = tf.unstack(boxes, 4, axis=-1)
        boxes = tf.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h], axis=-1)
        keep = (scores >= self.score_threshold) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        boxes, scores = tf.boolean_mask(boxes, keep), tf.boolean_mask(scores, keep)
        k = tf.minimum(tf.shape(scores)[0], self.max_persons)
        top = tf.math.top_k(scores, k=k, sorted=True).indices
        return tf.gather(boxes, top), tf.gather(scores, top)

    def detect_and_read(self, image):
        """uint8 (H, W, 3), checked -> the persons (see the module docstring)."""
        if self.detector is None:
            raise ValueError("serve_image needs a detector")
        boxes, box_scores = self._detect(image)
        n = tf.shape(boxes)[0]
        height, width = self.size_hw
        centers, scales = box_to_center_scale_tf(boxes, width / height, self.pixel_std,
                                                 self.padding)
        # The model and the readout never see an empty batch (`nonempty`); sliced below.
        centers_p, scales_p = nonempty(centers, 0.0), nonempty(scales, 1.0)
        if self.resize == "matmul":
            crops = crops_matmul(self.cropper, image, centers_p, scales_p)
        else:
            crops = tf.map_fn(lambda cs: self.cropper(image, cs[0], cs[1])[0],
                              (centers_p, scales_p), fn_output_signature=tf.float32)
        crops = tf.ensure_shape(crops, [None, height, width, 3])
        coords, kpt_scores, _ = self._predict(crops)
        xy = crop_to_image(coords, centers_p, scales_p, self.size_hw, self.pixel_std)
        xy, kpt_scores = xy[:n], kpt_scores[:n]
        areas = tf.reduce_prod(scales * self.pixel_std, axis=1)
        kept, scores = select_poses_tf(xy, kpt_scores, box_scores, areas, self.in_vis_thre,
                                       self.oks_thre, self.sigmas)
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

    def functions(self):
        """{endpoint name: (function, input signature)}; serving_default = serve_image
        (only the crop endpoint without a detector)."""
        fns = {"serve_crops": (self.serve_crops, self.crops_signature)}
        if self.detector is not None:
            fns["serving_default"] = (self.serve_image, self.image_signature)
            fns["serve_encoded"] = (self.serve_encoded, self.encoded_signature)
        return fns
