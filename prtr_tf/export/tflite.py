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
in `prtr_tf.keypoint.predict.read_crops`.

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

Quantisation: "fp16" (float16 weights), "int8" (dynamic-range: int8 weights,
activations quantised on the fly; no representative data) and "int8_full"
(full-integer: int8 weights *and* activations, ranges calibrated on representative
crops). TFLite's calibrator (TF 2.21) crashes with a segmentation fault on the
readout's WHILE loops, so "int8_full" converts the network (backbone, transformer,
heads; `_KeypointNetwork`) with calibration and the readout (`_KeypointReadout`, which
stays float32: an assignment is not something to quantise) on its own, and
`merge_network_and_readout` joins the two flatbuffers into one model (the readout's
ops appended to the network's main subgraph, its loop subgraphs appended), so the file
has the same single signature, input and outputs as the other modes. The input and
outputs stay float32 (QUANTIZE / DEQUANTIZE at the network's ends).
"""
import json
import os
import re

import flatbuffers
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2)

from prtr_tf.datasets import DATASETS
from prtr_tf.keypoint.predict import read_crops

QUANTIZATIONS = ("fp32", "fp16", "int8", "int8_full")
METADATA_NAME = "prtr_tf_metadata"
_CUSTOM = 32  # BuiltinOperator.CUSTOM in the TFLite schema


_DYNAMIC_INT8 = (
    "quantization='int8' is dynamic-range int8 (int8 weights, no representative data); "
    "for full-integer int8 calibrated on representative crops use quantization="
    "'int8_full' with the representative data")


class UnsupportedOpsError(RuntimeError):
    """The model needs ops outside the TFLite builtin set (Flex / select TF / custom)."""


# --------------------------------------------------------------------------- graphs


class _KeypointNetwork(tf.Module):
    """The network part of the keypoint export: crops -> the final decoder layer's
    ``pred_logits`` / ``pred_coords`` (and ``flip_logits`` / ``flip_coords`` of the
    mirrored crops with a flip test). No readout: this part is what int8_full quantises."""

    def __init__(self, model, flip=False):
        super().__init__()
        self.model = model
        self.flip = bool(flip)

    def __call__(self, images):
        out = self.model(images, training=False)
        result = {"pred_logits": out["pred_logits"], "pred_coords": out["pred_coords"]}
        if self.flip:
            flipped = self.model(tf.reverse(images, axis=[2]), training=False)
            result.update(flip_logits=flipped["pred_logits"], flip_coords=flipped["pred_coords"])
        return {k: tf.cast(v, tf.float32) for k, v in result.items()}


class _KeypointReadout(tf.Module):
    """The readout part: network outputs (as `_KeypointNetwork`'s) -> the exported
    outputs keypoints, keypoints_px, keypoint_scores, query (float32 / int32)."""

    def __init__(self, image_size_hw, flip_pairs=None):
        super().__init__()
        self.image_size_hw = tuple(int(s) for s in image_size_hw)
        self.flip_pairs = flip_pairs

    def __call__(self, net):
        h, w = self.image_size_hw
        flipped = None
        if self.flip_pairs is not None:
            flipped = {"pred_logits": net["flip_logits"], "pred_coords": net["flip_coords"]}
        coords, scores, query = read_crops(
            {"pred_logits": net["pred_logits"], "pred_coords": net["pred_coords"]}, flipped,
            self.flip_pairs, return_query=True)
        coords = tf.cast(coords, tf.float32)
        return {
            "keypoints": tf.identity(coords, name="keypoints"),
            "keypoints_px": tf.identity(coords * tf.constant([w, h], tf.float32),
                                        name="keypoints_px"),
            "keypoint_scores": tf.identity(tf.cast(scores, tf.float32), name="keypoint_scores"),
            "query": tf.identity(query, name="query"),
        }


class _KeypointExport(tf.Module):
    """Network + readout in one graph (fp32 / fp16 / dynamic-range int8)."""

    def __init__(self, model, image_size_hw, flip_pairs=None):
        super().__init__()
        self.model = model
        self.network = _KeypointNetwork(model, flip=flip_pairs is not None)
        self.readout = _KeypointReadout(image_size_hw, flip_pairs)

    def __call__(self, images):
        return self.readout(self.network(images))


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


def _convert(module, input_shape, quantization, representative=None, trackable=None):
    """module -> (flatbuffer, output names in signature order). ``input_shape``: the
    shape of the single input "images", or {name: shape} for a module taking one dict.
    ``representative``: float32 inputs (N, ...) for "int8_full" calibration."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    if isinstance(input_shape, dict):
        spec = [{k: tf.TensorSpec(v, tf.float32, name=k) for k, v in input_shape.items()}]
    else:
        spec = [tf.TensorSpec(input_shape, tf.float32, name="images")]
    fn = tf.function(module.__call__, input_signature=spec)
    concrete = fn.get_concrete_function()
    # The weights are frozen into constants here, before the converter sees the
    # function: left as variables they end up as VAR_HANDLE/READ_VARIABLE ops without
    # initial values (or are dropped) with from_concrete_functions and Keras 3 models.
    frozen = convert_variables_to_constants_v2(concrete)
    # Freezing loses the output names (the signature then says output_0, output_1, ...
    # in the order of the flattened dict, i.e. sorted keys): restored afterwards.
    output_names = sorted(concrete.structured_outputs)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [frozen], trackable_obj=trackable if trackable is not None else module.model)
    converter.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    if quantization == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if representative is not None:
            raise ValueError(_DYNAMIC_INT8)
        # Dynamic-range int8: int8 weights, activations quantised on the fly by the
        # hybrid CONV_2D / FULLY_CONNECTED / BATCH_MATMUL kernels; float elsewhere.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization == "int8_full":
        representative = np.asarray(representative, np.float32)
        batch = int(input_shape[0])
        if representative.ndim != len(input_shape) or len(representative) < 1 or \
                tuple(representative.shape[1:]) != tuple(input_shape[1:]):
            raise ValueError(f"int8_full needs representative inputs of shape (N, "
                             f"{', '.join(str(d) for d in input_shape[1:])}), got "
                             f"{representative.shape}")

        def calibration():
            for i in range(0, len(representative) - batch + 1, batch):
                yield [representative[i:i + batch]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        # Every op with an int8 kernel runs in int8; the rest (none in the networks
        # here) stays float. Both sets are TFLite builtins.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                               tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "int8_full" and len(representative) < int(input_shape[0]):
        raise ValueError(f"int8_full: {len(representative)} representative inputs, fewer "
                         f"than the batch size {input_shape[0]}")
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
        quantization: "fp32", "fp16" (float16 weights), "int8" (dynamic-range: int8
            weights, activations quantised on the fly by the hybrid conv/matmul
            kernels) or "int8_full" (int8 weights and activations, calibrated on
            ``representative_crops``; the readout stays float32, see the module
            docstring). Input and outputs are float32 in every mode.
        representative_crops: "int8_full" only (required there; must be None
            otherwise): float32 (N, H, W, 3) crops normalised as the model input
            (e.g. `representative_crops`), N >= batch_size; a few hundred real crops
            are typical, used in batches of ``batch_size``.
        flip_test: average with the mirrored crop in-graph (spec §6).
        batch_size: the fixed batch size B of the input.
    """
    h, w = (int(s) for s in config.model.image_size)
    flip_pairs = DATASETS[config.data.dataset]["flip_pairs"] if flip_test else None
    if quantization == "int8_full":
        if representative_crops is None:
            raise ValueError("quantization='int8_full' needs representative_crops (float32 "
                             f"(N, {h}, {w}, 3) normalised crops, e.g. from "
                             "prtr_tf.export.tflite.representative_crops)")
        network = _KeypointNetwork(model, flip=flip_test)
        net_fb, net_names = _convert(network, [batch_size, h, w, 3], "int8_full",
                                     representative_crops)
        readout = _KeypointReadout((h, w), flip_pairs)
        j, q = int(config.model.num_joints), int(config.model.num_queries)
        shapes = {"pred_logits": [batch_size, q, j + 1], "pred_coords": [batch_size, q, 2]}
        if flip_test:
            shapes.update(flip_logits=shapes["pred_logits"], flip_coords=shapes["pred_coords"])
        readout_fb, names = _convert(readout, shapes, "fp32", trackable=readout)
        flatbuffer = merge_network_and_readout(net_fb, net_names, readout_fb)
        check_builtin_only(flatbuffer)
    else:
        if representative_crops is not None and quantization != "int8":
            raise ValueError(f"representative_crops are for quantization='int8_full', not "
                             f"{quantization!r}")
        module = _KeypointExport(model, (h, w), flip_pairs)
        flatbuffer, names = _convert(module, [batch_size, h, w, 3], quantization,
                                     representative_crops)
    meta = keypoint_metadata(config, quantization, flip_test, batch_size)
    return embed_metadata(flatbuffer, meta, output_names=names)


CALIBRATION_SOURCES = ("train", "synthetic")


def representative_crops(config, num, source="train", seed=0):
    """float32 (num, H, W, 3) normalised crops for "int8_full" calibration: person
    boxes (ground truth, ``num`` of them drawn at random) cropped by the evaluation
    pipeline (`build_eval_dataset`: no augmentation), from

    * "train": the config's training set (`prtr_tf.data.splits.load_records`; a
      synthetic config's data are generated on first use);
    * "synthetic": freshly drawn stick-figure images (`prtr_tf.data.synthetic`, in a
      temporary folder), for when the real data are not at hand (COCO joints).
    """
    import tempfile

    from prtr_tf.data.coco import load_coco_keypoints
    from prtr_tf.data.pipeline import build_eval_dataset
    from prtr_tf.data.splits import load_records

    if source not in CALIBRATION_SOURCES:
        raise ValueError(f"calibration source must be one of {CALIBRATION_SOURCES}, got "
                         f"{source!r}")
    if num < 1:
        raise ValueError(f"the number of calibration crops must be >= 1, got {num}")
    with tempfile.TemporaryDirectory() as tmp:
        if source == "train":
            records = load_records(config, "train")
        else:
            from prtr_tf.data.synthetic import generate
            ann = generate(tmp, num_images=max(1, (num + 1) // 2), seed=seed, progress=False)
            records = load_coco_keypoints(ann, os.path.join(os.path.dirname(ann), "images"),
                                          tuple(config.model.image_size))
        if not records:
            raise ValueError(f"no person boxes for calibration in the {source!r} data")
        order = np.random.RandomState(seed).permutation(len(records))[:num]
        records = [records[i] for i in order]
        crops = [b["image"].numpy() for b in build_eval_dataset(records, config, batch=32)]
    return np.concatenate(crops).astype(np.float32)


def convert_detector(det_model, det_config, size_hw, quantization="fp32",
                     representative_images=None, batch_size=1):
    """DETR -> TFLite flatbuffer bytes at the fixed input size ``size_hw`` (H, W).

    ``quantization``: "fp32", "fp16" or "int8" (dynamic range) as in
    `convert_keypoint_model`; "int8_full" is not offered for the detector (not
    measured), and ``representative_images`` must be None.
    """
    if quantization == "int8_full" or representative_images is not None:
        raise ValueError("detector: full-integer int8 (int8_full, representative images) is "
                         "not offered; use quantization='int8' (dynamic range)")
    h, w = (int(s) for s in size_hw)
    module = _DetectorExport(det_model, person_class_index(det_config))
    flatbuffer, names = _convert(module, [batch_size, h, w, 3], quantization,
                                 representative_images)
    meta = detector_metadata(det_config, (h, w), quantization, batch_size)
    return embed_metadata(flatbuffer, meta, output_names=names)


def merge_network_and_readout(net_fb, net_output_names, readout_fb):
    """Joins two converted models into one: the network's outputs feed the readout's
    inputs (matched by name: the network's i-th signature output ``output_i`` is
    ``net_output_names[i]``, the readout's input of that name), the result has the
    network's input and the readout's outputs (still named ``output_i``).

    The readout's operators and tensors are appended to the network's main subgraph,
    its other subgraphs (WHILE/IF bodies) appended with their indices shifted, its
    buffers and operator codes appended (operator codes shared when equal).
    """
    schema = _schema()
    net = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(net_fb), 0))
    ro = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(readout_fb), 0))
    if len(net.signatureDefs or []) != 1 or len(ro.signatureDefs or []) != 1:
        raise ValueError("expected exactly one signature in each model to merge")
    net_sig, ro_sig = net.signatureDefs[0], ro.signatureDefs[0]
    main = net.subgraphs[net_sig.subgraphIndex]

    def name(x):
        return x.decode() if isinstance(x, bytes) else x

    net_out = {}
    for out in net_sig.outputs:
        key = name(out.name)
        net_out[net_output_names[int(key[len("output_"):])]] = out.tensorIndex
    ro_main_index = ro_sig.subgraphIndex
    ro_main = ro.subgraphs[ro_main_index]
    inputs = {}
    for inp in ro_sig.inputs:
        key = name(inp.name)
        if key not in net_out:
            raise ValueError(f"readout input {key!r} is not a network output "
                             f"({sorted(net_out)})")
        inputs[inp.tensorIndex] = net_out[key]
    if sorted(inputs) != sorted(int(i) for i in ro_main.inputs):
        raise ValueError("the readout's signature inputs are not its subgraph's inputs")

    def code_key(c):
        return (int(c.builtinCode), int(c.deprecatedBuiltinCode),
                name(c.customCode) if c.customCode is not None else None, int(c.version))

    codes = {code_key(c): i for i, c in enumerate(net.operatorCodes)}
    code_map = []
    for c in ro.operatorCodes:
        if code_key(c) not in codes:
            net.operatorCodes.append(c)
            codes[code_key(c)] = len(net.operatorCodes) - 1
        code_map.append(codes[code_key(c)])
    buffer_offset = len(net.buffers)
    net.buffers.extend(ro.buffers)
    subgraph_map, next_index = {}, len(net.subgraphs)
    for i in range(len(ro.subgraphs)):
        if i == ro_main_index:
            subgraph_map[i] = net_sig.subgraphIndex
        else:
            subgraph_map[i], next_index = next_index, next_index + 1
    tensor_offset = len(main.tensors)

    def main_tensor(i):
        i = int(i)
        return -1 if i < 0 else inputs.get(i, i + tensor_offset)

    subgraph_fields = ("condSubgraphIndex", "bodySubgraphIndex", "thenSubgraphIndex",
                       "elseSubgraphIndex", "initSubgraphIndex", "decompositionSubgraphIndex")
    for i, sg in enumerate(ro.subgraphs):
        for t in sg.tensors:
            t.buffer = int(t.buffer) + buffer_offset
        for op in sg.operators:
            op.opcodeIndex = code_map[op.opcodeIndex]
            options = op.builtinOptions
            for field in subgraph_fields:
                if options is not None and hasattr(options, field):
                    setattr(options, field, subgraph_map[int(getattr(options, field))])
            if i == ro_main_index:
                for field in ("inputs", "outputs", "intermediates"):
                    values = getattr(op, field)
                    if values is not None:
                        setattr(op, field, [main_tensor(v) for v in values])
        if i != ro_main_index:
            net.subgraphs.append(sg)
    main.tensors.extend(ro_main.tensors)
    main.operators.extend(ro_main.operators)
    main.outputs = [main_tensor(v) for v in ro_main.outputs]
    for out in ro_sig.outputs:
        out.tensorIndex = main_tensor(out.tensorIndex)
    net_sig.outputs = ro_sig.outputs
    builder = flatbuffers.Builder(len(net_fb) + len(readout_fb) + 4096)
    builder.Finish(net.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


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
        # Used by predict.py --tflite when no --config is given.
        "postprocess": {"box_padding": float(config.data.box_padding),
                        "image_thre": float(config.test.image_thre),
                        "in_vis_thre": float(config.test.in_vis_thre),
                        "oks_thre": float(config.test.oks_thre)},
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
