"""TFLite export of the keypoint model (with its readout) and of the DETR person detector.

Everything here produces models that run with the TFLite *builtin* op set only (no
Flex / select TF ops, no custom ops): conversion is asked for
``TFLITE_BUILTINS`` (+ ``TFLITE_BUILTINS_INT8`` for int8) and the converted
flatbuffer's operator list is checked as well; anything else raises
`UnsupportedOpsError` naming the offending ops.

Keypoint model (`convert_keypoint_model`): input ``images`` float32
(B, H, W, 3), crops normalised as in ``config.data`` (x/255 - mean) / std, BGR for
ResNet configs and RGB for HRNet ones. Outputs (the readout of spec §3.2 runs in the
graph)::

    keypoints         float32 (B, J, 2)  (x, y) normalised to [0, 1] by the crop size
    keypoints_px      float32 (B, J, 2)  (x, y) in crop pixels (keypoints * (W, H))
    keypoint_scores   float32 (B, J)
    query             int32   (B, J)     the query assigned to each joint (unflipped pass)

With ``flip_test`` the mirrored crop runs too and coordinates/scores are averaged as
in `prtr_tf.inference.predict_crops`.

Detector (`convert_detector`): input ``images`` float32 (B, H, W, 3) at a fixed size,
RGB normalised with the detector's mean/std, no padding. Outputs ``boxes`` (B, Q, 4)
normalised (cx, cy, w, h) and ``scores`` (B, Q): the person probability (softmax over
all classes, no-object included, as DETR's post-processing).

Metadata: `keypoint_metadata` / `detector_metadata` describe the model (joint names,
skeleton, flip pairs, input size, colour order, mean/std, outputs) as a JSON-able
dict. `embed_metadata` stores that JSON inside the flatbuffer (the schema's
``metadata`` list, entry ``METADATA_NAME``, read back by `read_metadata`), and
`save_tflite` also writes it as a sidecar ``NAME.json``.

`run_tflite` runs a model with ai-edge-litert's interpreter (TF's bundled
``tf.lite.Interpreter`` is deprecated). Its default XNNPACK delegate is disabled by
default (``use_xnnpack=False``): the reference CPU kernels are what the tests
compare against.

int8 is dynamic-range quantisation (int8 weights). Full-integer int8 calibrated on
representative data is not offered: TFLite's calibrator (TF 2.21) crashes with a
segmentation fault on the readout's WHILE loops.
"""
import json
import os
import re

import flatbuffers
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2)

from prtr_tf.config import DATASETS
from prtr_tf.inference import predict_crops

QUANTIZATIONS = ("fp32", "fp16", "int8")
METADATA_NAME = "prtr_tf_metadata"
_CUSTOM = 32  # BuiltinOperator.CUSTOM in the TFLite schema


_NO_FULL_INT8 = (
    "full-integer int8 (calibrated with representative data) is not supported: TFLite's "
    "calibrator crashes (segmentation fault, TF 2.21) on the readout's WHILE loops. "
    "quantization='int8' exports dynamic-range int8 (int8 weights, no representative "
    "data needed); pass representative data=None")


class UnsupportedOpsError(RuntimeError):
    """The model needs ops outside the TFLite builtin set (Flex / select TF / custom)."""


# --------------------------------------------------------------------------- graphs


class _KeypointExport(tf.Module):
    def __init__(self, model, image_size_hw, flip_pairs=None):
        super().__init__()
        self.model = model
        self.image_size_hw = tuple(int(s) for s in image_size_hw)
        self.flip_pairs = flip_pairs

    def __call__(self, images):
        h, w = self.image_size_hw
        coords, scores, query = predict_crops(self.model, images, self.flip_pairs,
                                              return_query=True)
        coords = tf.cast(coords, tf.float32)
        return {
            "keypoints": tf.identity(coords, name="keypoints"),
            "keypoints_px": tf.identity(coords * tf.constant([w, h], tf.float32),
                                        name="keypoints_px"),
            "keypoint_scores": tf.identity(tf.cast(scores, tf.float32), name="keypoint_scores"),
            "query": tf.identity(query, name="query"),
        }


class _DetectorExport(tf.Module):
    def __init__(self, det_model, person_index):
        super().__init__()
        self.model = det_model
        self.person_index = int(person_index)

    def __call__(self, images):
        out = self.model(images, training=False)
        prob = tf.nn.softmax(tf.cast(out["pred_logits"], tf.float32), axis=-1)
        return {
            "boxes": tf.identity(tf.cast(out["pred_boxes"], tf.float32), name="boxes"),
            "scores": tf.identity(prob[..., self.person_index], name="scores"),
        }


