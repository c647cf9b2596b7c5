"""Exported-model backends for `predict.py`: the same person dicts as `PoseEstimator`.

* `SavedModelEstimator`: a SavedModel written by ``export/to_saved_model.py`` (detector and
  the whole two-stage pipeline in the graph; its ``serving_default`` signature).
* `TFLiteEstimator`: `PoseEstimator` with the keypoint model + readout running from a
  ``.tflite`` file (`prtr_tf.export.tflite.export`): boxes, crops (`Cropper`), crop -> image
  mapping, rescoring and OKS-NMS are `PoseEstimator`'s own; only the crops -> keypoints
  step is the interpreter's. Crop size, normalisation, colour order and flip test come
  from the metadata embedded in the file (`prtr_tf.export.tflite.read_metadata`).
* `TFLiteDetector`: a DETR person detector ``.tflite`` (`prtr_tf.export.tflite.convert_detector`),
  interchangeable with `prtr_tf.models.detector.predict.DetrPersonDetector`.
* `build_estimator`: the estimator of a SavedModel, a .tflite or a Keras checkpoint
  (with its person detector), as ``predict.py`` asks for it.

Each estimator is called as ``estimator(image)`` or ``estimator(image, boxes=...,
box_scores=...)`` (RGB uint8 (H, W, 3)) and returns dicts with ``box`` [x1, y1, x2, y2],
``score``, ``box_score`` and ``keypoints`` (J, 3) [x, y, score] in pixels.
"""
import os
import warnings

import ml_collections
import numpy as np
import tensorflow as tf

from prtr_tf.export import tflite
from prtr_tf.data.image import normalization
from prtr_tf.data import keypoint_sets
from prtr_tf.data.keypoint_sets import DATASETS
from prtr_tf.models.keypoint.predict import crop_to_image
from prtr_tf.serving import defaults
from prtr_tf.serving.estimator import PoseEstimator
from prtr_tf.checkpoints import weights
from prtr_tf.models import registry
from prtr_tf.models.detector.resize import resize_to
from prtr_tf.models.detector.data import unnormalize_boxes

# Post-processing defaults of every shipped keypoint config (`prtr_tf.models.keypoint.config.two_stage`),
# used for .tflite files whose metadata predates the "postprocess" entry.
_DEFAULT_POSTPROCESS = {"image_thre": 0.0, "in_vis_thre": 0.2, "oks_thre": 0.9,
                        "box_padding": 1.25}


def _read_tflite_metadata(path, expected_format, what):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path!r}: no such file")
    try:
        meta = tflite.read_metadata(path)
    except Exception as e:  # not a flatbuffer at all
        raise ValueError(f"{what} {path!r} is not a TFLite model ({type(e).__name__}: {e})") \
            from e
    if meta is None or not str(meta.get("format", "")).startswith(expected_format):
        found = None if meta is None else meta.get("format")
        raise ValueError(f"{what} {path!r} has no {expected_format} metadata (found format "
                         f"{found!r}); export it with export/to_tflite.py")
    return meta


