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

Outputs (annotated video, JSON Lines, progress) are in `prtr_tf.inference.video_out`.

Sources that cannot be opened raise `SourceError` with the reason (missing file, not
a video, webcam index absent, ...). A video or stream that breaks off mid-way does not
raise: the frames decoded so far are yielded, then the iteration ends and
``source.problem`` says where and why (also passed to ``log``).
"""
import dataclasses
import glob
import os
import re
import sys
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