def person_class_index(det_config):
    """Index of the person class in the detector's logits: 0 for a person-only
    detector, COCO category id 1 for the official 91-class DETR."""
    return 0 if int(det_config.model.num_classes) == 1 else 1


# ------------------------------------------------------------------------ conversion


def _convert(module, input_shape, quantization, representative=None):
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    fn = tf.function(module.__call__,
                     input_signature=[tf.TensorSpec(input_shape, tf.float32, name="images")])
    concrete = fn.get_concrete_function()
    # The weights are frozen into constants here, before the converter sees the
    # function: left as variables they end up as VAR_HANDLE/READ_VARIABLE ops without
    # initial values (or are dropped) with from_concrete_functions and Keras 3 models.
    frozen = convert_variables_to_constants_v2(concrete)
    # Freezing loses the output names (the signature then says output_0, output_1, ...
    # in the order of the flattened dict, i.e. sorted keys): restored afterwards.
    output_names = sorted(concrete.structured_outputs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen],
                                                                trackable_obj=module.model)
    converter.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if representative is not None:
            raise ValueError(_NO_FULL_INT8)
        # Dynamic-range int8: int8 weights, activations quantised on the fly by the
        # hybrid CONV_2D / FULLY_CONNECTED / BATCH_MATMUL kernels; float elsewhere.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        flatbuffer = converter.convert()
    except Exception as e:  # ConverterError and friends
        text = str(e)
        if any(k in text for k in ("Flex", "select TF ops", "SELECT_TF_OPS", "not supported",
                                   "custom op", "failed to legalize", "Failed to legalize")):
            ops = sorted(set(re.findall(r"'tf\.(\w+)' op is neither", text)))
            select = re.findall(r"TF Select ops: ([^\n]*)", text)
            raise UnsupportedOpsError(
                "TFLite conversion needs ops outside the builtin op set (this export allows "
                "TFLITE_BUILTINS only, no Flex/select TF ops or custom ops): "
                f"{', '.join(ops) or (select[0] if select else 'see the converter output')}. "
                f"Converter said (last 2000 characters):\n{text[-2000:]}") from e
        raise
    check_builtin_only(flatbuffer)
    return flatbuffer, output_names


def convert_keypoint_model(model, config, quantization="fp32", representative_crops=None,
                           flip_test=False, batch_size=1):
    """Keypoint model + readout -> TFLite flatbuffer bytes (metadata embedded).

    Params:
        model: a built `PoseTransformer` (weights loaded).
        config: its full config (``config.model.image_size``, ``config.data``).
        quantization: "fp32", "fp16" (float16 weights) or "int8" (dynamic-range:
            int8 weights, activations quantised on the fly by the hybrid conv/matmul
            kernels; float32 input and outputs).
        representative_crops: must be None. Full-integer int8 calibrated on
            representative crops is not available (TFLite's calibrator crashes on the
            readout's WHILE loops); kept so that callers fail with that explanation.
        flip_test: average with the mirrored crop in-graph (spec §6).
        batch_size: the fixed batch size B of the input.
    """
    h, w = (int(s) for s in config.model.image_size)
    flip_pairs = DATASETS[config.data.dataset]["flip_pairs"] if flip_test else None
    module = _KeypointExport(model, (h, w), flip_pairs)
    flatbuffer, names = _convert(module, [batch_size, h, w, 3], quantization,
                                 representative_crops)
    meta = keypoint_metadata(config, quantization, flip_test, batch_size)
    return embed_metadata(flatbuffer, meta, output_names=names)


def convert_detector(det_model, det_config, size_hw, quantization="fp32",
                     representative_images=None, batch_size=1):
    """DETR -> TFLite flatbuffer bytes at the fixed input size ``size_hw`` (H, W).

    ``quantization`` as in `convert_keypoint_model`; ``representative_images`` must be
    None (no full-integer int8, see there).
    """
    h, w = (int(s) for s in size_hw)
    module = _DetectorExport(det_model, person_class_index(det_config))
    flatbuffer, names = _convert(module, [batch_size, h, w, 3], quantization,
                                 representative_images)
    meta = detector_metadata(det_config, (h, w), quantization, batch_size)
    return embed_metadata(flatbuffer, meta, output_names=names)


