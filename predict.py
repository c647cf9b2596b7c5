"""Two-stage PRTR pose estimation on images (and videos): writes annotated images
and a results JSON.

    python predict.py --source=photos/ --output=out/ \\
        --config=configs/coco_res50_384x288.py --checkpoint=res50_384x288.weights.h5 \\
        --detector_config=configs/detr_r50_person.py --detector_checkpoint=detr.weights.h5
    python predict.py --source='photos/*.jpg' --output=out/ --config=configs/synthetic_tiny.py \\
        --checkpoint=runs/tiny --boxes_json=detections.json
    python predict.py --source=photos/ --output=out/ --saved_model=exported/prtr_res50
    python predict.py --source=photos/ --output=out/ --tflite=keypoints_fp32.tflite \\
        --detector_tflite=detector_fp32.tflite      # or --boxes_json / --detector_config+checkpoint

Three ways to run the keypoint model, one per run:
  * --config + --checkpoint: the Keras model (`prtr_tf.serving.estimator.PoseEstimator`); an
    end-to-end config (configs/e2e_*.py) finds the persons itself (no box source;
    --box_thr is its P(person) threshold, default 0.5);
  * --saved_model DIR: a SavedModel from export/saved_model.py, whose serving_default
    holds the detector and the whole pipeline (box threshold, person cap and flip test
    fixed at export; no --config, --boxes_json, detector flags, --box_thr or
    --flip_test). An end-to-end export (configs/e2e_*.py) works the same way. A
    SavedModel exported before serving_default returned box_scores gives
    "box_score": null (with a warning);
  * --tflite FILE: a keypoint .tflite from export/tflite.py on the same crops as the
    Keras path (`prtr_tf.serving.backends.TFLiteEstimator`); crop size, normalisation
    and flip test are read from the file's metadata (--flip_test must agree with it),
    --config is optional (its test thresholds are then used, after checking it matches
    the file). Boxes from --boxes_json, --detector_config + --detector_checkpoint or a
    detector .tflite (--detector_tflite; box threshold default 0.5).

--source: an image file, a folder (its files, not recursive; hidden files
skipped), a glob pattern (quote it), or a video file (.mp4, .avi, .mov, .mkv,
.webm, ...; read with imageio, which needs a video backend such as
imageio[ffmpeg] or imageio[pyav]; without one the video is reported as failed).

Person boxes come from a DETR person detector (--detector_config +
--detector_checkpoint) or from --boxes_json, one of two layouts (told apart by
the top-level JSON type):
  * a dict {file name: [[x, y, w, h, score], ...]} (score optional, default 1),
    keyed by the file's base name ("img.jpg") or by the path as listed;
  * a COCO detections results list [{"image_id", "bbox": [x, y, w, h], "score",
    "category_id"}], entries with a category_id other than 1 ignored; an image_id
    matches the file whose name stem is that number (000000000785.jpg <-> 785)
    or equals it as a string.
Boxes are in the original image's pixels (after EXIF rotation). A file without
boxes gets no persons. --checkpoint / --detector_checkpoint: a *.weights.h5 file
or a training workdir (its best.weights.h5, else last.weights.h5).

Output (--output DIR): one annotated image per input (<stem>_pose.jpg; video
frames in <stem>_frames/), and results.json: a list of {"file", "frame" (videos
only), "width", "height", "annotated", "persons": [{"box" [x1, y1, x2, y2],
"score", "box_score", "keypoints" [[x, y, score] x J]}]} in original-image
pixels. Failures are also written to failures.json.

Inputs: grayscale, palette, RGBA (composited on white), CMYK and 16-bit images are
converted to RGB uint8 (16-bit values scaled by 255/65535); EXIF orientation is
applied; images with a side above --max_side are downscaled for the model (a note
says so; results are mapped back to original coordinates, the annotated image is
saved at the reduced size); images beyond Pillow's decompression-bomb limit
(--max_pixels) and unreadable, empty or non-image files are reported with their
name and reason and the remaining files are processed.

Exit status: 0 when at least one input was processed, 1 when every input failed,
2 (absl usage error) for bad flags or a --source matching nothing.
"""
import glob
import json
import math
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: E402

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg",
                    ".wmv", ".flv", ".3gp")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