def config_from_metadata(meta, config=None):
    """A keypoint config for `PoseEstimator` from the .tflite metadata.

    Crop size, dataset, colour order, mean/std, pixel_std and flip test always come from
    the metadata. With ``config`` (e.g. --config) its ``test`` settings and
    ``data.box_padding`` are used, after checking that its crop size and normalisation
    agree with the file (ValueError naming the field otherwise); without it the
    metadata's ``postprocess`` values (or the shipped configs' defaults).
    """
    inp = meta["input"]
    h, w = (int(v) for v in inp["crop_size_hw"])
    color_rgb = inp["color_order"] == "RGB"
    if config is not None:
        ours = {"model.image_size": [int(v) for v in config.model.image_size],
                "data.color_rgb": bool(config.data.color_rgb),
                "data.mean": [float(v) for v in config.data.mean],
                "data.std": [float(v) for v in config.data.std],
                "data.dataset": str(config.data.dataset)}
        theirs = {"model.image_size": [h, w], "data.color_rgb": color_rgb,
                  "data.mean": [float(v) for v in inp["mean"]],
                  "data.std": [float(v) for v in inp["std"]],
                  "data.dataset": str(meta["dataset"])}
        for key, value in ours.items():
            other = theirs[key]
            same = (np.allclose(value, other, rtol=1e-6) if isinstance(value, list)
                    else value == other)
            if not same:
                raise ValueError(f"--config {key} = {value} but the .tflite was exported with "
                                 f"{other}; pass the config the model was exported from, or "
                                 "leave --config out (the file's metadata is then used)")
        post = {"image_thre": float(config.test.image_thre),
                "in_vis_thre": float(config.test.in_vis_thre),
                "oks_thre": float(config.test.oks_thre),
                "box_padding": float(config.data.box_padding)}
        batch = int(config.test.batch_size)
    else:
        post = {**_DEFAULT_POSTPROCESS, **meta.get("postprocess", {})}
        batch = 32
    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict({"image_size": (h, w),
                                         "num_joints": len(meta["keypoint_names"])})
    c.data = ml_collections.ConfigDict({
        "dataset": str(meta["dataset"]), "color_rgb": color_rgb,
        "mean": tuple(float(v) for v in inp["mean"]),
        "std": tuple(float(v) for v in inp["std"]),
        "pixel_std": float(inp["pixel_std"]), "box_padding": float(post["box_padding"])})
    if c.data.dataset == keypoint_sets.CUSTOM:  # the keypoint set travels in the metadata
        c.data.keypoints = keypoint_sets.keypoints_config_of(
            keypoint_sets.set_from_metadata(meta, "the .tflite"), "the .tflite metadata")
    c.test = ml_collections.ConfigDict({
        "flip_test": bool(meta["flip_test"]), "image_thre": float(post["image_thre"]),
        "in_vis_thre": float(post["in_vis_thre"]), "oks_thre": float(post["oks_thre"]),
        "batch_size": batch})
    return c


class TFLiteEstimator(PoseEstimator):
    """`PoseEstimator` whose crops -> keypoints step is a keypoint .tflite file.

    Args:
      path: the .tflite file (with prtr_tf metadata).
      config: optional keypoint config (post-processing settings; checked against the
        file, see `config_from_metadata`).
      detector: person detector (`DetrPersonDetector` or `TFLiteDetector`) or None.
      box_threshold: as `PoseEstimator`.
      use_xnnpack, num_threads: passed to `prtr_tf.export.tflite.make_interpreter`.
    """

    def __init__(self, path, config=None, detector=None, box_threshold=None,
                 use_xnnpack=True, num_threads=None):
        self.path = path
        self.metadata = _read_tflite_metadata(path, "prtr_tf.keypoints", "--tflite")
        config = config_from_metadata(self.metadata, config)
        # The flip test is in the .tflite graph (metadata "flip_test"), never added here.
        super().__init__(None, config, detector=detector, flip_test=False,
                         box_threshold=box_threshold)
        self.flip_test = bool(self.metadata["flip_test"])
        self.batch = int(self.metadata["input"]["shape"][0])
        self.runner = tflite.make_interpreter(path, use_xnnpack=use_xnnpack,
                                              num_threads=num_threads).get_signature_runner()
        cropper = self.cropper

        @tf.function(reduce_retracing=True)
        def crop(image, centers, scales):
            return tf.map_fn(lambda cs: cropper(image, cs[0], cs[1])[0], (centers, scales),
                             fn_output_signature=tf.float32)

        @tf.function(reduce_retracing=True)
        def crop_frames(images, frame_ids, centers, scales):
            return tf.map_fn(lambda a: cropper(tf.gather(images, a[0]), a[1], a[2])[0],
                             (frame_ids, centers, scales), fn_output_signature=tf.float32)

        self._crop = crop
        self._crop_frames = crop_frames
        self._crops_to_keypoints = self._tflite_crops_to_keypoints

    def run_crops(self, crops):
        """Normalised crops (N, H, W, 3) -> (keypoints (N, J, 2) normalised, scores (N, J))
        through the interpreter, in batches of the file's fixed batch size."""
        crops = np.asarray(crops, np.float32)
        coords, scores = [], []
        for i in range(0, len(crops), self.batch):
            chunk = crops[i:i + self.batch]
            n = len(chunk)
            if n < self.batch:  # the last batch, padded with copies of its first crop
                chunk = np.concatenate([chunk, np.repeat(chunk[:1], self.batch - n, 0)])
            out = self.runner(images=chunk)
            coords.append(out["keypoints"][:n])
            scores.append(out["keypoint_scores"][:n])
        return np.concatenate(coords), np.concatenate(scores)

    def _tflite_crops_to_keypoints(self, image, centers, scales):
        crops = self._crop(image, tf.constant(centers), tf.constant(scales)).numpy()
        coords, scores = self.run_crops(crops)
        xy = crop_to_image(tf.constant(coords), tf.constant(centers), tf.constant(scales),
                           self.size_hw, float(self.config.data.pixel_std))
        return tf.concat([xy, tf.constant(scores)[..., None]], axis=-1)

    def _frames_crops_to_keypoints(self, images, frame_ids, centers, scales):
        """`PoseEstimator.predict_batch`'s step: the crops of all frames of a batch
        through the interpreter together (in the file's batch size)."""
        crops = self._crop_frames(images, frame_ids, centers, scales).numpy()
        coords, scores = self.run_crops(crops)
        xy = crop_to_image(tf.constant(coords), centers, scales, self.size_hw,
                           float(self.config.data.pixel_std))
        return tf.concat([xy, tf.constant(scores)[..., None]], axis=-1).numpy()


