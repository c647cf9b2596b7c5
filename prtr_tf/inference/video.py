"""Video input and output for prediction, through PyAV (FFmpeg in-process, H.264 via
the libx264 its wheels bundle).

Sources (`open_source`) iterate over ``Frame(index, timestamp_s, rgb)`` tuples, RGB
uint8 (H, W, 3), and describe themselves in ``source.info`` (`SourceInfo`: kind, fps,
size, frame count when known):

    with open_source("clip.mp4") as source:          # or a folder, "frames/*.png",
        for index, t, rgb in source:                 # 0 (webcam), "rtsp://..."
            ...
        if source.problem:                            # truncated file, stream cut
            print(source.problem)

    with VideoWriter("out.mp4", fps=source.info.fps) as video, JsonlWriter("out.jsonl") as log:
        video.write(rgb)
        log.write(frame_record(index, t, persons))

Sources that cannot be opened raise `SourceError` with the reason (missing file, not
a video, webcam index absent, ...). A video or stream that breaks off mid-way does not
raise: the frames decoded so far are yielded, then the iteration ends and
``source.problem`` says where and why (also passed to ``log``).

Outputs are atomic: `VideoWriter` and `JsonlWriter` write ``.NAME.partial-XXXX`` in
the destination folder and rename it to ``NAME`` on `close`; an exception (also
KeyboardInterrupt) inside their ``with`` block, or `abort`, removes the temporary
file, so the final name only ever holds a complete file. (A SIGKILL leaves the
``.partial-`` file behind, never a half file under the final name;
`prtr_tf.files.atomic.remove_partials` cleans such leftovers.)
"""
import dataclasses
import fractions
import glob
import json
import math
import os
import re
import sys
import tempfile
import time
from typing import NamedTuple

import numpy as np

from prtr_tf.inference.media import InputError, load_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")  # an animated .gif is read as a video
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt",
                  "rtp", "hls")
DEFAULT_SEQUENCE_FPS = 30.0


class SourceError(Exception):
    """A source that cannot be opened or read; the message is the reason for the user."""


class Frame(NamedTuple):
    index: int          # position in the source (0-based)
    timestamp_s: float  # seconds since the first frame of the source
    rgb: np.ndarray     # uint8 (H, W, 3)


@dataclasses.dataclass
class SourceInfo:
    kind: str                  # "video", "images", "webcam", "stream"
    name: str                  # what the user gave (path, index, URL)
    fps: float                 # frames per second (nominal; 30 when unknown)
    width: int
    height: int
    frame_count: int | None    # None when unknown (streams, webcams, some containers)
    codec: str | None = None   # the video codec, for videos and streams


def _av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - av is an install dependency
        raise SourceError("reading and writing videos needs PyAV: pip install av") from e
    return av


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ----------------------------------------------------------------------------- sources


def parse_source(spec):
    """``--source`` value -> (kind, target): ("webcam", index), ("stream", url),
    ("images", [paths]), ("video", path). Raises SourceError for a path that is
    missing or matches nothing."""
    if isinstance(spec, (int, np.integer)) or (isinstance(spec, str) and spec.isdigit()
                                                and not os.path.exists(spec)):
        return "webcam", int(spec)
    spec = os.fspath(spec)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", spec)
    if scheme and scheme.group(1).lower() in STREAM_SCHEMES:
        return "stream", spec
    if os.path.isdir(spec):
        files = [os.path.join(spec, n) for n in _natural_sorted(os.listdir(spec))
                 if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)
                 and os.path.isfile(os.path.join(spec, n))]
        if not files:
            raise SourceError(f"{spec}: folder without image files "
                              f"({', '.join(IMAGE_EXTENSIONS)})")
        return "images", files
    if os.path.isfile(spec):
        if spec.lower().endswith(IMAGE_EXTENSIONS):
            return "images", [spec]
        return "video", spec
    if "%" in spec and re.search(r"%0?\d*d", spec):  # printf pattern frames/%06d.png
        files, i = [], 0
        first = _first_sequence_number(spec)
        if first is not None:
            i = first
            while os.path.isfile(spec % i):
                files.append(spec % i)
                i += 1
        if not files:
            raise SourceError(f"{spec}: no file matches this frame pattern")
        return "images", files
    if glob.has_magic(spec):
        files = [p for p in _natural_sorted(glob.glob(spec, recursive=True))
                 if os.path.isfile(p) and p.lower().endswith(IMAGE_EXTENSIONS)]
        if not files:
            raise SourceError(f"{spec}: the pattern matches no image file")
        return "images", files
    raise SourceError(f"{spec}: no such file or folder")


def _first_sequence_number(pattern):
    for start in (0, 1):
        if os.path.isfile(pattern % start):
            return start
    return None