class InputError(Exception):
    """An input that cannot be processed; the message is the reason shown to the user."""


# ----------------------------------------------------------------------------- inputs

def collect_sources(source, exclude_dir=None):
    """--source -> sorted list of file paths (a file, a folder's files, or a glob)."""
    if os.path.isdir(source):
        files = [os.path.join(source, n) for n in sorted(os.listdir(source))
                 if not n.startswith(".") and os.path.isfile(os.path.join(source, n))]
    elif os.path.isfile(source):
        files = [source]
    elif glob.has_magic(source):
        files = [p for p in sorted(glob.glob(source, recursive=True)) if os.path.isfile(p)]
    else:
        raise FileNotFoundError(f"--source {source!r}: no such file or folder")
    if exclude_dir:
        root = os.path.realpath(exclude_dir) + os.sep
        files = [p for p in files if not os.path.realpath(p).startswith(root)]
    return files


def to_rgb_uint8(img):
    """Any PIL image -> (RGB uint8 array (H, W, 3), list of notes)."""
    notes = []
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(img).astype(np.float64)
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            low, high = values.min(), values.max()
            values = (values - low) * (255.0 / max(high - low, 1.0))
            notes.append("32-bit integer image min-max scaled to 8 bits")
        else:
            values = values * (255.0 / 65535.0)
            notes.append("16-bit image scaled to 8 bits")
        gray = np.clip(np.round(values), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1), notes
    if mode == "F":
        values = np.asarray(img, np.float64)
        values = np.nan_to_num(values)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0
        else:
            low, high = (values.min(), values.max()) if values.size else (0.0, 1.0)
            values = (values - low) * (255.0 / max(high - low, 1e-12))
        notes.append("floating-point image scaled to 8 bits")
        gray = np.clip(np.round(values), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1), notes
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB")
                                                      and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
        notes.append("transparency composited on white")
    try:
        rgb = img.convert("RGB")
    except (ValueError, OSError) as e:
        raise InputError(f"cannot convert image mode {mode} to RGB ({e})") from e
    return np.asarray(rgb, np.uint8), notes


def _exif_orientation(img):
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # malformed EXIF: exif_transpose will ignore it as well
        return 1


def load_image(path, max_side=4096):
    """Reads an image file for the model.

    Returns (rgb uint8 (h, w, 3) at the working size, (W, H) original size after
    EXIF rotation, (sx, sy) original / working scale factors, notes). Raises
    InputError with the reason for files that cannot be used.
    """
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise InputError(f"cannot read file ({e.strerror or e})") from e
    if size == 0:
        raise InputError("empty file (0 bytes)")
    notes = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            img = Image.open(path)
            with img:
                if getattr(img, "n_frames", 1) > 1:
                    notes.append(f"{img.n_frames} frames: the first is used")
                stored_w, stored_h = img.size
                orientation = _exif_orientation(img)
                orig_wh = (stored_h, stored_w) if orientation in (5, 6, 7, 8) else \
                    (stored_w, stored_h)
                if max_side and max(stored_w, stored_h) > max_side and img.format == "JPEG":
                    # Decode JPEGs directly at a reduced scale (>= the requested size).
                    s = max_side / max(stored_w, stored_h)
                    img.draft("RGB", (math.ceil(stored_w * s), math.ceil(stored_h * s)))
                img.load()
                img = ImageOps.exif_transpose(img)
                if orientation != 1:
                    notes.append(f"EXIF orientation {orientation} applied")
            for w in caught:
                if issubclass(w.category, Image.DecompressionBombWarning):
                    notes.append(f"very large image ({stored_w}x{stored_h})")
    except Image.DecompressionBombError as e:
        raise InputError(f"refused by Pillow's decompression-bomb protection ({e}); "
                         "raise --max_pixels if the file is trusted") from e
    except UnidentifiedImageError as e:
        raise InputError("not an image (format not recognised by Pillow)") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"cannot decode image ({e})") from e
    rgb, more = to_rgb_uint8(img)
    notes += more
    height, width = rgb.shape[:2]
    if max_side and max(width, height) > max_side:
        s = max_side / max(width, height)
        new = (max(1, round(width * s)), max(1, round(height * s)))
        rgb = np.asarray(Image.fromarray(rgb).resize(new, Image.BILINEAR, reducing_gap=2.0))
        height, width = rgb.shape[:2]
    if (width, height) != tuple(orig_wh):
        notes.append(f"downscaled from {orig_wh[0]}x{orig_wh[1]} to {width}x{height} "
                     "(--max_side); results in original coordinates")
    scale = (orig_wh[0] / width, orig_wh[1] / height)
    return rgb, tuple(orig_wh), scale, notes


