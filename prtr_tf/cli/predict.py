"""``predict.py``: PRTR pose estimation on images, videos, webcams and streams: writes
annotated images / videos, per-frame JSON Lines and a results JSON.

    python predict.py --source=photos/ --output=out/ --model=res50_384x288.keras \\
        --detector=detr_person.keras
    python predict.py --source=photos/ --output=out/ \\
        --config=configs/coco_res50_384x288.py --checkpoint=res50_384x288.weights.h5 \\
        --detector_config=configs/detr_r50_person.py --detector_checkpoint=detr.weights.h5
    python predict.py --source='photos/*.jpg' --output=out/ --config=configs/synthetic_tiny.py \\
        --checkpoint=runs/tiny --boxes_json=detections.json
    python predict.py --source=photos/ --output=out/ --saved_model=exported/prtr_res50
    python predict.py --source=photos/ --output=out/ --tflite=keypoints_fp32.tflite \\
        --detector_tflite=detector_fp32.tflite      # or --boxes_json / --detector_config+checkpoint

Three ways to run the keypoint model, one per run:
  * --model FILE.keras (a model file from prtr-convert or train.py: no --config; a
    training workdir works too), or --config + --checkpoint: the Keras model (`prtr_tf.serving.estimator.PoseEstimator`); an
    end-to-end config (configs/e2e_*.py) finds the persons itself (no box source;
    --box_thr is its P(person) threshold, default 0.4, prtr_tf.serving.defaults);
  * --saved_model DIR: a SavedModel from export/to_saved_model.py, whose serving_default
    holds the detector and the whole pipeline (box threshold, person cap and flip test
    fixed at export; no --config, --boxes_json, detector flags, --box_thr or
    --flip_test). An end-to-end export (configs/e2e_*.py) works the same way. A
    SavedModel exported before serving_default returned box_scores gives
    "box_score": null (with a warning);
  * --tflite FILE: a keypoint .tflite from export/to_tflite.py on the same crops as the
    Keras path (`prtr_tf.serving.backends.TFLiteEstimator`); crop size, normalisation
    and flip test are read from the file's metadata (--flip_test must agree with it),
    --config is optional (its test thresholds are then used, after checking it matches
    the file). Boxes from --boxes_json, --detector_config + --detector_checkpoint or a
    detector .tflite (--detector_tflite; box threshold default 0.4, as every detector).

--source: an image file, a folder (its files, not recursive; hidden files
skipped), a glob pattern (quote it), a video file (.mp4, .avi, .mov, .mkv,
.webm, ...), a webcam index (--source=0: /dev/video0 on Linux) or a stream URL
(rtsp://, http(s)://, rtmp://, ...). Videos, webcams and streams are read with
PyAV (FFmpeg, an install dependency). --sequence reads a folder or glob of images
(or a frame pattern such as 'frames/%06d.png', always a sequence) as the frames of
one video (--fps, default 30).

Videos, webcams, streams and sequences (`prtr_tf.inference.video_predict`): frames go
through the models --batch at a time (detector and keypoint crops batched for the
Keras and TFLite models; one call per frame for a SavedModel and the end-to-end
model); the output is <stem>_pose.mp4 (H.264, the source's frame rate and size) and
<stem>_pose.jsonl, one line per frame: {"frame", "time_s", "persons": [{"track_id",
"box", "score", "box_score", "keypoints"}]} in frame pixels (stem: the file's,
webcam0, stream_HOST_PATH). Both are written atomically (a killed run leaves no half
file under these names). A progress line (frames/s, ETA when the length is known)
every 2 seconds. A truncated video or a stream that ends is reported and the frames
done are kept; Ctrl-C ends a webcam or stream run keeping its frames. --show: a live
window (needs OpenCV and a display; otherwise a note).
--track: persistent person ids (`prtr_tf.inference.tracking.PoseTracker`, ByteTrack
on box IoU and OKS; detection score = the detector's box score); each id drawn in its
own colour. New tracks start from persons with box score >= --track_new_thr; persons
between --track_low_thr and --track_high_thr only continue tracks. With --track the
box threshold (--box_thr) defaults to --track_low_thr, so that the detector passes
the low-score persons on (a SavedModel keeps its export threshold). --smooth (implies
--track): One-Euro filtering of each track's joints and box (--smooth_min_cutoff Hz
at rest: lower is smoother; --smooth_beta: higher follows fast motion with less
lag). Single images are neither tracked nor smoothed.

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
boxes gets no persons. --checkpoint / --detector_checkpoint: a *.weights.h5 file, a
model file (*.keras) or a training workdir (its best.weights.h5, else last.weights.h5);
--config / --detector_config may then be left out (the config recorded with it is
used; a given one that computes differently is refused unless --force_config).

Output (--output DIR): one annotated image per input image (<stem>_pose.jpg), and
results.json: a list of {"file", "width", "height", "annotated", "persons": [{"box"
[x1, y1, x2, y2], "score", "box_score", "keypoints" [[x, y, score] x J]}]} in
original-image pixels; for a video {"file", "frames", "width", "height", "fps",
"annotated" (the mp4), "jsonl", "persons" (count), "track_ids" (count), "problem"
(when it broke off)}. Failures are also written to failures.json.

Inputs: grayscale, palette, RGBA (composited on white), CMYK and 16-bit images are
converted to RGB uint8 (16-bit values scaled by 255/65535); EXIF orientation is
applied; images with a side above --max_side are downscaled for the model (a note
says so; results are mapped back to original coordinates, the annotated image is
saved at the reduced size); images beyond Pillow's decompression-bomb limit
(--max_pixels) and unreadable, empty or non-image files are reported with their
name and reason and the remaining files are processed.

Exit status: 0 when at least one input was processed, 1 when every input failed,
2 (usage error, one ``error: ...`` line) for bad flags, a --source matching nothing,
a webcam or stream that cannot be opened, or models, configs and files given that are
missing or do not fit.

Code: flags and their checks here; `prtr_tf.serving.backends.build_estimator` (the
models), `prtr_tf.inference.media` (images), `prtr_tf.inference.video` (videos, webcams,
streams), `prtr_tf.data.boxes_json` (--boxes_json),
`prtr_tf.inference.predict.predict_files` and `prtr_tf.inference.video_predict` (the run
and its outputs).
"""