def _natural_sorted(names):
    """frame2.png before frame10.png."""
    return sorted(names, key=lambda s: [int(t) if t.isdigit() else t.lower()
                                        for t in re.split(r"(\d+)", s)])


def open_source(spec, fps=None, max_frames=0, log=None, timeout_s=10.0, options=None):
    """Opens ``spec`` (see `parse_source`) as a frame source.

    Args:
      fps: frame rate of an image sequence (default 30); for a video, stream or
        webcam it overrides only the reported ``info.fps`` (timestamps stay the
        decoder's).
      max_frames: stop after this many frames (0: all).
      log: callable(str) for problems found while reading (default: print to stderr).
      timeout_s: streams and webcams: seconds to wait when opening and reading.
      options: extra FFmpeg options for videos / streams / webcams (e.g.
        {"rtsp_transport": "udp"}, {"video_size": "1280x720"}).

    Raises SourceError (file missing, not a video, webcam absent, stream unreachable).
    """
    kind, target = parse_source(spec)
    if kind == "images":
        return ImageSequenceSource(target, fps or DEFAULT_SEQUENCE_FPS, max_frames, log,
                                   name=str(spec))
    return AVSource(kind, target, fps=fps, max_frames=max_frames, log=log,
                    timeout_s=timeout_s, options=options, name=str(spec))


class _SourceBase:
    info: SourceInfo

    def __init__(self, max_frames, log):
        self.max_frames = int(max_frames or 0)
        self.log = log if log is not None else (lambda msg: print(msg, file=sys.stderr,
                                                                  flush=True))
        self.problem = None     # why the source ended early (None: it ended normally)
        self.frames_read = 0

    def _report(self, message):
        self.problem = message
        self.log(message)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass


class ImageSequenceSource(_SourceBase):
    """Image files as frames (sorted naturally); timestamps index / fps. Files that
    cannot be decoded are skipped (reported through ``log``; their index stays
    unused); a file whose size differs from the first is an error (a video needs
    one size)."""

    def __init__(self, files, fps=DEFAULT_SEQUENCE_FPS, max_frames=0, log=None, name=None):
        super().__init__(max_frames, log)
        if fps <= 0:
            raise SourceError(f"fps must be > 0, got {fps}")
        self.files = list(files)
        self.skipped = []
        first = None
        for path in self.files:  # the size of the first readable image
            try:
                first = _load_rgb(path)
                break
            except SourceError:
                continue
        if first is None:
            raise SourceError(f"{name or self.files[0]}: none of the {len(self.files)} "
                              "image file(s) can be read")
        height, width = first.shape[:2]
        self.info = SourceInfo("images", name or self.files[0], float(fps), width, height,
                               len(self.files))

    def __iter__(self):
        for index, path in enumerate(self.files):
            if self.max_frames and self.frames_read >= self.max_frames:
                return
            try:
                rgb = _load_rgb(path)
            except SourceError as e:
                self.skipped.append(path)
                self.log(f"{path}: skipped ({e})")
                continue
            if rgb.shape[:2] != (self.info.height, self.info.width):
                raise SourceError(
                    f"{path}: {rgb.shape[1]}x{rgb.shape[0]} image in a sequence of "
                    f"{self.info.width}x{self.info.height} images (frame {index})")
            self.frames_read += 1
            yield Frame(index, index / self.info.fps, rgb)


def _load_rgb(path):
    """An image file -> RGB uint8 (the project's reader: EXIF orientation, 16-bit,
    alpha, ...)."""
    try:
        rgb, _, _, _ = load_image(path, max_side=0)
    except InputError as e:
        raise SourceError(str(e)) from e
    return rgb


def webcam_device(index, platform=None):
    """(FFmpeg input, format) of webcam ``index`` on ``platform`` (default: this one)."""
    platform = platform or sys.platform
    if platform.startswith("linux"):
        return f"/dev/video{index}", "v4l2"
    if platform == "darwin":
        return str(index), "avfoundation"
    raise SourceError(f"webcam {index}: opening a webcam by index is supported on Linux "
                      f"(/dev/videoN) and macOS only, not on {platform}")


def _webcams_present():
    return _natural_sorted(glob.glob("/dev/video*")) if sys.platform.startswith("linux") else []


