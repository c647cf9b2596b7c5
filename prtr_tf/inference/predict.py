"""A prediction run over files (what ``predict.py`` does once its estimator is built):
each image or video frame through an estimator, an annotated copy drawn with
`prtr_tf.drawing.visualize.draw_poses`, and the persons of every input in ``results.json``
(failures in ``failures.json``), all written atomically
(`prtr_tf.files.atomic.atomic_output`: temp file + os.replace).

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

from prtr_tf.files.atomic import atomic_output
from prtr_tf.inference.media import (VIDEO_EXTENSIONS, InputError, frame_to_rgb, iter_video_frames,
                           load_image)
from prtr_tf.drawing.visualize import draw_poses


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
                  max_side=4096, max_frames=0):
    """Runs ``estimator`` over ``files`` (images and videos, e.g.
    `prtr_tf.inference.media.collect_sources`) and writes into the folder ``output``.

    Args:
      keypoint_set: a `prtr_tf.data.keypoint_sets` keypoint set (skeleton and joint names for
        drawing: the config's, or an export's metadata) or None (joints only).
      boxes_for: file path -> (boxes xywh (N, 4), scores (N,)) in original pixels or
        None (`prtr_tf.data.boxes_json.load_boxes_json`); None: the estimator finds the
        persons (videos always need that).
      kpt_thr: joints scoring below it are drawn faint (all are in results.json).
      max_side: images with a longer side are downscaled to it (0: never).
      max_frames: videos: at most this many frames (0: all).

    Writes ``<stem>_pose.jpg`` per image (``<stem>_frames/NNNNNN.jpg`` per video),
    ``results.json`` and, when some input failed, ``failures.json`` (removed
    otherwise); prints one progress line per file and a summary. Files that cannot be
    used are reported and skipped. Returns {"total", "processed", "failed"}.
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
        drawing = draw_poses(rgb, found, skeleton, kpt_thr, 0.0, joint_names)
        with atomic_output(os.path.join(output, name)) as temp:
            drawing.save(temp, format="JPEG", quality=90)

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
                    if max_frames and count >= max_frames:
                        break
                    os.makedirs(os.path.join(output, folder), exist_ok=True)
                    rgb = frame_to_rgb(frame)
                    found = run(rgb, (1.0, 1.0), None)
                    out_name = os.path.join(folder, f"{count:06d}.jpg")
                    save_drawing(rgb, found, out_name)
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
            rgb, (width, height), scale, notes = load_image(path, max_side)
            boxes = None
            if boxes_for is not None:
                boxes = boxes_for(path)
                if boxes is None:
                    notes.append("no boxes for this file in --boxes_json")
                    boxes = (np.zeros((0, 4)), np.zeros((0,)))
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
            failures.append({"file": path, "reason": str(e)})
            print(f"{prefix}: FAILED: {e}", flush=True)
        except Exception as e:  # e.g. invalid boxes from --boxes_json: report, go on
            failures.append({"file": path, "reason": f"{type(e).__name__}: {e}"})
            print(f"{prefix}: FAILED: {type(e).__name__}: {e}", flush=True)

    results_path = os.path.join(output, "results.json")
    _write_json(results_path, results)
    failures_path = os.path.join(output, "failures.json")
    if failures:
        _write_json(failures_path, failures, indent=1)
    elif os.path.exists(failures_path):
        os.remove(failures_path)
    done = total - len(failures)
    print(f"processed {done}/{total} files; results: {results_path}")
    if failures:
        print(f"{len(failures)} file(s) failed:", file=sys.stderr)
        for fail in failures:
            print(f"  {fail['file']}: {fail['reason']}", file=sys.stderr)
    return {"total": total, "processed": done, "failed": len(failures)}