import os

from prtr_tf.cli import common
from prtr_tf.cli.common import usage_error

REQUIRED = ("source", "output")  # marked in --help

# Frames per model call for videos: chosen by tools/video_benchmark.py (docs/inference.md).
DEFAULT_BATCH = 4


def define_flags():
    """Defines the command-line flags ({name: FlagHolder}); called by `run` only, so
    that importing this module defines none."""
    from absl import flags
    from ml_collections import config_flags

    f = {}
    f["source"] = flags.DEFINE_string(
        "source", None, "An image file, a folder of images, a glob pattern (quoted), a "
        "video file, a webcam index (0) or a stream URL (rtsp://, http://, ...).")
    f["output"] = flags.DEFINE_string(
        "output", None, "Output folder: annotated images and videos (<stem>_pose.mp4), "
        "per-frame JSON Lines (<stem>_pose.jsonl), results.json, failures.json. A folder "
        "that holds files is kept unless --overwrite.")
    f["overwrite"] = flags.DEFINE_bool(
        "overwrite", False, "Write into an --output folder that already holds files "
        "(replacing the ones of the same names).")
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
        "kpt_thr", 0.3, "Joints scoring below this are drawn faint (all are in results.json).")
    f["box_thr"] = flags.DEFINE_float(
        "box_thr", None, "Minimum person box score (detector or --boxes_json) for a box to "
        "be used; default 0.4 for detected persons (Keras or .tflite detector, end-to-end "
        "model: prtr_tf.serving.defaults.PERSON_SCORE_THRESHOLD, the exports' default "
        "too; --track: --track_low_thr) and the keypoint config's test.image_thre for "
        "--boxes_json boxes.")
    f["flip_test"] = flags.DEFINE_bool(
        "flip_test", None, "Average with the mirrored crop (default: config.test.flip_test).")
    f["max_side"] = flags.DEFINE_integer(
        "max_side", 4096, "Images with a longer side are downscaled to it before inference "
        "(results are mapped back to original pixels); 0: never.")
    f["max_pixels"] = flags.DEFINE_integer(
        "max_pixels", None, "Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS; "
        "files above twice it are refused). Default: Pillow's; 0: no limit.")
    f["max_frames"] = flags.DEFINE_integer(
        "max_frames", 0, "Videos, webcams, streams, sequences: process at most this many "
        "frames (0: all).")
    f["sequence"] = flags.DEFINE_bool(
        "sequence", False, "Read the images of --source (folder or glob, sorted naturally) "
        "as the frames of one video: an annotated mp4 and JSON Lines.")
    f["fps"] = flags.DEFINE_float(
        "fps", None, "Frame rate of an image sequence (default 30); for a video, webcam "
        "or stream the rate written (default: the source's).")
    f["batch"] = flags.DEFINE_integer(
        "batch", DEFAULT_BATCH, "Video frames per model call (detector and keypoint crops "
        "batched where the backend allows).")
    f["track"] = flags.DEFINE_bool(
        "track", False, "Videos: persistent person ids (ByteTrack-style; in the JSON Lines "
        "and drawn in one colour per id).")
    f["track_high_thr"] = flags.DEFINE_float(
        "track_high_thr", 0.5, "--track: box score of the first association round.")
    f["track_low_thr"] = flags.DEFINE_float(
        "track_low_thr", 0.1, "--track: minimum box score of the second round (low-score "
        "persons continue tracks, never start one); the default --box_thr with --track.")
    f["track_new_thr"] = flags.DEFINE_float(
        "track_new_thr", 0.6, "--track: minimum box score of a person starting a new track.")
    f["track_match_thr"] = flags.DEFINE_float(
        "track_match_thr", 0.2, "--track: minimum IoU/OKS similarity of a match.")
    f["track_max_lost"] = flags.DEFINE_integer(
        "track_max_lost", 30, "--track: frames a lost track is kept (its id comes back if "
        "the person does).")
    f["smooth"] = flags.DEFINE_bool(
        "smooth", False, "Videos: One-Euro smoothing of each track's joints (implies --track).")
    f["smooth_min_cutoff"] = flags.DEFINE_float(
        "smooth_min_cutoff", 1.0, "--smooth: cutoff frequency at rest (Hz; lower: smoother, "
        "more lag).")
    f["smooth_beta"] = flags.DEFINE_float(
        "smooth_beta", 2.0, "--smooth: speed coefficient (higher: less lag when moving).")
    f["show"] = flags.DEFINE_bool(
        "show", False, "Videos: show the annotated frames in a window (needs a display and "
        "OpenCV; skipped with a note otherwise).")
    f["precision"] = common.define_precision_flag()
    f.update(common.define_model_flags(detector=True))
    f["saved_model"] = flags.DEFINE_string(
        "saved_model", None, "A SavedModel folder from export/to_saved_model.py (detector + "
        "pipeline inside), instead of --config/--checkpoint and the box flags.")
    f["tflite"] = flags.DEFINE_string(
        "tflite", None, "A keypoint .tflite from export/to_tflite.py, instead of --checkpoint "
        "(--config optional); boxes from --boxes_json or a detector.")
    f["detector_tflite"] = flags.DEFINE_string(
        "detector_tflite", None, "A detector .tflite from export/to_tflite.py (instead of "
        "--detector_config + --detector_checkpoint).")
    return f


