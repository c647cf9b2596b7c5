"""Inference precision: float32, or bfloat16 compute for CPUs that have it.

``bfloat16`` builds a model under Keras' ``mixed_bfloat16`` policy: variables stay
float32 (the same weights files), convolutions, matmuls and the Transformer compute in
bfloat16, and the models cast their outputs back to float32, so the readout, the
box post-processing and everything after them run as before. With oneDNN on a CPU with
AVX512-BF16 or AMX, TensorFlow runs those ops in bfloat16 hardware (measured on an
AVX512-BF16 EPYC: the R50 384x288 keypoint model 1.6-1.8x faster, held-out AP within
rounding; benchmarks/inference.md); elsewhere they are emulated and *slower* than
float32 (`bfloat16_note` says so). An exported SavedModel keeps the precision it was
built in.
"""
import contextlib
import os

PRECISIONS = ("float32", "bfloat16")
_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def check(precision, flag="precision"):
    """``precision`` ('float32' when None) after checking it is one of `PRECISIONS`."""
    precision = precision or "float32"
    if precision not in PRECISIONS:
        raise ValueError(f"{flag}={precision!r}: expected one of {', '.join(PRECISIONS)}")
    return precision


@contextlib.contextmanager
def dtype_policy(precision):
    """Layers created inside compute in ``precision`` (the global Keras policy is set,
    then restored)."""
    import keras
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_POLICIES[check(precision)])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def cpu_flags(path="/proc/cpuinfo"):
    """The CPU feature flags (an empty set where ``path`` cannot be read)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def onednn_enabled():
    """Whether TensorFlow runs its CPU kernels through oneDNN in this process."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return False


def bfloat16_note(flags=None, onednn=None):
    """None where bfloat16 inference should be fast here (oneDNN on, and AVX512-BF16 or
    AMX-BF16); else one line that says why it will likely be slower than float32."""
    flags = cpu_flags() if flags is None else flags
    onednn = onednn_enabled() if onednn is None else onednn
    hardware = flags & {"avx512_bf16", "amx_bf16"}
    if hardware and onednn:
        return None
    if not hardware:
        why = "this CPU reports neither AVX512-BF16 nor AMX-BF16"
    else:
        why = ("TensorFlow's oneDNN kernels are off (TF_ENABLE_ONEDNN_OPTS="
               f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')})")
    return (f"note: bfloat16 inference: {why}, so bfloat16 is emulated and likely slower "
            "than float32 (measured without oneDNN: 1.4x slower)")