class TFLiteDetector:
    """A detector .tflite (`prtr_tf.export.tflite.convert_detector`): RGB uint8 image ->
    (person boxes [x, y, w, h] pixels (N, 4), scores (N,)) with score >= threshold
    (default: the file's metadata ``score_threshold``, recorded at export from
    `prtr_tf.serving.defaults.PERSON_SCORE_THRESHOLD`, the default of every prediction
    path; that constant for files exported before it was recorded), like
    `DetrPersonDetector`. The image is resized (no padding) to the file's fixed input
    size and normalised per its metadata.
    """

    def __init__(self, path, score_threshold=None, use_xnnpack=True, num_threads=None):
        self.metadata = _read_tflite_metadata(path, "prtr_tf.detector", "--detector_tflite")
        inp = self.metadata["input"]
        if score_threshold is None:
            score_threshold = self.metadata.get(  # older files: the prediction default
                "score_threshold", defaults.PERSON_SCORE_THRESHOLD)
        self.threshold = float(score_threshold)
        self.runner = tflite.make_interpreter(path, use_xnnpack=use_xnnpack,
                                              num_threads=num_threads).get_signature_runner()
        self.batch = int(inp["shape"][0])
        h, w = (int(v) for v in inp["size_hw"])
        gain, offset = normalization(inp["mean"], inp["std"])
        bgr = inp["color_order"] == "BGR"

        @tf.function(reduce_retracing=True)
        def prepare(image):
            x, _ = resize_to(tf.cast(image, tf.float32), tf.zeros((0, 4)), h, w)
            if bgr:
                x = tf.reverse(x, axis=[-1])
            return x * gain - offset

        self._prepare = prepare

    def __call__(self, image):
        return self.detect_batch([image])[0]

    def detect_batch(self, images):
        """[(boxes, scores)] of several images, in order: the file's batch dimension
        filled with up to that many images per interpreter call (a file exported with
        batch 1 runs one call per image)."""
        found = []
        for i in range(0, len(images), self.batch):
            chunk = images[i:i + self.batch]
            x = np.stack([self._prepare(tf.constant(im)).numpy() for im in chunk])
            if len(x) < self.batch:  # padded with copies of the last image
                x = np.concatenate([x, np.repeat(x[-1:], self.batch - len(x), axis=0)])
            out = self.runner(images=x)
            for k, image in enumerate(chunk):
                boxes = unnormalize_boxes(out["boxes"][k], image.shape[:2])
                scores = np.asarray(out["scores"][k])
                keep = (scores >= self.threshold) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
                found.append((boxes[keep], scores[keep]))
        return found


