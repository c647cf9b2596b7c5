"""The two-stage pipeline as a Python API: image -> person boxes -> crops -> poses.

    estimator = PoseEstimator(keypoint_model, config, detector=detector)
    persons = estimator(image)            # RGB uint8 (H, W, 3)
    persons = estimator(image, boxes=[[x, y, w, h], ...])   # boxes from elsewhere

Each person is a dict: ``box`` [x1, y1, x2, y2] pixels, ``score`` (keypoint score x
box score, spec §5.7), ``box_score``, ``keypoints`` (J, 3) [x, y, score] in pixels.
Boxes come from a person detector (`DetrPersonDetector`), from the caller, or from a
COCO detections JSON / ground truth through ``eval.py``; every box becomes a crop
(box -> center/scale with 1.25 padding), crops run in batches through the keypoint
Transformer with the readout and optional flip test, and the poses are rescored and
filtered by OKS-NMS.

Frames of a video go through `PoseEstimator.predict_batch` (the same persons as one
call per frame, in order): the detector runs once over the frames of a batch (same
size: one DETR call of batch B), and the crops of all frames go through the keypoint
model together (``config.test.batch_size`` crops per call).
"""
import numpy as np
import tensorflow as tf

from prtr_tf.data import keypoint_sets
from prtr_tf.data.transforms import box_to_center_scale
from prtr_tf.evaluation.coco import select_poses
from prtr_tf.models.detector.predict import as_person_detector
from prtr_tf.models.keypoint.data import Cropper
from prtr_tf.models.keypoint.predict import crop_to_image, predict_crops


def _checked_image(image):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} "
                         f"{image.shape}")
    return image


def detect_batch(detector, images):
    """[(boxes xywh (N, 4), scores (N,))] of ``images`` (RGB uint8, in order): one call of
    the detector's ``detect_batch`` when it has one (`DetrPersonDetector`,
    `TFLiteDetector`), else one call per image."""
    if hasattr(detector, "detect_batch"):
        return detector.detect_batch(images)
    return [detector(im) for im in images]


def _config_of(model, config, name):
    if config is not None:
        return config
    config = getattr(model, "prtr_config", None)
    if config is None:
        raise ValueError(f"no config for {name}: give the config it was built with, or load "
                         "it with prtr_tf.load(path) (a .keras model file or a training "
                         "workdir), which brings its own")
    return config