def iter_video_frames(path):
    """Yields the frames of a video as RGB uint8 arrays (imageio; needs a backend)."""
    try:
        import imageio.v3 as iio
    except ImportError as e:
        raise InputError("reading videos needs imageio (not installed); extract the "
                         "frames first (e.g. ffmpeg -i clip.mp4 frames/%06d.png) and pass "
                         "the folder") from e
    try:
        for frame in iio.imiter(path):
            yield frame
    except InputError:
        raise
    except Exception as e:  # imageio raises OSError/ValueError/plugin errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot read video with imageio ({first}); a video backend is "
                         "needed: pip install 'imageio[ffmpeg]' or 'imageio[pyav]', or "
                         "extract the frames (ffmpeg -i clip.mp4 frames/%06d.png) and pass "
                         "the folder") from e


def frame_to_rgb(frame):
    """A video frame array -> RGB uint8 (H, W, 3)."""
    frame = np.asarray(frame)
    if frame.dtype == np.uint16:
        frame = np.round(frame * (255.0 / 65535.0))
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.shape[-1] == 1:
        frame = np.repeat(frame, 3, axis=-1)
    return np.ascontiguousarray(frame[..., :3])


# ----------------------------------------------------------------------------- boxes

def load_boxes_json(path):
    """--boxes_json -> a function file path -> (boxes xywh (N, 4), scores (N,)) or None
    when the JSON has no entry for that file (see the module docstring for layouts)."""
    with open(path) as f:
        data = json.load(f)
    table = {}
    if isinstance(data, dict):
        for key, rows in data.items():
            rows = [list(r) for r in rows]
            for r in rows:
                if len(r) not in (4, 5):
                    raise ValueError(f"{path}: {key!r}: expected [x, y, w, h] or "
                                     f"[x, y, w, h, score], got {r}")
            table[str(key)] = ([r[:4] for r in rows], [r[4] if len(r) == 5 else 1.0
                                                       for r in rows])

        def lookup(file):
            for key in (file, os.path.basename(file), os.path.normpath(file)):
                if key in table:
                    return table[key]
            return None
    elif isinstance(data, list):
        for i, det in enumerate(data):
            if not isinstance(det, dict) or "image_id" not in det or "bbox" not in det:
                raise ValueError(f"{path}: entry #{i} is not a COCO detection "
                                 "{image_id, bbox, score}")
            if det.get("category_id", 1) != 1:
                continue
            boxes, scores = table.setdefault(str(det["image_id"]), ([], []))
            boxes.append(list(det["bbox"])[:4])
            scores.append(float(det.get("score", 1.0)))

        def lookup(file):
            stem = os.path.splitext(os.path.basename(file))[0]
            if stem in table:
                return table[stem]
            if stem.isdigit() and str(int(stem)) in table:
                return table[str(int(stem))]
            return None
    else:
        raise ValueError(f"{path}: expected a JSON dict {{file: [[x, y, w, h, score], ...]}} "
                         "or a COCO detections list")

    def boxes_for(file):
        found = lookup(file)
        if found is None:
            return None
        boxes = np.asarray(found[0], np.float64).reshape(-1, 4)
        return boxes, np.asarray(found[1], np.float64).reshape(-1)
    return boxes_for