# --------------------------------------------------------------------------- checks


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def _builtin_names():
    schema = _schema()
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def list_ops(flatbuffer):
    """Operator names used by a TFLite model; custom ops (Flex included) by their
    custom code, prefixed ``CUSTOM:``."""
    schema = _schema()
    model = schema.Model.GetRootAsModel(bytearray(flatbuffer), 0)
    names = _builtin_names()
    ops = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        if builtin == _CUSTOM:
            custom = code.CustomCode()
            ops.append("CUSTOM:" + (custom.decode() if custom else "?"))
        else:
            ops.append(names.get(builtin, f"BUILTIN_{builtin}"))
    return ops


def check_builtin_only(flatbuffer):
    """Raises `UnsupportedOpsError` if the model holds custom or Flex ops."""
    bad = [op for op in list_ops(flatbuffer) if op.startswith("CUSTOM:")]
    if bad:
        raise UnsupportedOpsError(
            f"the converted TFLite model uses non-builtin ops {sorted(set(bad))} "
            "(Flex/select TF ops or custom ops); only TFLITE_BUILTINS are allowed")


# ------------------------------------------------------------------------- metadata


def keypoint_metadata(config, quantization, flip_test=False, batch_size=1):
    ds = DATASETS[config.data.dataset]
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
        "keypoint_names": list(ds["joints"]),
        "skeleton": [list(p) for p in ds["skeleton"]],
        "flip_pairs": [list(p) for p in ds["flip_pairs"]],
    }


def detector_metadata(det_config, size_hw, quantization, batch_size=1):
    h, w = (int(s) for s in size_hw)
    data = det_config.data
    return {
        "format": "prtr_tf.detector/1",
        "model": "DETR person detector",
        "backbone": str(det_config.model.backbone),
        "num_classes": int(det_config.model.num_classes),
        "person_class_index": person_class_index(det_config),
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
            "scores": "(B, Q) float32 person probability (softmax incl. no-object)",
        },
    }


def embed_metadata(flatbuffer, meta, name=METADATA_NAME, output_names=None):
    """Stores ``meta`` (JSON) in the flatbuffer's ``metadata`` list as ``name``.

    ``output_names``: names for the signature outputs ``output_0``, ``output_1``, ...
    (in that order); the output tensors are renamed likewise.
    """
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(flatbuffer), 0))
    if output_names is not None:
        _rename_outputs(model, output_names)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (name, name.encode())]
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _rename_outputs(model, output_names):
    if len(model.signatureDefs or []) != 1:
        raise ValueError("expected exactly one signature in the converted model")
    sig = model.signatureDefs[0]
    graph = model.subgraphs[sig.subgraphIndex]
    for out in sig.outputs:
        key = out.name.decode() if isinstance(out.name, bytes) else out.name
        if not key.startswith("output_"):
            continue
        new = output_names[int(key[len("output_"):])]
        out.name = new
        graph.tensors[out.tensorIndex].name = new


def read_metadata(path_or_bytes, name=METADATA_NAME):
    """The JSON metadata embedded by `embed_metadata` (None if absent)."""
    schema = _schema()
    model = schema.Model.GetRootAsModel(bytearray(_load_bytes(path_or_bytes)), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == name:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(data).decode("utf-8"))
    return None


def save_tflite(flatbuffer, path):
    """Writes ``path`` (.tflite) and its sidecar ``path`` with .json (the embedded metadata)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(flatbuffer)
    meta = read_metadata(flatbuffer)
    sidecar = os.path.splitext(path)[0] + ".json"
    with open(sidecar, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    return path, sidecar


# --------------------------------------------------------------------------- running


def _load_bytes(path_or_bytes):
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    with open(path_or_bytes, "rb") as f:
        return f.read()


def make_interpreter(path_or_bytes, use_xnnpack=False, num_threads=None):
    """An allocated ai-edge-litert Interpreter; XNNPACK off unless ``use_xnnpack``."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    resolver = (OpResolverType.AUTO if use_xnnpack
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp = Interpreter(model_content=_load_bytes(path_or_bytes),
                         experimental_op_resolver_type=resolver, num_threads=num_threads)
    interp.allocate_tensors()
    return interp


def run_tflite(path_or_bytes, inputs, use_xnnpack=False, num_threads=None):
    """Runs a TFLite model; returns {output name: array}.

    ``inputs``: one array (single-input models) or {input name: array}. Output names
    are the signature's (``keypoints``, ``keypoint_scores``, ... / ``boxes``, ``scores``).
    """
    interp = make_interpreter(path_or_bytes, use_xnnpack, num_threads)
    runner = interp.get_signature_runner()
    if not isinstance(inputs, dict):
        names = list(runner.get_input_details())
        if len(names) != 1:
            raise ValueError(f"the model has inputs {names}: pass a dict")
        inputs = {names[0]: inputs}
    return {k: np.asarray(v) for k, v in runner(**inputs).items()}
