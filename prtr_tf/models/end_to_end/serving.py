"""In-graph serving of the end-to-end PRTR: what `export/to_saved_model.py` writes for an
end-to-end config (``model.kind == "prtr_e2e"``).

    serving = EndToEndServing(model, config)
    serving.serve_image(image)          # uint8 (H, W, 3), any size
    serving.serve_encoded(image_bytes)  # string scalar: JPEG/PNG/BMP/GIF bytes

`serve_image` reproduces the evaluation (`prtr_tf.models.end_to_end.predict`) on one image:

1. the evaluation preprocessing: shortest side ``data.test_size`` (longest <=
   ``data.max_size``, `prtr_tf.serving.ops.detector_resize`; ``resize="matmul"`` lets
   tf2onnx convert ``serving_default``), normalised, zero-padded at the
   bottom and right to a multiple of ``data.pad_multiple`` (padding mask 1);
2. the model: person queries with P(person) >= ``model.person_threshold``, at most
   ``model.max_persons``, cropped and read out (`prtr_tf.models.end_to_end.predict.poses`);
   then only those with P(person) >= ``score_threshold`` are kept;
3. rescoring (mean of the joint scores > ``test.in_vis_thre``, times P(person)) and
   greedy OKS-NMS at ``test.oks_thre`` (area: the crop's, ``model.enlarge``^2 x the
   box area), as `prtr_tf.models.end_to_end.evaluate.results`.

Outputs (N persons kept, best first): boxes (N, 4) [x1, y1, x2, y2] pixels, scores
(N,) (rescored), box_scores (N,) (P(person)), keypoints (N, J, 2) pixels (COCO's
pixel-index convention), keypoint_scores (N, J), num_persons () int32.
"""
import tensorflow as tf

from prtr_tf.data.image import normalization
from prtr_tf.models.end_to_end.predict import poses
from prtr_tf.serving.module import ServingModule
from prtr_tf.serving.ops import detector_resize, select_poses_tf


class EndToEndServing(ServingModule):
    """The exported functions of an end-to-end model (see the module docstring)."""

    detector = None  # the person detector is part of ``model``

    def __init__(self, model, config, score_threshold=None, resize="tf"):
        super().__init__(model, config, score_threshold, resize, "e2e_serving")
        data = config.data
        self.gain, self.offset = normalization(data.mean, data.std)
        self.test_size, self.max_size = int(data.test_size), int(data.max_size)
        self.pad_multiple = int(data.get("pad_multiple") or 1)
        self.enlarge = float(config.model.enlarge)

    def preprocess(self, image):
        """uint8 (H, W, 3) -> (normalised padded image (1, H', W', 3), mask (1, H', W'))."""
        x = detector_resize(image, self.test_size, self.max_size, self.resize)
        x = x * self.gain - self.offset
        shape = tf.shape(x)
        pad_h, pad_w = -shape[0] % self.pad_multiple, -shape[1] % self.pad_multiple
        x = tf.pad(x, [[0, pad_h], [0, pad_w], [0, 0]])
        mask = tf.pad(tf.zeros(shape[:2], tf.float32), [[0, pad_h], [0, pad_w]],
                      constant_values=1.0)
        return x[None], mask[None]

    def detect_and_read(self, image):
        """uint8 (H, W, 3), checked -> the persons (see the module docstring)."""
        x, mask = self.preprocess(image)
        found = poses(self.model, x, mask)
        keep = found["scores"] >= self.score_threshold
        box_scores = tf.boolean_mask(found["scores"], keep)
        boxes = tf.boolean_mask(found["boxes"], keep)
        kpts = tf.boolean_mask(found["keypoints"], keep)
        kpt_scores = tf.boolean_mask(found["keypoint_scores"], keep)
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        scale = tf.stack([size[1], size[0]])
        xy = kpts * scale - 0.5
        centre, wh = boxes[:, :2] * scale, boxes[:, 2:] * scale
        areas = tf.reduce_prod(wh * self.enlarge, axis=1)
        kept, scores = select_poses_tf(xy, kpt_scores, box_scores, areas, self.in_vis_thre,
                                       self.oks_thre, self.sigmas)
        xyxy = tf.concat([centre - wh / 2, centre + wh / 2], axis=-1)
        return {"boxes": tf.reshape(tf.gather(xyxy, kept), [-1, 4]),
                "scores": tf.gather(scores, kept),
                "box_scores": tf.gather(box_scores, kept),
                "keypoints": tf.reshape(tf.gather(xy, kept), [-1, self.num_joints, 2]),
                "keypoint_scores": tf.reshape(tf.gather(kpt_scores, kept),
                                              [-1, self.num_joints]),
                "num_persons": tf.shape(kept)[0]}

    def functions(self):
        """{endpoint name: (function, input signature)}."""
        return {"serving_default": (self.serve_image, self.image_signature),
                "serve_encoded": (self.serve_encoded, self.encoded_signature)}
