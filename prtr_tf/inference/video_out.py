"""Video outputs for prediction, through PyAV: an H.264 mp4 (`VideoWriter`), JSON
Lines (`JsonlWriter`, one `frame_record` per frame), and the helpers of a frame loop
(`batched`, `Progress`). Sources are in `prtr_tf.inference.video`.

    with VideoWriter("out.mp4", fps=source.info.fps) as video, JsonlWriter("out.jsonl") as log:
        video.write(rgb)
        log.write(frame_record(index, t, persons))

Outputs are atomic: `VideoWriter` and `JsonlWriter` write ``.NAME.partial-XXXX`` in
the destination folder and rename it to ``NAME`` on `close`; an exception (also
KeyboardInterrupt) inside their ``with`` block, or `abort`, removes the temporary
file, so the final name only ever holds a complete file. (A SIGKILL leaves the
``.partial-`` file behind, never a half file under the final name;
`prtr_tf.files.atomic.remove_partials` cleans such leftovers.)
"""
import fractions
import json
import math
import os
import sys
import tempfile
import time

import numpy as np

from prtr_tf.inference.video import SourceError, _av

# ----------------------------------------------------------------------------- outputs


class _AtomicFile:
    """A temporary ``.NAME.partial-XXXX.ext`` next to ``path``, renamed to ``path`` by
    `commit` and deleted by `discard` (same naming as `prtr_tf.files.atomic`)."""

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        parent, name = os.path.split(self.path)
        os.makedirs(parent, exist_ok=True)
        suffix = os.path.splitext(name)[1]
        fd, self.temp = tempfile.mkstemp(prefix=f".{name}.partial-", suffix=suffix,
                                         dir=parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.temp, 0o666 & ~umask)

    def commit(self):
        os.replace(self.temp, self.path)

    def discard(self):
        try:
            os.remove(self.temp)
        except FileNotFoundError:
            pass


def _frame_rate(fps):
    """fps -> Fraction; the NTSC rates (29.97, 59.94, 23.976...) as n * 1000 / 1001."""
    if isinstance(fps, fractions.Fraction):
        return fps
    fps = float(fps)
    if abs(fps - round(fps)) < 1e-6:
        return fractions.Fraction(round(fps))
    n = round(fps * 1.001)
    if abs(n * 1000 / 1001 - fps) < 0.005:
        return fractions.Fraction(n * 1000, 1001)
    return fractions.Fraction(fps).limit_denominator(1000)


def _encoder(av, preferred):
    for name in (preferred, "libx264", "libopenh264", "h264", "mpeg4"):
        if name and name in av.codecs_available:
            try:
                av.codec.Codec(name, "w")
                return name
            except Exception:  # a decoder only
                continue
    raise SourceError("no usable video encoder in this PyAV build")


class _Closing:
    """A writer used as a context manager: `close` when the block ends normally,
    `abort` (nothing under the final name) on an exception or when dropped unclosed."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        if not getattr(self, "closed", True) and hasattr(self, "_file"):
            self.abort()


class VideoWriter(_Closing):
    """Writes RGB uint8 frames to an H.264 mp4 (libx264, yuv420p, faststart) atomically.

    Args:
      path: the final file (.mp4, .mkv or .mov: the container follows the suffix).
      fps: frames per second (29.97 becomes 30000/1001; a Fraction is kept).
      size: (width, height) or None (from the first frame). Odd sizes are padded by
        one pixel (edge replicated) to even, which yuv420p needs (``self.padded``).
      codec: "libx264" (falls back to libopenh264, any H.264, then mpeg4 when this
        PyAV build lacks it; ``self.codec`` says which), crf/preset its quality/speed.

    Frames are timed at index / fps (constant frame rate). Use as a context manager or
    call `close` (commit) / `abort` (discard).
    """

    def __init__(self, path, fps, size=None, codec="libx264", crf=23, preset="veryfast"):
        self.av = _av()
        if not fps or fps <= 0 or not math.isfinite(fps):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self.path = os.path.abspath(os.fspath(path))
        self.fps = _frame_rate(fps)
        self.codec = _encoder(self.av, codec)
        self.crf, self.preset = crf, preset
        self.size = tuple(size) if size is not None else None
        self.padded = False
        self.frames_written = 0
        self._file = _AtomicFile(self.path)
        self._container = None
        self._stream = None
        self.closed = False

    def _open(self, width, height):
        av = self.av
        fmt = {".mkv": "matroska", ".mov": "mov", ".m4v": "mp4"}.get(
            os.path.splitext(self.path)[1].lower(), "mp4")
        options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
        self._container = av.open(self._file.temp, mode="w", format=fmt, options=options)
        stream = self._container.add_stream(self.codec, rate=self.fps)
        enc_w, enc_h = width + width % 2, height + height % 2
        self.padded = (enc_w, enc_h) != (width, height)
        stream.width, stream.height = enc_w, enc_h
        stream.pix_fmt = "yuv420p"
        if self.codec == "libx264":
            stream.options = {"crf": str(self.crf), "preset": str(self.preset)}
        self._stream = stream

    def write(self, rgb):
        """Appends one RGB uint8 (H, W, 3) frame."""
        if self.closed:
            raise ValueError("write to a closed VideoWriter")
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {rgb.dtype} "
                             f"{rgb.shape}")
        height, width = rgb.shape[:2]
        if self.size is None:
            self.size = (width, height)
        if (width, height) != self.size:
            raise ValueError(f"frame {self.frames_written} is {width}x{height}; the video "
                             f"is {self.size[0]}x{self.size[1]}")
        if self._container is None:
            self._open(width, height)
        if self.padded:
            rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames_written
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self):
        """Flushes the encoder and moves the file to its final name."""
        if self.closed:
            return
        try:
            if self._container is None:
                raise ValueError(f"{self.path}: no frame was written; no video created")
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
            self._file.commit()
        except BaseException:
            self.abort()
            raise
        self.closed = True

    def abort(self):
        """Drops the partial file (the final name is left as it was)."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None
        self._file.discard()
        self.closed = True