class AVSource(_SourceBase):
    """A video file, a stream URL or a webcam, decoded by PyAV (FFmpeg). A packet that
    fails to decode is skipped (a glitch in a stream); more than ``max_damaged`` in a
    row end the source. Damage and early ends are reported in ``problem``."""

    def __init__(self, kind, target, fps=None, max_frames=0, log=None, timeout_s=10.0,
                 options=None, name=None, max_damaged=25):
        super().__init__(max_frames, log)
        av = _av()
        self.max_damaged = int(max_damaged)  # damaged packets in a row before giving up
        self.kind = kind
        opts = dict(options or {})
        fmt = None
        label = name if name is not None else str(target)
        if kind == "webcam":
            path, fmt = webcam_device(target)
            if sys.platform.startswith("linux") and not os.path.exists(path):
                found = _webcams_present()
                raise SourceError(
                    f"webcam {target}: no such camera ({path} does not exist; "
                    + (f"cameras present: {', '.join(found)})" if found
                       else "no camera found on this machine)"))
            label = f"webcam {target}"
        elif kind == "stream":
            path = target
            if target.lower().startswith("rtsp") and "rtsp_transport" not in opts:
                opts["rtsp_transport"] = "tcp"
        else:
            path = target
            if os.path.getsize(path) == 0:
                raise SourceError(f"{path}: empty file (0 bytes)")
        self.label = label
        try:
            self.container = av.open(path, format=fmt, options=opts,
                                     timeout=None if kind == "video" else timeout_s)
        except FileNotFoundError as e:
            raise SourceError(f"{label}: no such file or device") from e
        except PermissionError as e:
            raise SourceError(f"{label}: permission denied") from e
        except av.error.InvalidDataError as e:
            raise SourceError(
                f"{label}: not a readable video (FFmpeg: {_first_line(e)}); an mp4 whose "
                "end is missing (interrupted recording or copy) cannot be opened") from e
        except (av.error.FFmpegError, OSError) as e:
            what = "cannot open the camera" if kind == "webcam" else "cannot open"
            raise SourceError(f"{label}: {what} (FFmpeg: {_first_line(e)})") from e
        if not self.container.streams.video:
            self.container.close()
            raise SourceError(f"{label}: no video stream (an audio file or a data file?)")
        self.stream = self.container.streams.video[0]
        # Slice threading only: frame threading hands frames back late and hides which
        # packet was damaged (a truncated file then keeps fewer frames); decoding is
        # anyway far faster than the models.
        self.stream.thread_type = "SLICE"
        ctx = self.stream.codec_context
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        nominal = float(rate) if rate else 0.0
        count = int(self.stream.frames or 0) or None  # from the container, when stored
        self.info = SourceInfo(kind, label, float(fps or nominal or DEFAULT_SEQUENCE_FPS),
                               int(ctx.width), int(ctx.height), count,
                               codec=ctx.name if ctx else None)

    def close(self):
        container = getattr(self, "container", None)
        if container is not None:
            container.close()
            self.container = None

    def __iter__(self):
        av = _av()
        start = None
        index = -1
        damaged, last_damage = 0, None   # packets that failed to decode, in a row
        skipped = 0
        try:
            for packet in self.container.demux(self.stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as e:  # one damaged packet: go on
                    damaged, last_damage = damaged + 1, e
                    skipped += 1
                    if damaged > self.max_damaged:
                        raise
                    continue
                damaged = 0
                for frame in frames:
                    if self.max_frames and self.frames_read >= self.max_frames:
                        return
                    index += 1
                    t = frame.time
                    if t is None:
                        t = index / self.info.fps
                    if start is None:
                        start = t
                    rgb = frame.to_ndarray(format="rgb24")
                    self.frames_read += 1
                    yield Frame(index, float(t - start), rgb)
        except (av.error.FFmpegError, OSError) as e:
            where = f"after {self.frames_read} frame(s)"
            if self.info.frame_count:
                where += f" of {self.info.frame_count}"
            if self.kind == "video":
                self._report(f"{self.label}: the video breaks off {where} (truncated or "
                             f"damaged file; FFmpeg: {_first_line(e)}); the frames before "
                             "are kept")
            else:
                self._report(f"{self.label}: the {self.kind} stopped {where} "
                             f"(FFmpeg: {_first_line(e)})")
            return
        if self.max_frames and self.frames_read >= self.max_frames:
            return
        damage = (f"; {skipped} damaged packet(s) skipped (FFmpeg: {_first_line(last_damage)})"
                  if skipped else "")
        if self.kind == "video" and self.info.frame_count \
                and self.frames_read < self.info.frame_count:
            self._report(f"{self.label}: only {self.frames_read} of "
                         f"{self.info.frame_count} frames could be decoded (truncated or "
                         f"damaged file){damage}; the frames decoded are kept")
        elif self.kind in ("stream", "webcam"):
            self._report(f"{self.label}: the {self.kind} ended after {self.frames_read} "
                         f"frame(s){damage}")
        elif skipped:
            self._report(f"{self.label}: {self.frames_read} frames read{damage}")


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


class VideoWriter:
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


class JsonlWriter:
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
            self.log(self.line())

    def close(self):
        self.log(self.line())
