"""Image input for prediction: the files of a ``--source`` and images decoded to RGB
uint8 (any Pillow mode, EXIF orientation applied, optional downscaling). Videos,
webcams, streams and image sequences are read by `prtr_tf.inference.video` (PyAV).

16-bit images (Pillow modes ``I;16*`` and ``I``) are scaled by 255/65535, except that
one whose maximum value is <= 4095 is read as 12-bit data (medical and machine-vision
cameras store 12 bits in 16-bit PNG/TIFF) and scaled by 255/4095: divided by 65535 it
would be near black. (A genuine 16-bit image that dark is brightened by 16x.)
`prtr_tf.data.image.decode_bytes` applies the same rule in the input pipelines.

Files that cannot be used raise `InputError`, whose message is the reason shown to the
user (the caller reports it and goes on with the other files).
"""
import glob
import math
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from prtr_tf.data.image import TWELVE_BIT_MAX  # the input pipelines' rule, one value

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg",
                    ".wmv", ".flv", ".3gp")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


class InputError(Exception):
    """An input that cannot be processed; the message is the reason shown to the user."""


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
        elif values.size and values.max() <= TWELVE_BIT_MAX:  # 12-bit data (module doc)
            values = values * (255.0 / TWELVE_BIT_MAX)
            notes.append("16-bit image with values <= 4095 read as 12-bit, scaled to 8 bits")
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