class JsonlWriter(_Closing):
    """JSON Lines written atomically: one `write(record)` per line, the file appears
    under ``path`` on `close` (removed on error / `abort`, like `VideoWriter`)."""

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        self._file = _AtomicFile(self.path)
        self._f = open(self._file.temp, "w", encoding="utf-8")
        self.records = 0
        self.closed = False

    def write(self, record):
        self._f.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        self.records += 1

    def close(self):
        if self.closed:
            return
        try:
            self._f.close()
            self._file.commit()
        except BaseException:
            self.abort()
            raise
        self.closed = True

    def abort(self):
        try:
            self._f.close()
        finally:
            self._file.discard()
            self.closed = True


def _num(value, digits=2):
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def frame_record(index, timestamp_s, persons, scale=(1.0, 1.0)):
    """One JSON Lines record: {"frame", "time_s", "persons": [{"track_id", "box"
    [x1, y1, x2, y2], "score", "box_score", "keypoints" [[x, y, score] x J]}]} in
    pixels (person coordinates multiplied by ``scale`` (sx, sy) first)."""
    sx, sy = scale
    out = []
    for p in persons:
        kpts = np.asarray(p["keypoints"], np.float64).reshape(-1, 3)
        box = np.asarray(p["box"], np.float64).reshape(4) * [sx, sy, sx, sy]
        track = p.get("track_id")
        box_score = p.get("box_score")
        out.append({
            "track_id": None if track is None else int(track),
            "box": [_num(v) for v in box],
            "score": _num(p["score"], 4),
            "box_score": None if box_score is None else _num(box_score, 4),
            "keypoints": [[_num(x * sx), _num(y * sy), _num(s, 4)] for x, y, s in kpts]})
    return {"frame": int(index), "time_s": round(float(timestamp_s), 4), "persons": out}


# ----------------------------------------------------------------------------- helpers


def batched(frames, batch_size):
    """Groups an iterable into lists of ``batch_size`` items (the last one shorter),
    in order; lazy, so a live source is not read ahead more than one batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch = []
    for item in frames:
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """A progress line every ``every_s`` seconds: frames done (of total), frames/s
    (over the whole run) and the ETA when the total is known."""

    def __init__(self, total=None, every_s=2.0, log=None, label="frames",
                 clock=time.perf_counter):
        self.total = total or None
        self.every_s = every_s
        self.log = log if log is not None else (lambda msg: print(msg, file=sys.stderr,
                                                                  flush=True))
        self.label = label
        self.clock = clock
        self.start = clock()
        self.last = self.start
        self.done = 0
        self._logged = None  # `done` at the last line logged

    def line(self):
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.done}"
        if self.total:
            text += f"/{self.total} {self.label} ({100.0 * self.done / self.total:.0f}%)"
        else:
            text += f" {self.label}"
        text += f", {rate:.1f} {self.label}/s, elapsed {_clock(elapsed)}"
        if self.total and rate > 0 and self.done < self.total:
            text += f", ETA {_clock((self.total - self.done) / rate)}"
        return text

    def update(self, n=1):
        self.done += n
        now = self.clock()
        if now - self.last >= self.every_s:
            self.last = now
            self._logged = self.done
            self.log(self.line())

    def close(self):
        """The final line (unless the last one already said it all)."""
        if self.done != self._logged:
            self.log(self.line())