class SavedModelEstimator:
    """The ``serving_default`` signature of a SavedModel from ``export/to_saved_model.py``
    (detector, crops, keypoint model, rescoring and OKS-NMS all in the graph; box
    threshold, person cap and flip test fixed at export).

    ``box_score`` is the signature's ``box_scores`` output (the detector's P(person) of
    each kept box). SavedModels exported before that output existed lack it: their
    ``box_score`` is None, with one warning at load naming the folder (re-export with
    export/to_saved_model.py to get the scores).
    """

    def __init__(self, path):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"--saved_model {path!r}: no such folder")
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise FileNotFoundError(f"--saved_model {path!r} has no saved_model.pb (not a "
                                    "SavedModel; write one with export/to_saved_model.py)")
        loaded = tf.saved_model.load(path)
        if "serving_default" not in loaded.signatures:
            raise ValueError(f"--saved_model {path!r} has no serving_default signature (only "
                             f"{sorted(loaded.signatures)}); export it with a detector "
                             "(export/to_saved_model.py --detector_config ...)")
        self._loaded = loaded  # keeps the variables alive
        self.fn = loaded.signatures["serving_default"]
        outputs, inputs = self.fn.structured_outputs, self.fn.structured_input_signature[1]
        missing = [k for k in ("boxes", "scores", "keypoints", "keypoint_scores",
                               "num_persons") if k not in outputs]
        if missing or "image" not in inputs:
            raise ValueError(f"--saved_model {path!r} is not a prtr-tf pose export: its "
                             f"serving_default takes {sorted(inputs)} and returns "
                             f"{sorted(outputs)} (a prtr-tf export takes 'image' and returns "
                             "boxes, scores, keypoints, keypoint_scores, num_persons); "
                             "write one with prtr-export saved_model")
        from prtr_tf.serving import metadata
        meta = metadata.read(path)
        # The person threshold fixed in the graph at export (None: exported before the
        # metadata recorded it).
        self.score_threshold = (None if meta is None or meta.get("score_threshold") is None
                                else float(meta["score_threshold"]))
        self.has_box_scores = "box_scores" in self.fn.structured_outputs
        if not self.has_box_scores:
            warnings.warn(f"--saved_model {path!r}: serving_default has no 'box_scores' "
                          "output (exported by an older version); \"box_score\" will be "
                          "null. Re-export it with export/to_saved_model.py to get the "
                          "detector's box scores.", stacklevel=2)

    @classmethod
    def from_function(cls, fn, score_threshold=None):
        """The same over a concrete function with serving_default's signature and
        outputs (e.g. `prtr_tf.models.end_to_end.serving.EndToEndServing`'s, not exported);
        ``score_threshold``: the person threshold in ``fn``, when known."""
        self = cls.__new__(cls)
        self._loaded, self.fn = None, fn
        self.score_threshold = None if score_threshold is None else float(score_threshold)
        self.has_box_scores = "box_scores" in fn.structured_outputs
        return self

    def predict_batch(self, images, boxes=None, box_scores=None):
        """One ``serving_default`` call per frame (the signature takes one image), in
        order."""
        if boxes is not None:
            raise ValueError("this model finds the persons itself; boxes cannot be given")
        return [self(image) for image in images]

    def __call__(self, image, boxes=None, box_scores=None):
        if boxes is not None:
            raise ValueError("this model finds the persons itself; boxes cannot be given")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} "
                             f"{image.shape}")
        out = {k: v.numpy() for k, v in self.fn(image=tf.constant(image)).items()}
        n = int(out["num_persons"])
        return [{"box": out["boxes"][i].astype(np.float64), "score": float(out["scores"][i]),
                 "box_score": (float(out["box_scores"][i]) if self.has_box_scores
                               else None),
                 "keypoints": np.concatenate([out["keypoints"][i],
                                              out["keypoint_scores"][i][:, None]], axis=-1)}
                for i in range(n)]


