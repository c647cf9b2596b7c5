"""ONNX conversion of the signatures of an exported SavedModel
(`prtr_tf.serving.saved_model`), and running the result with ONNX Runtime.

`convert`: tf2onnx (opset `DEFAULT_OPSET` by default) reads the frozen signature
graph; the model is then checked with ``onnx.checker``. The file is written under a
temporary name and moved into place only when it converted and checked
(`prtr_tf.files.atomic`): a failed conversion leaves no ``.onnx`` behind.
``serve_crops`` (keypoint model + readout on normalised crops) converts;
``serving_default`` (the whole pipeline on a uint8 image) converts when the SavedModel
was exported with ``--onnx_compatible`` (matrix-product resize and crops), otherwise
tf2onnx has no conversion for the antialiased resize (the TF op ScaleAndTranslate) and
`OnnxConversionError` names the op and says to re-export; ``serve_encoded``
(DecodeImage) does not convert.

`run` and `zero_feeds` run a converted model (CPU).
"""
import os

from prtr_tf.export import DEFAULT_OPSET
from prtr_tf.files.atomic import atomic_output
from prtr_tf.serving import metadata
from prtr_tf.serving.module import IMAGE_INPUT, IMAGE_SHAPE



class OnnxConversionError(ValueError):
    """tf2onnx could not convert a signature (TF ops without an ONNX equivalent)."""


def nodes(graph):
    """Every node of an ONNX graph, loop / branch bodies included."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                yield from nodes(sub)


def _unconverted_ops(model):
    """The op types tf2onnx left in the graph under their TF names."""
    from onnx import defs
    return sorted({n.op_type for n in nodes(model.graph)
                   if n.domain in ("", "ai.onnx") and not defs.has(n.op_type)})


def _hint(signature):
    if signature != "serving_default":
        return ""
    return ("; serving_default converts only from a SavedModel exported with "
            "--onnx_compatible: re-export it with `prtr-export saved_model ... "
            "--onnx_compatible` (export/to_saved_model.py)")


def convert(saved_model, output, signature="serve_crops", opset=DEFAULT_OPSET, tag="serve"):
    """SavedModel signature -> ONNX file at ``output`` (written atomically); returns
    the ModelProto. FileNotFoundError: not a SavedModel; `OnnxConversionError`: the
    signature does not convert (nothing is written then)."""
    import onnx
    from tf2onnx import convert as tf2onnx_convert
    from tf2onnx import tf_loader

    if not os.path.isfile(os.path.join(saved_model, "saved_model.pb")):
        raise FileNotFoundError(f"{saved_model!r} is not a SavedModel directory "
                                "(no saved_model.pb)")

    graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
        saved_model, None, None, tag, [signature], None, False,
        return_initialized_tables=True, return_tensors_to_rename=True)
    # The image input is declared of unknown rank (so that the graph checks it), which
    # tf2onnx would take for a scalar: it gets its (H, W, 3) shape here.
    shapes = {name: list(IMAGE_SHAPE) for name in inputs
              if renames.get(name, name).split(":")[0] == IMAGE_INPUT}
    with atomic_output(output) as tmp:
        model, _ = tf2onnx_convert.from_graph_def(
            graph_def, name=signature, input_names=inputs, output_names=outputs,
            opset=opset, tensors_to_rename=renames, output_path=tmp,
            shape_override=shapes or None)
        _copy_metadata(saved_model, tmp)
        try:
            onnx.checker.check_model(tmp)
        except onnx.checker.ValidationError as e:
            raise OnnxConversionError(
                f"tf2onnx could not convert signature {signature!r} of {saved_model!r}: "
                "TensorFlow ops without an ONNX equivalent: "
                f"{', '.join(_unconverted_ops(model)) or '?'} (ONNX checker: "
                f"{str(e).splitlines()[0]}){_hint(signature)}; {output!r} was not "
                "written") from e
    return model


def _copy_metadata(saved_model, onnx_path):
    """The SavedModel's keypoint-set metadata into the ONNX file's ``metadata_props``."""
    import json

    import onnx

    meta = metadata.read(saved_model)
    if meta is None:
        return
    model = onnx.load(onnx_path)
    prop = model.metadata_props.add()
    prop.key, prop.value = metadata.ONNX_KEY, json.dumps(meta)
    onnx.save(model, onnx_path)


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