class PoseEstimator:
    """Top-down PRTR on whole images (see the module docstring)."""

    def __init__(self, keypoint_model, config=None, detector=None, flip_test=None,
                 box_threshold=None):
        """``config``: None for a model from `prtr_tf.load` (its own); ``detector``: a
        callable image -> (boxes xywh, scores), or a detector model from
        `prtr_tf.load` (wrapped in `DetrPersonDetector`)."""
        config = _config_of(keypoint_model, config, "keypoint_model")
        self.model = keypoint_model
        self.config = config
        self.detector = as_person_detector(detector)
        self.flip_test = config.test.flip_test if flip_test is None else flip_test
        self.box_threshold = config.test.image_thre if box_threshold is None else box_threshold
        self.size_hw = tuple(config.model.image_size)
        self.cropper = Cropper(config)
        flip_pairs = keypoint_sets.flip_pairs_of(config, self.flip_test)  # None: no pairs
        self._flip_pairs = flip_pairs
        self._frames_fn = None  # `_frames_crops_to_keypoints`, traced on first use
        self.flip_test = flip_pairs is not None
        self.sigmas = keypoint_sets.oks_sigmas(config)
        pixel_std = float(config.data.pixel_std)

        @tf.function(reduce_retracing=True)
        def crops_to_keypoints(image, centers, scales):
            crops = tf.map_fn(lambda cs: self.cropper(image, cs[0], cs[1])[0],
                              (centers, scales), fn_output_signature=tf.float32)
            coords, scores = predict_crops(self.model, crops, flip_pairs)
            xy = crop_to_image(coords, centers, scales, self.size_hw, pixel_std)
            return tf.concat([xy, scores[..., None]], axis=-1)

        self._crops_to_keypoints = crops_to_keypoints

    def _boxes(self, boxes, box_scores, image_hw=None):
        """Checked boxes (N, 4) xywh and scores (N,) above the box threshold, with their
        crop centres (N, 2) and scales (N, 2); with ``image_hw`` (boxes the caller gave;
        a detector's go as they come, as in the exported pipeline) the boxes are
        clipped to the image, and one outside it is a ValueError
        (`prtr_tf.data.boxes_json.fit_boxes_to_image`)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if image_hw is not None and len(boxes):
            from prtr_tf.data.boxes_json import fit_boxes_to_image
            boxes = fit_boxes_to_image(boxes, int(image_hw[1]), int(image_hw[0]),
                                       "the image", label="box")[0]
        box_scores = (np.ones(len(boxes)) if box_scores is None
                      else np.asarray(box_scores, np.float64).reshape(-1))
        if len(box_scores) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(box_scores)} box scores")
        bad = np.where(~np.all(np.isfinite(boxes), axis=1) | (boxes[:, 2] <= 0)
                       | (boxes[:, 3] <= 0))[0]
        if len(bad):
            raise ValueError(f"box #{bad[0]} = {boxes[bad[0]].tolist()} is not [x, y, w, h] "
                             "with finite w > 0 and h > 0")
        keep = box_scores >= self.box_threshold
        boxes, box_scores = boxes[keep], box_scores[keep]
        aspect = self.size_hw[1] / self.size_hw[0]
        cs = [box_to_center_scale(b, aspect, self.config.data.pixel_std,
                                  self.config.data.box_padding) for b in boxes]
        centers = np.array([c for c, _ in cs], np.float32).reshape(-1, 2)
        scales = np.array([s for _, s in cs], np.float32).reshape(-1, 2)
        return boxes, box_scores, centers, scales

    def _persons(self, keypoints, boxes, box_scores, centers, scales):
        """Rescoring and OKS-NMS of one image's poses -> person dicts."""
        kept, scores = select_poses(keypoints, centers, scales, box_scores,
                                    np.zeros(len(boxes), np.int64),
                                    self.config.test.in_vis_thre, self.config.test.oks_thre,
                                    self.config.data.pixel_std, self.sigmas)
        return [{"box": [boxes[i, 0], boxes[i, 1], boxes[i, 0] + boxes[i, 2],
                         boxes[i, 1] + boxes[i, 3]],
                 "score": float(scores[i]), "box_score": float(box_scores[i]),
                 "keypoints": keypoints[i]} for i in kept]

    def __call__(self, image, boxes=None, box_scores=None):
        image = _checked_image(image)
        given = boxes is not None  # the caller's boxes are clipped to the image
        if boxes is None:
            if self.detector is None:
                raise ValueError("no person boxes given and no detector configured")
            boxes, box_scores = self.detector(image)
        boxes, box_scores, centers, scales = self._boxes(
            boxes, box_scores, image.shape[:2] if given else None)
        if not len(boxes):
            return []
        batch = int(self.config.test.batch_size)
        keypoints = np.concatenate([
            self._crops_to_keypoints(tf.constant(image), centers[i:i + batch],
                                     scales[i:i + batch]).numpy()
            for i in range(0, len(boxes), batch)])
        return self._persons(keypoints, boxes, box_scores, centers, scales)

    def _frames_crops_to_keypoints(self, images, frame_ids, centers, scales):
        """Crops of several frames (``images`` (B, H, W, 3), crop i from frame
        ``frame_ids[i]``) -> keypoints (N, J, 3) in image pixels, in one model call."""
        if self._frames_fn is None:
            cropper, model, flip_pairs = self.cropper, self.model, self._flip_pairs
            size_hw, pixel_std = self.size_hw, float(self.config.data.pixel_std)

            @tf.function(reduce_retracing=True)
            def fn(images, frame_ids, centers, scales):
                crops = tf.map_fn(lambda a: cropper(tf.gather(images, a[0]), a[1], a[2])[0],
                                  (frame_ids, centers, scales), fn_output_signature=tf.float32)
                coords, scores = predict_crops(model, crops, flip_pairs)
                xy = crop_to_image(coords, centers, scales, size_hw, pixel_std)
                return tf.concat([xy, scores[..., None]], axis=-1)

            self._frames_fn = fn
        return self._frames_fn(images, frame_ids, centers, scales).numpy()

    def predict_batch(self, images, boxes=None, box_scores=None):
        """Persons of each of ``images`` (a list of RGB uint8 frames), in order: the same
        as ``[self(image) for image in images]`` (``boxes`` / ``box_scores``: one entry
        per image, or None for the detector), with the detector run over the batch
        (`detect_batch`) and the crops of all frames through the keypoint model together
        (``config.test.batch_size`` crops per call). Frames of different sizes are run
        one by one."""
        images = [_checked_image(im) for im in images]
        if len({im.shape for im in images}) > 1:
            return [self(im, None if boxes is None else boxes[k],
                         None if box_scores is None else box_scores[k])
                    for k, im in enumerate(images)]
        if boxes is None:
            if self.detector is None:
                raise ValueError("no person boxes given and no detector configured")
            found = detect_batch(self.detector, images)
        else:
            found = list(zip(boxes, box_scores if box_scores is not None
                             else [None] * len(boxes)))
        if len(found) != len(images):
            raise ValueError(f"{len(images)} images but boxes for {len(found)}")
        per_frame = [self._boxes(b, s, None if boxes is None else images[k].shape[:2])
                     for k, (b, s) in enumerate(found)]
        frame_ids = np.concatenate([np.full(len(f[0]), k, np.int32)
                                    for k, f in enumerate(per_frame)])
        centers = np.concatenate([f[2] for f in per_frame])
        scales = np.concatenate([f[3] for f in per_frame])
        if not len(frame_ids):
            return [[] for _ in images]
        stack = tf.constant(np.stack(images))
        batch = int(self.config.test.batch_size)
        keypoints = np.concatenate([
            self._frames_crops_to_keypoints(stack, tf.constant(frame_ids[i:i + batch]),
                                            tf.constant(centers[i:i + batch]),
                                            tf.constant(scales[i:i + batch]))
            for i in range(0, len(frame_ids), batch)])
        out, start = [], 0
        for b, s, c, sc in per_frame:
            n = len(b)
            out.append(self._persons(keypoints[start:start + n], b, s, c, sc) if n else [])
            start += n
        return out