def build_estimator(saved_model=None, tflite=None, config=None, checkpoint=None,
                    detector_config=None, detector_checkpoint=None, detector_tflite=None,
                    box_thr=None, flip_test=None, log=None, precision="float32"):
    """The estimator of one of three backends (what ``predict.py`` runs), and the
    keypoint set (a `prtr_tf.data.keypoint_sets` set: the exports' metadata, the config's; None
    when unknown) for drawing.

    * ``saved_model``: a SavedModel folder (`SavedModelEstimator`; everything else None);
    * ``tflite``: a keypoint .tflite (`TFLiteEstimator`; ``config`` optional), boxes
      from a Keras detector (``detector_config`` + ``detector_checkpoint``), a
      ``detector_tflite`` or none (boxes given per call);
    * ``config`` + ``checkpoint``: the Keras model of a pose family (`prtr_tf.models.registry.POSE`)
      (`prtr_tf.checkpoints.weights.load_model`); its kind's ``estimator`` (`prtr_tf.models.registry`):
      `PoseEstimator` with the detector, or the end-to-end model (no detector).

    ``precision``: of the Keras models ('float32' or 'bfloat16', `prtr_tf.nn.precision`;
    exported models keep theirs). ``box_thr``: minimum person score (default: the
    prediction default `prtr_tf.serving.defaults.PERSON_SCORE_THRESHOLD` for detected
    persons, for a Keras or .tflite detector and the end-to-end model alike; boxes
    given per call: the keypoint config's ``test.image_thre``); ``flip_test``:
    None for the config's (a .tflite must agree with its metadata). ``log``: called
    with one line per loaded model (e.g. ``print``). FileNotFoundError for missing
    files, ValueError for models or configs that do not fit.
    """

    log = log or (lambda line: None)
    if saved_model:
        estimator = SavedModelEstimator(saved_model)
        log(f"SavedModel: {saved_model}")
        from prtr_tf.serving import metadata
        meta = metadata.read(saved_model)
        if meta is not None:
            return estimator, keypoint_sets.set_from_metadata(meta, saved_model)
        # Exported before the metadata existed: the built-in set of that many joints.
        joints = estimator.fn.structured_outputs["keypoints"].shape[1]
        found = [d for d in DATASETS.values() if len(d["joints"]) == joints]
        return estimator, (found[0] if found else None)
    if detector_checkpoint and detector_config is None:
        raise ValueError("--detector_checkpoint needs --detector_config (the detector's "
                         "config)")
    if not tflite and (config is None or not checkpoint):
        raise ValueError("the keypoint model is needed: --config and --checkpoint, or "
                         "--tflite, or --saved_model")
    # Missing weights files fail before any model is built.
    for path, what in ((detector_checkpoint, "--detector_checkpoint"),
                       (None if tflite else checkpoint, "--checkpoint")):
        if path:
            weights.resolve(path, what)
    detector = None
    if detector_checkpoint and detector_config is not None and config is not None:
        # A custom detector config given without its data flags (an older workdir
        # records no set) takes the pose model's set: one set of data flags for both.
        config = weights.config_and_name(config)[0]
        weights.recorded_set(config, checkpoint)
        if keypoint_sets.has_own_set(config):
            keypoint_sets.adopt(detector_config, config, "--config")
    if detector_checkpoint:
        from prtr_tf.models.detector.predict import DetrPersonDetector
        det_model, detector_config, det_file = weights.load_model(
            detector_config, detector_checkpoint, "--detector_checkpoint", role=registry.DETECTOR,
            config_flag="--detector_config", precision=precision)
        detector = DetrPersonDetector(det_model, detector_config, score_threshold=box_thr)
        log(f"person detector: {det_file}")
    elif detector_tflite:
        detector = TFLiteDetector(detector_tflite, box_thr)
        log(f"person detector: {detector_tflite}")
    if tflite:
        estimator = TFLiteEstimator(tflite, config, detector, box_threshold=box_thr)
        if flip_test is not None and flip_test != estimator.flip_test:
            raise ValueError(f"--flip_test={flip_test} but {tflite!r} was exported with "
                             f"flip_test={estimator.flip_test} (in the graph); re-export "
                             "(export/to_tflite.py --flip_test) or drop --flip_test")
        log(f"keypoint model: {tflite}")
        return estimator, keypoint_sets.set_from_metadata(estimator.metadata, tflite)
    model, config, file = weights.load_model(config, checkpoint, "--checkpoint",
                                             role=registry.POSE, config_flag="--config",
                                             precision=precision)
    kind = registry.get(config)
    log(f"{'keypoint' if kind.needs_detector else 'end-to-end'} model: {file}")
    estimator = kind.estimator(model, config, detector=detector, box_threshold=box_thr,
                               flip_test=flip_test)
    return estimator, keypoint_sets.of_config(config)
