"""Inference precision pinned exactly (issue 27): under bfloat16 a Dense layer really
rounds to bfloat16's 8 significant bits (a loose tolerance would hide float32
compute), the policy is restored, and the slow-bfloat16 note's reasons."""
import keras
import numpy as np
import pytest

from prtr_tf.nn import precision


def _dense_of(x):
    layer = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
    return float(np.asarray(layer(np.array([[x]], np.float32)), np.float32)[0, 0])


def test_bfloat16_rounds_and_float32_does_not():
    # 1 + 2**-10 needs 11 significant bits: bfloat16 (8) rounds it to 1.0 exactly,
    # float32 keeps it. 1 + 2**-7 is representable in both.
    x = 1.0 + 2.0 ** -10
    with precision.dtype_policy("bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
        assert _dense_of(x) == 1.0
        assert _dense_of(1.0 + 2.0 ** -7) == 1.0 + 2.0 ** -7
    with precision.dtype_policy("float32"):
        assert _dense_of(x) == x
    with precision.dtype_policy(None):
        assert keras.config.dtype_policy().name == "float32"


def test_policy_is_restored_even_after_an_error():
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError):
        with precision.dtype_policy("bfloat16"):
            raise RuntimeError
    assert keras.config.dtype_policy().name == before
    with pytest.raises(ValueError, match="precision='float16': expected one of float32, "
                                         "bfloat16"):
        with precision.dtype_policy("float16"):
            pass
    assert precision.check(None) == "float32"
    with pytest.raises(ValueError, match="^p='x'"):
        precision.check("x", flag="p")


def test_bfloat16_note_reasons(tmp_path, monkeypatch):
    assert precision.bfloat16_note({"avx512_bf16"}, True) is None
    assert precision.bfloat16_note({"amx_bf16", "sse"}, True) is None
    note = precision.bfloat16_note({"avx2"}, True)
    assert "neither AVX512-BF16 nor AMX-BF16" in note and note.startswith("note: bfloat16")
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert "oneDNN kernels are off (TF_ENABLE_ONEDNN_OPTS=0)" in \
        precision.bfloat16_note({"avx512_bf16"}, False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 sse\nbugs\t: x\n")
    assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "avx512_bf16", "sse"}
    assert precision.cpu_flags(str(tmp_path / "none")) == set()