# ----------------------------------------------------------------------------- running

def persons_to_original(persons, scale):
    """Person dicts at the working size -> JSON-ready dicts in original pixels."""
    sx, sy = scale
    factor = np.array([sx, sy, sx, sy])
    out = []
    for p in persons:
        kpts = np.asarray(p["keypoints"], np.float64).copy()
        kpts[:, 0] *= sx
        kpts[:, 1] *= sy
        out.append({"box": [round(float(v), 2) for v in np.asarray(p["box"]) * factor],
                    "score": float(p["score"]),
                    "box_score": None if p["box_score"] is None else float(p["box_score"]),
                    "keypoints": [[round(float(x), 2), round(float(y), 2), float(s)]
                                  for x, y, s in kpts]})
    return out


class _Names:
    """Unique output names inside the output folder."""

    def __init__(self):
        self.used = set()

    def __call__(self, path, suffix):
        stem, ext = os.path.splitext(os.path.basename(path))
        candidates = [f"{stem}{suffix}", f"{stem}_{ext.lstrip('.')}{suffix}"]
        candidates += [f"{stem}_{i}{suffix}" for i in range(2, 100000)]
        for name in candidates:
            if name not in self.used:
                self.used.add(name)
                return name
        raise RuntimeError("too many inputs with the same name")


def _define_flags():
    """Defines the command-line flags (only when run as a script, so that the helpers
    above can be imported, e.g. by tests, without touching absl's global flags)."""
    from absl import flags
    from ml_collections import config_flags

    f = {}
    f["source"] = flags.DEFINE_string(
        "source", None, "An image file, a folder of images, a glob pattern (quoted) or a "
        "video file.")
    f["output"] = flags.DEFINE_string(
        "output", None, "Output folder: annotated images, results.json, failures.json.")
    f["config"] = config_flags.DEFINE_config_file(
        "config", None, "Keypoint model config file (configs/*.py).", lock_config=False)
    f["checkpoint"] = flags.DEFINE_string(
        "checkpoint", None, "Keypoint model weights: *.weights.h5 or a training workdir.")
    f["detector_config"] = config_flags.DEFINE_config_file(
        "detector_config", None, "DETR person detector config file (e.g. "
        "configs/detr_r50_person.py); with --detector_checkpoint.", lock_config=False)
    f["detector_checkpoint"] = flags.DEFINE_string(
        "detector_checkpoint", None, "Detector weights: *.weights.h5 or a training workdir.")
    f["boxes_json"] = flags.DEFINE_string(
        "boxes_json", None, "Person boxes instead of a detector: {file name: [[x, y, w, h, "
        "score], ...]} or a COCO detections results list (image_id = numeric file stem).")
    f["kpt_thr"] = flags.DEFINE_float(
        "kpt_thr", 0.3, "Joints scoring below this are not drawn (all are in results.json).")
    f["box_thr"] = flags.DEFINE_float(
        "box_thr", None, "Minimum person box score (detector or --boxes_json) for a box to "
        "be used; default: the detector config's test.score_thre for detections and the "
        "keypoint config's test.image_thre for boxes.")
    f["flip_test"] = flags.DEFINE_bool(
        "flip_test", None, "Average with the mirrored crop (default: config.test.flip_test).")
    f["max_side"] = flags.DEFINE_integer(
        "max_side", 4096, "Images with a longer side are downscaled to it before inference "
        "(results are mapped back to original pixels); 0: never.")
    f["max_pixels"] = flags.DEFINE_integer(
        "max_pixels", None, "Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS; "
        "files above twice it are refused). Default: Pillow's; 0: no limit.")
    f["max_frames"] = flags.DEFINE_integer(
        "max_frames", 0, "Videos: process at most this many frames (0: all).")
    f["saved_model"] = flags.DEFINE_string(
        "saved_model", None, "A SavedModel folder from export/saved_model.py (detector + "
        "pipeline inside), instead of --config/--checkpoint and the box flags.")
    f["tflite"] = flags.DEFINE_string(
        "tflite", None, "A keypoint .tflite from export/tflite.py, instead of --checkpoint "
        "(--config optional); boxes from --boxes_json or a detector.")
    f["detector_tflite"] = flags.DEFINE_string(
        "detector_tflite", None, "A detector .tflite from export/tflite.py (instead of "
        "--detector_config + --detector_checkpoint).")
    return f


