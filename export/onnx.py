r"""Converts signatures of an exported SavedModel (`export/saved_model.py`) to ONNX.

    python export/onnx.py --saved_model=exported/prtr_res50 \
        --output=exported/prtr_res50_crops.onnx
    python export/onnx.py --saved_model=exported/prtr_res50 --signature=serving_default \
        --output=exported/prtr_res50_full.onnx

tf2onnx (opset 17 by default) reads the frozen signature graph; the model is then
checked with ``onnx.checker`` and, unless ``--nocheck``, run once with ONNX Runtime on a
zero input of the signature's shape. ``serve_crops`` (keypoint model + readout on
normalised crops, float32 (B, H, W, 3) -> keypoints, keypoint_scores, query) converts;
ONNX inputs and outputs keep the signature's names. ``serving_default`` (the whole
two-stage pipeline, image uint8 (H, W, 3)) converts when the SavedModel was exported
with ``--onnx_compatible``; otherwise DETR's antialiased resize (``tf.image.resize(...,
antialias=True)``, the TF op ScaleAndTranslate) has no tf2onnx conversion and the
conversion stops with an error naming the op. ``serve_encoded`` (DecodeImage) does not
convert.
"""
import os
import sys

# Run as a script, this directory would come first on sys.path and this file would
# shadow the onnx package (also for tf2onnx): put the repository root there instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__":
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    sys.path.insert(0, os.path.dirname(_HERE))

from absl import app, flags  # noqa: E402

DEFAULT_OPSET = 17


def _nodes(graph):
    """Every node of an ONNX graph, loop / branch bodies included."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                yield from _nodes(sub)


def convert(saved_model, output, signature="serve_crops", opset=DEFAULT_OPSET, tag="serve"):
    """SavedModel signature -> ONNX file at ``output``; returns the ModelProto."""
    import onnx
    from tf2onnx import convert as tf2onnx_convert
    from tf2onnx import tf_loader

    if not os.path.isfile(os.path.join(saved_model, "saved_model.pb")):
        raise FileNotFoundError(f"{saved_model!r} is not a SavedModel directory "
                                "(no saved_model.pb)")
    graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
        saved_model, None, None, tag, [signature], None, False,
        return_initialized_tables=True, return_tensors_to_rename=True)
    model, _ = tf2onnx_convert.from_graph_def(
        graph_def, name=signature, input_names=inputs, output_names=outputs, opset=opset,
        tensors_to_rename=renames, output_path=output)
    try:
        onnx.checker.check_model(output)
    except onnx.checker.ValidationError as e:
        # tf2onnx leaves TF ops it cannot convert in the graph under their TF names.
        from onnx import defs
        unknown = sorted({n.op_type for n in _nodes(model.graph)
                          if n.domain in ("", "ai.onnx") and not defs.has(n.op_type)})
        raise NotImplementedError(
            f"tf2onnx could not convert signature {signature!r} of {saved_model!r}: "
            f"TensorFlow ops without an ONNX equivalent: {', '.join(unknown) or '?'} "
            f"(ONNX checker: {str(e).splitlines()[0]})") from e
    return model


def run(onnx_path, feeds):
    """Runs the ONNX model with ONNX Runtime (CPU): {input name: array} -> {output: array}."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def zero_feeds(onnx_path, dynamic=1):
    """A zero feed per model input (unknown dimensions set to ``dynamic``)."""
    import numpy as np
    import onnxruntime as ort

    types = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8,
             "tensor(string)": np.str_}
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    return {i.name: np.zeros([d if isinstance(d, int) else dynamic for d in i.shape],
                             types[i.type]) for i in session.get_inputs()}


def define_flags():
    """Command-line flags; defined only when run as a script (tests import this file)."""
    return dict(
        saved_model=flags.DEFINE_string("saved_model", None, "SavedModel directory to convert."),
        output=flags.DEFINE_string("output", None, "ONNX file to write."),
        signature=flags.DEFINE_string("signature", "serve_crops", "Signature to convert."),
        opset=flags.DEFINE_integer("opset", DEFAULT_OPSET, "ONNX opset."),
        check=flags.DEFINE_bool("check", True, "Run the model once with ONNX Runtime."),
    )


def main(argv, f):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    saved_model, output, signature = f["saved_model"].value, f["output"].value, \
        f["signature"].value
    if not saved_model or not output:
        raise app.UsageError("--saved_model and --output are required")
    try:
        convert(saved_model, output, signature, f["opset"].value)
    except (FileNotFoundError, NotImplementedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {output} (signature {signature}, opset {f['opset'].value})")
    if f["check"].value:
        dynamic = 64 if signature == "serving_default" else 1
        out = run(output, zero_feeds(output, dynamic))
        print("onnxruntime: " + ", ".join(f"{k} {v.shape}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    _flags = define_flags()
    app.run(lambda argv: main(argv, _flags))
