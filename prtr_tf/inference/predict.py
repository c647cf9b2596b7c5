"""A prediction run over files (what ``predict.py`` does once its estimator is built):
each image through an estimator, an annotated copy drawn with
`prtr_tf.drawing.visualize.draw_poses`, each video (or opened source: webcam, stream,
image sequence) through `prtr_tf.inference.video_predict.predict_video` (an annotated
mp4 and per-frame JSON Lines), and every input in ``results.json`` (failures in
``failures.json``), all written atomically (`prtr_tf.files.atomic.atomic_output`:
temp file + os.replace).

    estimator, keypoints = build_estimator(...)          # prtr_tf.serving.backends
    counts = predict_files(estimator, collect_sources("photos/"), "out/", keypoints)

Estimators: callables image (RGB uint8) [, boxes=..., box_scores=...] -> person dicts
(``box`` [x1, y1, x2, y2], ``score``, ``box_score``, ``keypoints`` (J, 3)), e.g.
`prtr_tf.serving.estimator.PoseEstimator` or the `prtr_tf.serving.backends` ones.
"""
import json
import os
import sys
import time

import numpy as np

from prtr_tf.data.boxes_json import fit_boxes_to_image
from prtr_tf.drawing import visualize
from prtr_tf.files.atomic import atomic_output
from prtr_tf.inference.media import VIDEO_EXTENSIONS, InputError, load_image
from prtr_tf.inference.video import SourceError, open_source
from prtr_tf.inference.video_predict import VideoOptions, output_stem, predict_video


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


def _write_json(path, data, **options):
    with atomic_output(path) as temp:
        with open(temp, "w") as f:
            json.dump(data, f, **options)


