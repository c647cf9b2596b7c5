"""A prediction run over one video, image sequence, webcam or stream (what
``predict.py`` does for each of them): frames from `prtr_tf.inference.video.open_source`
in batches through the estimator (its ``predict_batch`` when it has one), optional
tracking (`prtr_tf.inference.tracking.PoseTracker`) and smoothing
(`prtr_tf.inference.smoothing.PoseSmoother`), each frame drawn
(`prtr_tf.drawing.visualize.draw_poses`, one colour per track id) into an H.264 mp4
of the source's frame rate and size, and the persons of every frame in JSON Lines
(`prtr_tf.inference.video_out.frame_record`), both written atomically.

    with open_source("clip.mp4") as source:
        summary = predict_video(estimator, source, "out/", "clip", tracker=PoseTracker())
    # out/clip_pose.mp4, out/clip_pose.jsonl

A source that breaks off (truncated file, stream cut) keeps the frames done (the
video and the JSONL hold them; ``summary["problem"]`` says why). Ctrl-C on a webcam or
stream ends it the same way (the frames so far are kept); on a file it aborts and
leaves no output under the final names.
"""
import dataclasses
import os
import re
import sys

import numpy as np

from prtr_tf.drawing import visualize
from prtr_tf.inference.media import InputError
from prtr_tf.inference.tracking import track_color
from prtr_tf.inference.video_out import (JsonlWriter, Progress, VideoWriter, batched,
                                         frame_record)

LIVE_KINDS = ("webcam", "stream")


class StopRequested(Exception):
    """``q`` / Esc in the `LiveWindow`: the run ends, keeping the frames so far."""


@dataclasses.dataclass
class VideoOptions:
    """How `predict_video` runs (``predict.py``'s video flags).

    make_tracker / make_smoother: None, or callables returning a fresh `PoseTracker` /
    `PoseSmoother` for each video (smoothing needs track ids: without a tracker it is
    not applied). batch: frames per estimator call. show: a live window (`LiveWindow`).
    """
    batch: int = 1
    make_tracker: object = None
    make_smoother: object = None
    show: bool = False
    progress_every_s: float = 2.0


def output_stem(spec):
    """A file-name stem for a source: the file's stem, ``webcam0``, or ``stream_HOST_PATH``
    for a URL, ``frames`` for a frame pattern / glob."""
    text = str(spec)
    webcam = re.fullmatch(r"(?:webcam )?(\d+)", text)  # "0", or a source's name "webcam 0"
    if webcam:
        return f"webcam{int(webcam.group(1))}"
    url = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://(.*)$", text)
    if url:
        return "stream_" + (re.sub(r"[^A-Za-z0-9]+", "_", url.group(1)).strip("_")[:60]
                            or "url")
    base = os.path.basename(os.path.normpath(text))
    if any(c in base for c in "*?[%"):
        base = os.path.basename(os.path.dirname(os.path.normpath(text))) or "frames"
    return os.path.splitext(base)[0] if os.path.splitext(base)[1] else base


def estimate_frames(estimator, images, boxes=None, box_scores=None):
    """Person lists of ``images`` in order: ``estimator.predict_batch`` when it has one
    (batched detector and crops), else one call per image."""
    batch_fn = getattr(estimator, "predict_batch", None)
    if batch_fn is not None:
        if boxes is None:
            return batch_fn(images)
        return batch_fn(images, boxes=boxes, box_scores=box_scores)
    if boxes is None:
        return [estimator(im) for im in images]
    return [estimator(im, boxes=b, box_scores=s) for im, b, s in zip(images, boxes, box_scores)]


class LiveWindow:
    """``--show``: each annotated frame in a window (OpenCV's highgui, when installed
    and a display exists; otherwise one message and nothing shown). ``q`` or Esc in
    the window ends the run, keeping the frames so far (`StopRequested`)."""

    def __init__(self, title, log):
        self.title, self.cv2 = title, None
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                     or os.environ.get("WAYLAND_DISPLAY")):
            log("--show: no display (DISPLAY is not set); running without a window")
            return
        try:
            import cv2  # optional: only --show needs it
        except ImportError:
            log("--show needs OpenCV (pip install opencv-python); running without a window")
            return
        self.cv2 = cv2

    def show(self, rgb):
        if self.cv2 is None:
            return
        self.cv2.imshow(self.title, np.ascontiguousarray(rgb[..., ::-1]))
        if self.cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            raise StopRequested

    def close(self):
        if self.cv2 is not None:
            self.cv2.destroyAllWindows()


