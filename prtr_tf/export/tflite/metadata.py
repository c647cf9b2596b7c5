"""The metadata of an exported .tflite: what a runtime needs to feed the model and read
its outputs (joint names, skeleton, flip pairs, input size, colour order, mean/std,
outputs), as a JSON-able dict.

`keypoint_metadata` / `detector_metadata` describe a model; `embed_metadata` stores the
JSON inside the flatbuffer (the schema's ``metadata`` list, entry `METADATA_NAME`),
`read_metadata` reads it back. (`prtr_tf.export.tflite.files.save_tflite` also writes
it as a sidecar ``NAME.json``.)
"""
import json

import numpy as np

from prtr_tf.data import keypoint_sets
from prtr_tf.models import registry
from prtr_tf.models.detector.records import person_label
from prtr_tf.export.tflite.flatbuffer import load_bytes, pack, rename_outputs, schema, unpack

METADATA_NAME = "prtr_tf_metadata"


def keypoint_metadata(config, quantization, flip_test=False, batch_size=1):
    h, w = (int(s) for s in config.model.image_size)
    return {
        "format": "prtr_tf.keypoints/1",
        "model": "PRTR two-stage keypoint transformer (+ in-graph readout)",
        "backbone": str(config.model.backbone),
        "dataset": str(config.data.dataset),
        "quantization": quantization,
        "flip_test": bool(flip_test),
        "input": {
            "name": "images", "shape": [int(batch_size), h, w, 3], "dtype": "float32",
            "crop_size_hw": [h, w],
            "color_order": "RGB" if bool(config.data.color_rgb) else "BGR",
            "normalization": "(pixel / 255 - mean) / std, per channel in color_order",
            "mean": [float(v) for v in config.data.mean],
            "std": [float(v) for v in config.data.std],
            "pixel_std": float(config.data.pixel_std),
        },
        "outputs": {
            "keypoints": "(B, J, 2) float32 (x, y) normalised by the crop (W, H)",
            "keypoints_px": "(B, J, 2) float32 (x, y) in crop pixels",
            "keypoint_scores": "(B, J) float32",
            "query": "(B, J) int32 query assigned to each joint",
        },
        # Used by predict.py --tflite when no --config is given.
        "postprocess": {"box_padding": float(config.data.box_padding),
                        "image_thre": float(config.test.image_thre),
                        "in_vis_thre": float(config.test.in_vis_thre),
                        "oks_thre": float(config.test.oks_thre)},
        **keypoint_sets.metadata(config),  # keypoint_names, skeleton, flip_pairs, sigmas
    }


def detector_metadata(det_config, size_hw, quantization, batch_size=1, score_threshold=None):
    """``score_threshold``: the minimum P(person) a runtime keeps by default (recorded as
    ``"score_threshold"``; None: `prtr_tf.serving.defaults.PERSON_SCORE_THRESHOLD`, the
    default of every prediction path; `prtr_tf.serving.backends.TFLiteDetector` reads it)."""
    from prtr_tf.serving import defaults
    h, w = (int(s) for s in size_hw)
    data = det_config.data
    return {
        "format": "prtr_tf.detector/1",  # the file format id (not a module path)
        "model": "DETR person detector",
        "backbone": str(det_config.model.backbone),
        "num_classes": int(det_config.model.num_classes),
        "person_class_index": person_label(det_config),
        "score_threshold": float(defaults.PERSON_SCORE_THRESHOLD if score_threshold is None
                                 else score_threshold),
        "quantization": quantization,
        "input": {
            "name": "images", "shape": [int(batch_size), h, w, 3], "dtype": "float32",
            "size_hw": [h, w],
            "color_order": "RGB" if bool(data.get("color_rgb", True)) else "BGR",
            "normalization": "(pixel / 255 - mean) / std, per channel in color_order; "
                             "resize (no padding) to size_hw",
            "mean": [float(v) for v in data.mean],
            "std": [float(v) for v in data.std],
        },
        "outputs": {
            "boxes": "(B, Q, 4) float32 (cx, cy, w, h) normalised by the input size",
            "scores": "(B, Q) float32 person probability ("
                      + registry.get(det_config).person_score + ")",
        },
    }


def embed_metadata(flatbuffer, meta, name=METADATA_NAME, output_names=None):
    """Stores ``meta`` (JSON) in the flatbuffer's ``metadata`` list as ``name``.

    ``output_names``: names for the signature outputs ``output_0``, ``output_1``, ...
    (in that order); the output tensors are renamed likewise.
    """
    s = schema()
    model = unpack(flatbuffer)
    if output_names is not None:
        rename_outputs(model, output_names)
    buffer = s.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = s.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (name, name.encode())]
    model.metadata.append(entry)
    return pack(model, len(flatbuffer))


def read_metadata(path_or_bytes, name=METADATA_NAME):
    """The JSON metadata embedded by `embed_metadata` (None if absent)."""
    model = schema().Model.GetRootAsModel(bytearray(load_bytes(path_or_bytes)), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == name:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(data).decode("utf-8"))
    return None