def _kind(config):
    """The `prtr_tf.models.registry` kind of --config; usage errors for a config without one
    or of a kind that is no keypoint model."""
    from prtr_tf.models import registry

    try:
        kind = registry.get(config)
    except ValueError as e:
        raise usage_error(f"--config: {e}") from e
    if kind.role != registry.POSE:
        expected = registry.titles(registry.families(registry.POSE))
        raise usage_error(f"--config is a {kind.title} config (model.kind {kind.name!r}); "
                          f"--config needs a {expected} config (a person detector goes "
                          "in --detector_config)")
    return kind


def _check_flags(v):
    """Usage errors for contradictory or missing flags (see the module docstring)."""
    if not v["source"] or not v["output"]:
        raise usage_error("--source and --output are required")
    if os.path.exists(v["output"]) and not os.path.isdir(v["output"]):
        raise usage_error(f"--output {v['output']!r} is a file: --output is the folder "
                          "for the annotated images and results.json")
    has_det_keras = v["detector_config"] is not None or bool(v["detector_checkpoint"])
    if v["precision"] != "float32" and (v["saved_model"] or v["tflite"]):
        raise usage_error(f"--precision={v['precision']} is for the Keras models (--config, "
                          "--checkpoint); an exported model keeps the precision it was "
                          "exported in")
    if v["saved_model"]:
        given = [f"--{k}" for k in ("checkpoint", "tflite", "boxes_json", "detector_checkpoint",
                                    "detector_tflite", "box_thr", "flip_test")
                 if v[k] not in (None, "")]
        given += [f"--{k}" for k in ("config", "detector_config") if v[k] is not None]
        if given:
            raise usage_error(f"--saved_model runs the exported pipeline (its detector, box "
                              f"threshold and flip test fixed at export): drop {', '.join(given)}")
        return
    if v["config"] is not None and not _kind(v["config"]).needs_detector:
        given = [f"--{k}" for k in ("tflite", "boxes_json", "detector_checkpoint",
                                    "detector_tflite", "flip_test") if v[k] not in (None, "")]
        given += ["--detector_config"] if v["detector_config"] is not None else []
        if given:
            raise usage_error(f"--config is an end-to-end model (it detects the persons itself, "
                              f"without flip test): drop {', '.join(given)}")
        if not v["checkpoint"]:
            raise usage_error("--checkpoint is needed with --config")
        return
    if v["tflite"] and v["checkpoint"]:
        raise usage_error("give either --tflite (a keypoint .tflite) or --checkpoint (Keras "
                          "weights), not both")
    if not v["tflite"] and (v["config"] is None or not v["checkpoint"]):
        raise usage_error("the keypoint model is needed: --model (a .keras model file), "
                          "--config and --checkpoint, --tflite, or --saved_model")
    if v["detector_tflite"] and not v["tflite"]:
        raise usage_error("--detector_tflite goes with --tflite; with --checkpoint use "
                          "--detector_config + --detector_checkpoint")
    sources = [name for name, given in (
        ("--boxes_json", bool(v["boxes_json"])),
        ("--detector_config/--detector_checkpoint", has_det_keras),
        ("--detector_tflite", bool(v["detector_tflite"]))) if given]
    if len(sources) > 1:
        raise usage_error(f"give one source of person boxes, not {' and '.join(sources)}")
    if not sources:
        raise usage_error("person boxes are needed: --detector (a .keras model file), "
                          "--detector_config and --detector_checkpoint, "
                          + ("--detector_tflite, " if v["tflite"] else "") + "or --boxes_json")
    if has_det_keras and not (v["detector_config"] is not None and v["detector_checkpoint"]):
        raise usage_error("--detector_config and --detector_checkpoint go together")