def predict_video(estimator, source, output, stem, keypoint_set=None, kpt_thr=0.3,
                  options=None, boxes_for_frame=None, log=print):
    """Runs ``estimator`` over an opened ``source`` (`prtr_tf.inference.video.open_source`)
    and writes ``<stem>_pose.mp4`` and ``<stem>_pose.jsonl`` into the folder ``output``.

    Args:
      keypoint_set: skeleton and joint names for drawing (None: joints only).
      kpt_thr: joints below it are drawn faint (all are in the JSONL).
      options: `VideoOptions` (batch, tracker, smoother, live window).
      boxes_for_frame: None (the estimator finds the persons), or frame index ->
        (boxes xywh (N, 4), scores (N,)) in frame pixels.
      log: called with progress lines and notes.

    Returns {"frames", "width", "height", "fps", "annotated", "jsonl", "persons",
    "track_ids", "problem", "stopped"}. Raises InputError when no frame could be read.
    """
    options = options or VideoOptions()
    info = source.info
    skeleton, joint_names = ((keypoint_set["skeleton"], keypoint_set["joints"])
                             if keypoint_set is not None else ([], None))
    tracker = options.make_tracker() if options.make_tracker else None
    smoother = options.make_smoother() if (options.make_smoother and tracker) else None
    color_of = (lambda p: track_color(p.get("track_id"))) if tracker else None
    names = {"annotated": f"{stem}_pose.mp4", "jsonl": f"{stem}_pose.jsonl"}
    live = info.kind in LIVE_KINDS
    window = LiveWindow(f"prtr-predict: {info.name}", log) if options.show else None
    limit = getattr(source, "max_frames", 0)  # --max_frames
    total = min(info.frame_count or limit, limit) if limit else info.frame_count
    progress = Progress(total=total, every_s=options.progress_every_s, log=log)
    persons_total, track_ids, stopped = 0, set(), None
    video = VideoWriter(os.path.join(output, names["annotated"]), fps=info.fps,
                        size=(info.width, info.height))
    records = JsonlWriter(os.path.join(output, names["jsonl"]))
    try:
        try:
            for frames in batched(source, options.batch):
                images = [f.rgb for f in frames]
                if boxes_for_frame is None:
                    found = estimate_frames(estimator, images)
                else:
                    given = [boxes_for_frame(f.index) for f in frames]
                    found = estimate_frames(estimator, images, [g[0] for g in given],
                                            [g[1] for g in given])
                for frame, persons in zip(frames, found):
                    if tracker is not None:
                        persons = tracker.update(persons, image_size=(info.width, info.height))
                        if smoother is not None:
                            smoother.forget(tracker.removed_ids)
                            persons = smoother.update(persons, frame.timestamp_s)
                        track_ids.update(p["track_id"] for p in persons
                                         if p["track_id"] is not None)
                    drawing = np.asarray(visualize.draw_poses(
                        frame.rgb, persons, skeleton, kpt_thr, 0.0, joint_names,
                        color_of=color_of))
                    video.write(drawing)
                    records.write(frame_record(frame.index, frame.timestamp_s, persons))
                    persons_total += len(persons)
                    if window is not None:
                        window.show(drawing)
                progress.update(len(frames))
        except (KeyboardInterrupt, StopRequested) as e:
            if isinstance(e, KeyboardInterrupt) and not live:
                raise
            how = "Ctrl-C" if isinstance(e, KeyboardInterrupt) else "closed in the window"
            stopped = (f"{info.name}: stopped ({how}) after {video.frames_written} "
                       "frame(s); the frames so far are kept")
            log(stopped)
        if video.frames_written == 0:
            raise InputError(source.problem or f"{info.name}: no frame could be read")
        video.close()
        records.close()
    except BaseException:
        video.abort()
        records.abort()
        raise
    finally:
        if window is not None:
            window.close()
    progress.close()
    return {"frames": video.frames_written, "width": info.width, "height": info.height,
            "fps": round(float(info.fps), 3), **names, "persons": persons_total,
            "track_ids": len(track_ids), "problem": source.problem, "stopped": stopped}