def _usage(message):
    """A usage error (absl prints the message and the usage line) exiting with 2, so
    that it is told apart from exit status 1 (every input failed)."""
    from absl import app
    return app.UsageError(message, exitcode=2)


def _check_flags(v):
    """Usage errors for contradictory or missing flags (see the module docstring)."""
    if not v["source"] or not v["output"]:
        raise _usage("--source and --output are required")
    has_det_keras = v["detector_config"] is not None or bool(v["detector_checkpoint"])
    if v["saved_model"]:
        given = [f"--{k}" for k in ("checkpoint", "tflite", "boxes_json", "detector_checkpoint",
                                    "detector_tflite", "box_thr", "flip_test")
                 if v[k] not in (None, "")]
        given += [f"--{k}" for k in ("config", "detector_config") if v[k] is not None]
        if given:
            raise _usage(f"--saved_model runs the exported pipeline (its detector, box "
                         f"threshold and flip test fixed at export): drop {', '.join(given)}")
        return
    if v["config"] is not None and v["config"].model.get("kind", "prtr") == "prtr_e2e":
        given = [f"--{k}" for k in ("tflite", "boxes_json", "detector_checkpoint",
                                    "detector_tflite", "flip_test") if v[k] not in (None, "")]
        given += ["--detector_config"] if v["detector_config"] is not None else []
        if given:
            raise _usage(f"--config is an end-to-end model (it detects the persons itself, "
                         f"without flip test): drop {', '.join(given)}")
        if not v["checkpoint"]:
            raise _usage("--checkpoint is needed with --config")
        return
    if v["tflite"] and v["checkpoint"]:
        raise _usage("give either --tflite (a keypoint .tflite) or --checkpoint (Keras "
                     "weights), not both")
    if not v["tflite"] and (v["config"] is None or not v["checkpoint"]):
        raise _usage("the keypoint model is needed: --config and --checkpoint, or --tflite, "
                     "or --saved_model")
    if v["detector_tflite"] and not v["tflite"]:
        raise _usage("--detector_tflite goes with --tflite; with --checkpoint use "
                     "--detector_config + --detector_checkpoint")
    sources = [name for name, given in (
        ("--boxes_json", bool(v["boxes_json"])),
        ("--detector_config/--detector_checkpoint", has_det_keras),
        ("--detector_tflite", bool(v["detector_tflite"]))) if given]
    if len(sources) > 1:
        raise _usage(f"give one source of person boxes, not {' and '.join(sources)}")
    if not sources:
        raise _usage("person boxes are needed: --detector_config and --detector_checkpoint, "
                     + ("--detector_tflite, " if v["tflite"] else "") + "or --boxes_json")
    if has_det_keras and not (v["detector_config"] is not None and v["detector_checkpoint"]):
        raise _usage("--detector_config and --detector_checkpoint go together")


