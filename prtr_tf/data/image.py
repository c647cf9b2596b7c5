"""Images in tf.data, for every family's input pipeline: decoding (accurate JPEG DCT),
the (x / 255 - mean) / std normalisation as one multiply-subtract, and robust loading
(bad image files skipped, named and counted; `load_robustly`)."""
import os
import re

import numpy as np
import tensorflow as tf

from prtr_tf.data.skips import bad_sample

AUTOTUNE = tf.data.AUTOTUNE


def normalization(mean, std):
    """(gain, offset), float32 constants with x * gain - offset = (x / 255 - mean) / std
    for uint8-range pixel values x (computed in float64)."""
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    return (tf.constant(1.0 / (255.0 * std), tf.float32),
            tf.constant(mean / std, tf.float32))


def decode_image(path):
    """Reads an image file into (h, w, 3) uint8 RGB, in-graph (`decode_bytes`)."""
    return decode_bytes(tf.io.read_file(path))


TWELVE_BIT_MAX = 4095  # a 16-bit image whose maximum is <= this holds 12-bit data
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_png16(raw):
    """Whether ``raw`` is a PNG of bit depth 16 (the IHDR chunk's bit-depth byte, at
    offset 24 of every PNG, is 16)."""
    padded = tf.strings.join([raw, tf.constant(b"\0" * 25)])  # short files: no error
    return tf.logical_and(tf.equal(tf.strings.substr(padded, 0, 8), _PNG_SIGNATURE),
                          tf.equal(tf.strings.substr(padded, 24, 1), b"\x10"))


def _decode_png16(raw):
    """A 16-bit PNG -> (h, w, 3) uint8: values / 65535, or / 4095 when the image's
    maximum is <= 4095 (12-bit data stored in 16 bits; `decode_bytes`)."""
    values = tf.cast(tf.io.decode_png(raw, channels=3, dtype=tf.uint16), tf.float32)
    full = tf.where(tf.reduce_max(values) <= TWELVE_BIT_MAX, float(TWELVE_BIT_MAX), 65535.0)
    return tf.cast(tf.clip_by_value(tf.round(values * (255.0 / full)), 0.0, 255.0), tf.uint8)


def decode_bytes(raw):
    """Encoded image bytes (string scalar) -> (h, w, 3) uint8 RGB, in-graph.

    JPEGs use the accurate integer DCT (as libjpeg's default in cv2 and PIL; TF's
    default fast DCT moves pixel values by a few levels); other formats go through
    ``tf.io.decode_image`` (first frame). EXIF orientation is ignored, as in HRNet.
    16-bit PNGs are scaled by 255/65535, except that one whose maximum value is <= 4095
    is read as 12-bit data (scaled by 255/4095; divided by 65535 it would be near black),
    the rule of `prtr_tf.inference.media` (predict's reader) too.
    """
    image = tf.case([
        (tf.io.is_jpeg(raw),
         lambda: tf.io.decode_jpeg(raw, channels=3, dct_method="INTEGER_ACCURATE")),
        (_is_png16(raw), lambda: _decode_png16(raw))],
        default=lambda: tf.io.decode_image(raw, channels=3, expand_animations=False))
    image.set_shape([None, None, 3])
    return image


def _diagnose(path):
    """Why an image file failed to load (run eagerly, on the failure path only)."""
    if not os.path.exists(path):
        return "image file not found"
    try:
        decode_image(tf.constant(path))
    except (tf.errors.OpError, OSError) as e:
        lines = getattr(e, "message", str(e)).strip().splitlines() or [repr(e)]
        message = re.sub(r"\s*\[Op:.*$", "", re.sub(r"\{\{[^}]*\}\}\s*", "", lines[0]))
        return f"cannot read or decode image file: {message}"
    return ("the image decodes, but building the sample failed (an error in the input "
            "pipeline?)")


def load_robustly(columns, loader, training, deterministic, seed, num_parallel_calls,
                  skip_bad, counter, id_key, id_name):
    """Records (a dict of columns) -> loaded elements, bad image files skipped.

    Shared by the keypoint and detection pipelines. In training the records are
    shuffled every iteration (all of them: records are small, like a PyTorch sampler)
    and each gets an int64 ``seed`` for its stateless augmentation. ``loader`` maps a
    record to an element with ``_ok`` True and ``_path``; ``loader.placeholder`` to one
    with ``_ok`` False. A record whose loading fails (missing file, corrupt image) is
    reported with its path and ``id_name`` ``rec[id_key]`` and counted in ``counter``
    (or raises when not ``skip_bad``). Private ``_`` keys are dropped from the result.
    """
    ordered = deterministic or not training
    parallel = AUTOTUNE if int(num_parallel_calls) < 0 else int(num_parallel_calls)
    ds = tf.data.Dataset.from_tensor_slices(columns)
    if training:
        seeds = tf.data.Dataset.random(seed=seed if deterministic else None,
                                       rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip(ds, seeds).map(lambda rec, s: dict(rec, seed=s))
        ds = ds.shuffle(len(columns["index"]), seed=seed if deterministic else None,
                        reshuffle_each_iteration=True)

    def load_or_mark(rec):
        # A one-element dataset that cannot fail: the loaded sample, or on any error
        # (missing file, corrupt image) the placeholder with _ok False.
        one = tf.data.Dataset.from_tensors(rec)
        good = one.map(loader).ignore_errors()
        return good.concatenate(one.map(loader.placeholder)).take(1)

    ds = ds.interleave(load_or_mark, cycle_length=parallel, block_length=1,
                       num_parallel_calls=parallel, deterministic=ordered)

    def report(path, ident):
        path = path.numpy().decode("utf-8", "replace")
        bad_sample(f"{path} ({id_name} {int(ident)}): {_diagnose(path)}", skip_bad, counter)
        return False

    def keep(elem):
        return tf.cond(elem["_ok"], lambda: tf.constant(True), lambda: tf.reshape(
            tf.py_function(report, [elem["_path"], elem[id_key]], tf.bool), []))

    ds = ds.filter(keep)
    return ds.map(lambda e: {k: v for k, v in e.items() if not k.startswith("_")})


def finish(ds, ordered, counter):
    """Prefetch, the determinism option, and the skip counter on the dataset."""
    ds = ds.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = ordered
    # No autotuning model: deleting an iterator (the trainer does at every epoch end)
    # waits for the model's optimisation thread, which sleeps up to 60 s between
    # rounds. Measured with one TensorFlow thread: 39 s to delete the iterator after a
    # 100-s epoch (0.01 s without it), and the demo's trainings lost up to 60 s at
    # most epoch ends; the same batches per second either way (9.1 against 8.9 s for
    # 150 batches). AUTOTUNE parallelism then stays at its start value (the cores).
    options.autotune.enabled = False
    ds = ds.with_options(options)
    ds.skip_counter = counter
    return ds