def _video_options(v):
    """`VideoOptions` from the flags (usage errors for values out of range)."""
    from prtr_tf.inference.smoothing import PoseSmoother
    from prtr_tf.inference.tracking import PoseTracker
    from prtr_tf.inference.video_predict import VideoOptions

    if v["batch"] < 1:
        raise usage_error(f"--batch must be >= 1, got {v['batch']}")
    if v["fps"] is not None and not v["fps"] > 0:
        raise usage_error(f"--fps must be > 0, got {v['fps']}")
    if v["track_max_lost"] < 0:
        raise usage_error(f"--track_max_lost must be >= 0, got {v['track_max_lost']}")
    track = bool(v["track"] or v["smooth"])

    def make_tracker():
        return PoseTracker(high_thr=v["track_high_thr"], low_thr=v["track_low_thr"],
                           new_track_thr=v["track_new_thr"], match_thr=v["track_match_thr"],
                           max_lost=v["track_max_lost"], score_key="box_score")

    def make_smoother():
        return PoseSmoother(min_cutoff=v["smooth_min_cutoff"], beta=v["smooth_beta"])

    try:  # the values checked once, before any model is loaded
        if track:
            make_tracker()
        if v["smooth"]:
            make_smoother()
    except ValueError as e:
        raise usage_error(f"--{'track' if track and not v['smooth'] else 'smooth'}: {e}") \
            from e
    return VideoOptions(batch=v["batch"], make_tracker=make_tracker if track else None,
                        make_smoother=make_smoother if v["smooth"] else None, show=v["show"])