def _build(flags_, resolve_weights):
    """The estimator for the flags: image (+ boxes) -> person dicts; and the dataset name
    (joint names and skeleton for drawing)."""
    from prtr_tf.detector.predict import DetrPersonDetector
    from prtr_tf.detector.model import build_detector
    from prtr_tf.serving import backends as predict_backends

    v = {k: h.value for k, h in flags_.items()}
    if v["saved_model"]:
        try:
            estimator = predict_backends.SavedModelEstimator(v["saved_model"])
        except (FileNotFoundError, ValueError) as e:
            raise _usage(str(e)) from e
        print(f"SavedModel: {v['saved_model']}")
        from prtr_tf.datasets import DATASETS
        joints = estimator.fn.structured_outputs["keypoints"].shape[1]
        names = [k for k, d in DATASETS.items() if len(d["joints"]) == joints]
        return estimator, (names[0] if names else None)
    box_thr = v["box_thr"]
    if v["config"] is not None and v["config"].model.get("kind", "prtr") == "prtr_e2e":
        from prtr_tf.serving.end_to_end import EndToEndServing
        from prtr_tf.weights import load_end_to_end
        from prtr_tf.serving.two_stage import DEFAULT_SCORE_THRESHOLD
        try:
            weights = resolve_weights(v["checkpoint"])
            model, config = load_end_to_end(v["config"], weights)
        except (FileNotFoundError, ValueError) as e:
            raise _usage(str(e)) from e
        serving = EndToEndServing(model, config, DEFAULT_SCORE_THRESHOLD if box_thr is None
                                  else box_thr)
        fn = serving.tf_functions()["serving_default"].get_concrete_function()
        print(f"end-to-end model: {weights}")
        return predict_backends.SavedModelEstimator.from_function(fn), config.data.dataset
    detector = None
    try:
        if v["detector_checkpoint"]:
            det_weights = resolve_weights(v["detector_checkpoint"])
            det_model = build_detector(v["detector_config"].model)
            det_model.load_weights(det_weights)
            detector = DetrPersonDetector(det_model, v["detector_config"],
                                          score_threshold=box_thr)
            print(f"person detector: {det_weights}")
        elif v["detector_tflite"]:
            detector = predict_backends.TFLiteDetector(v["detector_tflite"], box_thr)
            print(f"person detector: {v['detector_tflite']}")
        if v["tflite"]:
            estimator = predict_backends.TFLiteEstimator(v["tflite"], v["config"], detector,
                                                         box_threshold=box_thr)
            if v["flip_test"] is not None and v["flip_test"] != estimator.flip_test:
                raise ValueError(f"--flip_test={v['flip_test']} but {v['tflite']!r} was "
                                 f"exported with flip_test={estimator.flip_test} (in the "
                                 "graph); re-export (export/tflite.py --flip_test) or drop "
                                 "--flip_test")
            print(f"keypoint model: {v['tflite']}")
            return estimator, estimator.config.data.dataset
        weights = resolve_weights(v["checkpoint"])
    except (FileNotFoundError, ValueError) as e:
        raise _usage(str(e)) from e
    from prtr_tf.keypoint.model import build_model
    from prtr_tf.serving.estimator import PoseEstimator
    config = v["config"]
    model = build_model(config.model)
    model.load_weights(weights)
    print(f"keypoint model: {weights}")
    estimator = PoseEstimator(model, config, detector=detector, flip_test=v["flip_test"],
                              box_threshold=box_thr)
    return estimator, config.data.dataset


