"""Writing exported .tflite files: `save_tflite` (one model and its metadata sidecar)
and `export_tflite` (a keypoint model, and optionally a person detector, in every
quantisation asked for, into one folder: what ``prtr-export tflite`` writes).

Files are written atomically (`prtr_tf.files.atomic`): a failed export leaves no
partial file.
"""
import json
import os

from prtr_tf.files.atomic import atomic_output, write_bytes
from prtr_tf.export.tflite.convert import convert_detector, convert_keypoint_model
from prtr_tf.export.tflite.metadata import read_metadata


def save_tflite(flatbuffer, path):
    """Writes ``path`` (.tflite) and its sidecar ``path`` with .json (the embedded
    metadata); returns (path, sidecar)."""
    meta = read_metadata(flatbuffer)
    sidecar = os.path.splitext(path)[0] + ".json"
    write_bytes(path, flatbuffer)
    with atomic_output(sidecar) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2, sort_keys=True)
    return path, sidecar


def file_names(quantizations, with_detector):
    """The files `export_tflite` writes into its folder (the .tflite and .json of each)."""
    names = [f"keypoints_{q}" for q in quantizations]
    names += [f"detector_{q}" for q in quantizations if with_detector and q != "int8_full"]
    return [n + ext for n in names for ext in (".tflite", ".json")]


def export_tflite(output, model, config, quantizations, representative_crops=None,
                  flip_test=False, batch_size=1, detector=None, detector_config=None,
                  detector_size=None):
    """Writes ``output``/keypoints_{q}.tflite (+ .json) for every quantisation q and,
    with a ``detector``, ``output``/detector_{q}.tflite (+ .json) at the fixed input
    size ``detector_size`` (H, W); "int8_full" is skipped for the detector (not
    offered, see `convert_detector`). ``representative_crops``: for "int8_full".
    Returns [(path, sidecar)] in the order written."""
    written = []
    for q in quantizations:
        fb = convert_keypoint_model(model, config, q,
                                    representative_crops if q == "int8_full" else None,
                                    flip_test=flip_test, batch_size=batch_size)
        written.append(save_tflite(fb, os.path.join(output, f"keypoints_{q}.tflite")))
    if detector is not None:
        for q in quantizations:
            if q == "int8_full":
                continue
            fb = convert_detector(detector, detector_config, detector_size, q,
                                  batch_size=batch_size)
            written.append(save_tflite(fb, os.path.join(output, f"detector_{q}.tflite")))
    return written
