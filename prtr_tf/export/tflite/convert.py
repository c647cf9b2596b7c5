"""Conversion to TFLite of the keypoint model (with its readout) and of the DETR person
detector, with the TFLite *builtin* op set only.

No Flex / select TF ops, no custom ops: conversion is asked for ``TFLITE_BUILTINS``
(+ ``TFLITE_BUILTINS_INT8`` for int8) and the converted flatbuffer's operator list is
checked as well (`check_builtin_only`); anything else raises `UnsupportedOpsError`
naming the offending ops.

Keypoint model (`convert_keypoint_model`): input ``images`` float32
(B, H, W, 3), crops normalised as in ``config.data`` (x/255 - mean) / std, BGR for
ResNet configs and RGB for HRNet ones. Outputs (the readout of spec §3.2 runs in the
graph)::

    keypoints         float32 (B, J, 2)  (x, y) normalised to [0, 1] by the crop size
    keypoints_px      float32 (B, J, 2)  (x, y) in crop pixels (keypoints * (W, H))
    keypoint_scores   float32 (B, J)
    query             int32   (B, J)     the query assigned to each joint (unflipped pass)

With ``flip_test`` the mirrored crop runs too and coordinates/scores are averaged as
in `prtr_tf.models.keypoint.predict.read_crops`.

Detector (`convert_detector`): input ``images`` float32 (B, H, W, 3) at a fixed size,
RGB normalised with the detector's mean/std, no padding. Outputs ``boxes`` (B, Q, 4)
normalised (cx, cy, w, h) and ``scores`` (B, Q): the person probability (the model's
own, `model_person_scores`: DETR's softmax over all classes, no-object included;
Deformable DETR's sigmoid; its fixed input size gives it static spatial shapes).

Quantisation: "fp16" (float16 weights), "int8" (dynamic-range: int8 weights,
activations quantised on the fly; no representative data) and "int8_full"
(full-integer: int8 weights *and* activations, ranges calibrated on representative
crops, `prtr_tf.export.tflite.calibration`). TFLite's calibrator (TF 2.21) crashes
with a segmentation fault on the readout's WHILE loops, so "int8_full" converts the
network (backbone, transformer, heads; `_KeypointNetwork`) with calibration and the
readout (`_KeypointReadout`, which stays float32: an assignment is not something to
quantise) on its own, and `prtr_tf.export.tflite.flatbuffer.merge_network_and_readout`
joins the two flatbuffers into one model (the readout's ops appended to the network's
main subgraph, its loop subgraphs appended), so the file has the same single
signature, input and outputs as the other modes. The input and outputs stay float32
(QUANTIZE / DEQUANTIZE at the network's ends).

Every converted model carries its metadata (`prtr_tf.export.tflite.metadata`).
"""
import re

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2)

from prtr_tf.data import keypoint_sets
from prtr_tf.models.detector.predict import model_person_scores
from prtr_tf.models.detector.records import person_label
from prtr_tf.export.tflite.flatbuffer import list_ops, merge_network_and_readout
from prtr_tf.export.tflite.metadata import detector_metadata, embed_metadata, keypoint_metadata
from prtr_tf.models.keypoint.predict import read_crops

QUANTIZATIONS = ("fp32", "fp16", "int8", "int8_full")


_DYNAMIC_INT8 = (
    "quantization='int8' is dynamic-range int8 (int8 weights, no representative data); "
    "for full-integer int8 calibrated on representative crops use quantization="
    "'int8_full' with the representative data")


class UnsupportedOpsError(RuntimeError):
    """The model needs ops outside the TFLite builtin set (Flex / select TF / custom)."""


def check_builtin_only(flatbuffer):
    """Raises `UnsupportedOpsError` if the model holds custom or Flex ops."""
    bad = [op for op in list_ops(flatbuffer) if op.startswith("CUSTOM:")]
    if bad:
        raise UnsupportedOpsError(
            f"the converted TFLite model uses non-builtin ops {sorted(set(bad))} "
            "(Flex/select TF ops or custom ops); only TFLITE_BUILTINS are allowed")


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
        prob = model_person_scores(self.model, out, self.person_index)  # DETR: softmax
        return {
            "boxes": tf.identity(tf.cast(out["pred_boxes"], tf.float32), name="boxes"),
            "scores": tf.identity(prob, name="scores"),
        }


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
            (e.g. `prtr_tf.export.tflite.calibration.representative_crops`), N >=
            batch_size; a few hundred real crops are typical, used in batches of
            ``batch_size``.
        flip_test: average with the mirrored crop in-graph (spec §6).
        batch_size: the fixed batch size B of the input.
    """
    h, w = (int(s) for s in config.model.image_size)
    flip_pairs = keypoint_sets.flip_pairs_of(config, flip_test)  # None: the set has no pairs
    flip_test = flip_pairs is not None
    if quantization == "int8_full":
        if representative_crops is None:
            raise ValueError("quantization='int8_full' needs representative_crops (float32 "
                             f"(N, {h}, {w}, 3) normalised crops, e.g. from "
                             "prtr_tf.export.tflite.calibration.representative_crops)")
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
    module = _DetectorExport(det_model, person_label(det_config))
    flatbuffer, names = _convert(module, [batch_size, h, w, 3], quantization,
                                 representative_images)
    meta = detector_metadata(det_config, (h, w), quantization, batch_size)
    return embed_metadata(flatbuffer, meta, output_names=names)