def main(argv, flags_):
    from prtr_tf.datasets import DATASETS
    from prtr_tf.visualize import draw_poses

    if len(argv) > 1:
        raise _usage(f"unexpected arguments: {argv[1:]}")
    v = {k: h.value for k, h in flags_.items()}
    _check_flags(v)
    if v["max_side"] < 0 or v["max_frames"] < 0:
        raise _usage("--max_side and --max_frames must be >= 0")
    if v["max_pixels"] is not None:
        Image.MAX_IMAGE_PIXELS = v["max_pixels"] or None
    boxes_for = None
    if v["boxes_json"]:
        try:
            boxes_for = load_boxes_json(v["boxes_json"])
        except (OSError, ValueError) as e:
            raise _usage(f"--boxes_json: {e}") from e
    try:
        files = collect_sources(v["source"], exclude_dir=v["output"])
    except FileNotFoundError as e:
        raise _usage(str(e)) from e
    if not files:
        raise _usage(f"--source {v['source']!r} matches no files")

    from prtr_tf.weights import resolve_weights
    estimator, dataset_name = _build(flags_, resolve_weights)
    if dataset_name in DATASETS:
        skeleton = DATASETS[dataset_name]["skeleton"]
        joint_names = DATASETS[dataset_name]["joints"]
    else:  # a joint set of unknown layout: joints only, no limbs
        skeleton, joint_names = [], None
    os.makedirs(v["output"], exist_ok=True)
    names = _Names()
    results, failures = [], []
    total = len(files)

    def run(image, scale, boxes):
        if boxes is None:
            return estimator(image)
        sx, sy = scale
        working = boxes[0] / np.array([sx, sy, sx, sy])
        return estimator(image, boxes=working, box_scores=boxes[1])

    for i, path in enumerate(files, 1):
        start = time.perf_counter()
        prefix = f"[{i}/{total}] {path}"
        try:
            if path.lower().endswith(VIDEO_EXTENSIONS):
                if boxes_for is not None:
                    raise InputError("videos need a person detector (--detector_config), "
                                     "not --boxes_json")
                folder = names(path, "_frames")
                count = persons = 0
                for frame in iter_video_frames(path):
                    if v["max_frames"] and count >= v["max_frames"]:
                        break
                    os.makedirs(os.path.join(v["output"], folder), exist_ok=True)
                    rgb = frame_to_rgb(frame)
                    found = run(rgb, (1.0, 1.0), None)
                    out_name = os.path.join(folder, f"{count:06d}.jpg")
                    draw_poses(rgb, found, skeleton, v["kpt_thr"], 0.0, joint_names).save(
                        os.path.join(v["output"], out_name), quality=90)
                    results.append({"file": path, "frame": count, "width": rgb.shape[1],
                                    "height": rgb.shape[0], "annotated": out_name,
                                    "persons": persons_to_original(found, (1.0, 1.0))})
                    count += 1
                    persons += len(found)
                if not count:
                    raise InputError("video has no frames")
                print(f"{prefix}: {count} frames, {persons} person(s) "
                      f"({time.perf_counter() - start:.1f}s)", flush=True)
                continue
            rgb, (width, height), scale, notes = load_image(path, v["max_side"])
            boxes = None
            if boxes_for is not None:
                boxes = boxes_for(path)
                if boxes is None:
                    notes.append("no boxes for this file in --boxes_json")
                    boxes = (np.zeros((0, 4)), np.zeros((0,)))
            found = run(rgb, scale, boxes)
            out_name = names(path, "_pose.jpg")
            draw_poses(rgb, found, skeleton, v["kpt_thr"], 0.0, joint_names).save(
                os.path.join(v["output"], out_name), quality=90)
            results.append({"file": path, "width": width, "height": height,
                            "annotated": out_name,
                            "persons": persons_to_original(found, scale)})
            note = f" [{'; '.join(notes)}]" if notes else ""
            print(f"{prefix}: {len(found)} person(s) ({time.perf_counter() - start:.1f}s)"
                  f"{note}", flush=True)
        except InputError as e:
            failures.append({"file": path, "reason": str(e)})
            print(f"{prefix}: FAILED: {e}", flush=True)
        except Exception as e:  # e.g. invalid boxes from --boxes_json: report, go on
            failures.append({"file": path, "reason": f"{type(e).__name__}: {e}"})
            print(f"{prefix}: FAILED: {type(e).__name__}: {e}", flush=True)

    with open(os.path.join(v["output"], "results.json"), "w") as f:
        json.dump(results, f)
    failures_path = os.path.join(v["output"], "failures.json")
    if failures:
        with open(failures_path, "w") as f:
            json.dump(failures, f, indent=1)
    elif os.path.exists(failures_path):
        os.remove(failures_path)
    done = total - len(failures)
    print(f"processed {done}/{total} files; results: {os.path.join(v['output'], 'results.json')}")
    if failures:
        print(f"{len(failures)} file(s) failed:", file=sys.stderr)
        for fail in failures:
            print(f"  {fail['file']}: {fail['reason']}", file=sys.stderr)
    return 1 if done == 0 else 0


if __name__ == "__main__":
    from absl import app
    _FLAGS = _define_flags()
    app.run(lambda argv: main(argv, _FLAGS))
