"""Running an exported .tflite with ai-edge-litert's interpreter (TF's bundled
``tf.lite.Interpreter`` is deprecated).

XNNPACK (the interpreter's default delegate) is on by default: chosen by held-out
keypoint AP, not by deviations on random inputs (`tools/measure_tflite.py`,
README "TFLite chosen by held-out AP"): fp32 with XNNPACK scored exactly the Keras
model's AP and ran 3.1x faster than the builtin kernels. ``use_xnnpack=False``: the
builtin (reference) kernels only.
"""
import numpy as np

from prtr_tf.export.tflite.flatbuffer import load_bytes


def make_interpreter(path_or_bytes, use_xnnpack=True, num_threads=None):
    """An allocated ai-edge-litert Interpreter; with ``use_xnnpack`` the XNNPACK
    delegate takes what it can, else the builtin kernels run everything."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    resolver = (OpResolverType.AUTO if use_xnnpack
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp = Interpreter(model_content=load_bytes(path_or_bytes),
                         experimental_op_resolver_type=resolver, num_threads=num_threads)
    interp.allocate_tensors()
    return interp


def run_tflite(path_or_bytes, inputs, use_xnnpack=True, num_threads=None):
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