def _inputs(v):
    """The inputs of --source: file paths (`collect_sources`), or one opened source for a
    webcam, a stream, a frame pattern or --sequence (opened here, so that a missing
    camera or an unreachable stream is a usage error before any model loads)."""
    from prtr_tf.inference.media import collect_sources
    from prtr_tf.inference.video import SourceError, open_source, parse_source

    spec = v["source"]
    try:
        kind, target = parse_source(spec)
    except SourceError as e:
        kind, target = None, e
    pattern = kind == "images" and "%" in spec and not os.path.exists(spec)
    if kind in ("webcam", "stream") or (v["sequence"] or pattern):
        if kind is None:
            raise usage_error(f"--source: {target}")
        if kind == "video" and v["sequence"]:
            raise usage_error(f"--sequence reads images; --source {spec!r} is a video file "
                              "(drop --sequence)")
        try:
            return [open_source(spec, fps=v["fps"], max_frames=v["max_frames"])]
        except SourceError as e:
            raise usage_error(f"--source: {e}") from e
    try:
        files = collect_sources(spec, exclude_dir=v["output"])
    except FileNotFoundError as e:
        raise usage_error(str(e)) from e
    if not files:
        raise usage_error(f"--source {spec!r} matches no files")
    return files


def main(argv, flags):
    from PIL import Image

    from prtr_tf.data.boxes_json import load_boxes_json
    from prtr_tf.inference.media import VIDEO_EXTENSIONS

    if len(argv) > 1:
        raise usage_error(f"unexpected arguments: {argv[1:]}")
    v = common.values(flags)
    for name in ("box_thr", "kpt_thr"):
        common.check_number(v[name], name, 0.0, 1.0)
    if 0 < v["max_side"] < 32:
        raise usage_error(f"--max_side={v['max_side']}: 0 (no limit) or at least 32 pixels "
                          "(smaller images hold no person a model can find)")
    common.apply_model_flags(v, log=print)
    _check_flags(v)
    if v["max_side"] < 0 or v["max_frames"] < 0:
        raise usage_error("--max_side and --max_frames must be >= 0")
    # The output policy (prtr_tf.files.outputs), after the flags, before any model is loaded: a folder
    # that holds files is kept unless --overwrite, and no input is the output.
    from prtr_tf.files.outputs import check_output
    check_output(v["output"], "--output", v["overwrite"], folder=True, inputs=[
        (f"--{k}", v[k]) for k in ("source", "model", "detector", "checkpoint",
                                   "detector_checkpoint",
                                   "saved_model", "tflite", "detector_tflite", "boxes_json")
        if isinstance(v[k], str)])
    if v["max_pixels"] is not None:
        Image.MAX_IMAGE_PIXELS = v["max_pixels"] or None
    video = _video_options(v)
    boxes_for = None
    if v["boxes_json"]:
        try:
            boxes_for = load_boxes_json(v["boxes_json"])
        except (OSError, ValueError) as e:
            raise usage_error(f"--boxes_json: {e}") from e
    inputs = _inputs(v)
    videos = [x for x in inputs if not isinstance(x, str) or x.lower().endswith(VIDEO_EXTENSIONS)]
    try:
        if videos and boxes_for is not None and len(videos) == len(inputs):
            raise usage_error("videos, webcams, streams and sequences need a person detector "
                              "(--detector_config + --detector_checkpoint, or "
                              "--detector_tflite), not --boxes_json")
        box_thr = v["box_thr"]
        if video.make_tracker is not None:
            if not videos:
                print("note: --track/--smooth apply to videos, webcams, streams and "
                      "--sequence; single images are neither tracked nor smoothed")
            elif box_thr is None and not v["saved_model"]:
                # ByteTrack's second round needs the low-score persons: the detector and
                # the estimator keep boxes down to the tracker's low threshold.
                box_thr = v["track_low_thr"]

        from prtr_tf.inference.predict import predict_files
        from prtr_tf.serving.backends import build_estimator
        common.note_precision(v["precision"])
        try:
            estimator, keypoint_set = build_estimator(
                saved_model=v["saved_model"], tflite=v["tflite"], config=v["config"],
                checkpoint=v["checkpoint"], detector_config=v["detector_config"],
                detector_checkpoint=v["detector_checkpoint"],
                detector_tflite=v["detector_tflite"], box_thr=box_thr,
                flip_test=v["flip_test"], log=print, precision=v["precision"])
        except (FileNotFoundError, ValueError) as e:
            raise usage_error(str(e)) from e
        counts = predict_files(estimator, inputs, v["output"], keypoint_set,
                               boxes_for=boxes_for, kpt_thr=v["kpt_thr"],
                               max_side=v["max_side"], max_frames=v["max_frames"], video=video)
    finally:
        for x in inputs:
            if not isinstance(x, str):
                x.close()
    return 1 if counts["processed"] == 0 else 0


def run():
    common.run(define_flags, main)