def predict_files(estimator, files, output, keypoint_set=None, boxes_for=None, kpt_thr=0.3,
                  max_side=4096, max_frames=0, video=None):
    """Runs ``estimator`` over ``files`` (images and videos, e.g.
    `prtr_tf.inference.media.collect_sources`) and writes into the folder ``output``.

    Args:
      files: image and video paths, and opened sources (`prtr_tf.inference.video`:
        a webcam, a stream, an image sequence read as one video).
      keypoint_set: a `prtr_tf.data.keypoint_sets` keypoint set (skeleton and joint names for
        drawing: the config's, or an export's metadata) or None (joints only).
      boxes_for: file path -> (boxes xywh (N, 4), scores (N,)) in original pixels or
        None (`prtr_tf.data.boxes_json.load_boxes_json`); None: the estimator finds the
        persons (videos always need that). Boxes are clipped to the image; a file
        with a box outside it fails, the box named
        (`prtr_tf.data.boxes_json.fit_boxes_to_image`).
      kpt_thr: joints scoring below it are drawn faint (all are in results.json).
      max_side: images with a longer side are downscaled to it (0: never).
      max_frames: videos: at most this many frames (0: all).
      video: `prtr_tf.inference.video_predict.VideoOptions` (batch, tracking,
        smoothing, window) for videos and sources.

    Writes ``<stem>_pose.jpg`` per image, ``<stem>_pose.mp4`` and ``<stem>_pose.jsonl``
    per video or source, ``results.json`` and, when some input failed,
    ``failures.json`` (removed otherwise); prints one progress line per file and a
    summary. Files that cannot be used are reported and skipped. Returns {"total",
    "processed", "failed"}.
    """

    if keypoint_set is not None:
        skeleton, joint_names = keypoint_set["skeleton"], keypoint_set["joints"]
    else:  # a joint set of unknown layout: joints only, no limbs
        skeleton, joint_names = [], None
    os.makedirs(output, exist_ok=True)
    names = _Names()
    results, failures = [], []
    total = len(files)

    def run(image, scale, boxes):
        if boxes is None:
            return estimator(image)
        sx, sy = scale
        working = boxes[0] / np.array([sx, sy, sx, sy])
        return estimator(image, boxes=working, box_scores=boxes[1])

    def save_drawing(rgb, found, name):
        drawing = visualize.draw_poses(rgb, found, skeleton, kpt_thr, 0.0, joint_names)
        with atomic_output(os.path.join(output, name)) as temp:
            drawing.save(temp, format="JPEG", quality=90)

    for i, path in enumerate(files, 1):
        start = time.perf_counter()
        opened = not isinstance(path, str)  # a source opened by the caller
        label = path.info.name if opened else path
        prefix = f"[{i}/{total}] {label}"
        try:
            if opened or path.lower().endswith(VIDEO_EXTENSIONS):
                if boxes_for is not None:
                    raise InputError("videos need a person detector (--detector_config), "
                                     "not --boxes_json")
                try:
                    source = path if opened else open_source(path, max_frames=max_frames)
                except SourceError as e:
                    raise InputError(str(e)) from e
                with source:
                    stem = names(label if not opened else output_stem(label), "_pose")
                    stem = stem[:-len("_pose")]
                    done = predict_video(estimator, source, output, stem, keypoint_set,
                                         kpt_thr, video or VideoOptions(), log=print)
                entry = {"file": str(label), **{k: v for k, v in done.items()
                                                if v is not None}}
                results.append(entry)
                print(f"{prefix}: {done['frames']} frames, {done['persons']} person(s)"
                      + (f", {done['track_ids']} track id(s)" if video and video.make_tracker
                         else "")
                      + f" -> {done['annotated']}, {done['jsonl']} "
                      f"({time.perf_counter() - start:.1f}s)", flush=True)
                continue
            rgb, (width, height), scale, notes = load_image(path, max_side)
            boxes = None
            if boxes_for is not None:
                boxes = boxes_for(path)
                if boxes is None:
                    notes.append("no boxes for this file in --boxes_json")
                    boxes = (np.zeros((0, 4)), np.zeros((0,)))
                try:
                    fitted, clipped = fit_boxes_to_image(boxes[0], width, height, path)
                except ValueError as e:  # a box outside the image: this file fails
                    raise InputError(str(e)) from e
                if clipped:
                    notes.append(f"{clipped} --boxes_json box(es) clipped to the image")
                boxes = (fitted, boxes[1])
            found = run(rgb, scale, boxes)
            out_name = names(path, "_pose.jpg")
            save_drawing(rgb, found, out_name)
            results.append({"file": path, "width": width, "height": height,
                            "annotated": out_name,
                            "persons": persons_to_original(found, scale)})
            note = f" [{'; '.join(notes)}]" if notes else ""
            print(f"{prefix}: {len(found)} person(s) ({time.perf_counter() - start:.1f}s)"
                  f"{note}", flush=True)
        except InputError as e:
            failures.append({"file": str(label), "reason": str(e)})
            print(f"{prefix}: FAILED: {e}", flush=True)
        except Exception as e:  # e.g. invalid boxes from --boxes_json: report, go on
            failures.append({"file": str(label), "reason": f"{type(e).__name__}: {e}"})
            print(f"{prefix}: FAILED: {type(e).__name__}: {e}", flush=True)

    results_path = os.path.join(output, "results.json")
    _write_json(results_path, results)
    failures_path = os.path.join(output, "failures.json")
    if failures:
        _write_json(failures_path, failures, indent=1)
    elif os.path.exists(failures_path):
        os.remove(failures_path)
    done = total - len(failures)
    from prtr_tf.serving.defaults import person_threshold
    threshold = person_threshold(estimator)
    print(f"processed {done}/{total} files; person score threshold "
          f"{'unknown' if threshold is None else f'{threshold:g}'}; results: {results_path}")
    if failures:
        print(f"{len(failures)} file(s) failed:", file=sys.stderr)
        for fail in failures:
            print(f"  {fail['file']}: {fail['reason']}", file=sys.stderr)
    return {"total": total, "processed": done, "failed": len(failures)}
