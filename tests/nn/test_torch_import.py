"""Official state_dict import: names, layouts, errors (convert CLI: tests/cli/test_convert.py)."""
import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.checkpoints.torch_import import CheckpointMismatchError, load_state_dict, read_state_dict
from prtr_tf.checkpoints.torch_import import official_shapes
from prtr_tf.config import load_config
from prtr_tf.checkpoints.convert import convert
from prtr_tf.models.keypoint.model import build_model


def _tiny():
    return load_config("tiny")


def _random_state_dict(model, seed=0):
    """A state_dict in the official layout, from the model's own list of names."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in official_shapes(model).items():
        out[name] = rng.normal(size=shape).astype(np.float32)
        if name.endswith("running_var"):
            out[name] = np.abs(out[name]) + 0.5
    return out


def test_roundtrip_through_npz_and_keras_weights(tmp_path):
    config = _tiny()
    model = build_model(config.model)
    state = _random_state_dict(model)
    # Layout checks on known tensors: a conv (OIHW -> HWIO) and a linear (out,in -> in,out).
    load_state_dict(model, state)
    conv = state["backbone.0.body.conv1.weight"]
    np.testing.assert_array_equal(model.backbone.conv1.kernel.numpy(), conv.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.class_embed.kernel.numpy(), state["class_embed.weight"].T)
    q = model.transformer.encoder_layers[0].self_attn._query_dense.kernel.numpy()
    wq = state["transformer.encoder.layers.0.self_attn.in_proj_weight"][:64]
    np.testing.assert_array_equal(q.reshape(64, 64), wq.T)
    np.savez(tmp_path / "official.npz", **state)
    out = tmp_path / "tiny.weights.h5"
    converted = convert(config, str(tmp_path / "official.npz"), str(out))
    fresh = build_model(config.model)
    fresh.load_weights(str(out))
    x = tf.random.normal((1, *config.model.image_size, 3))
    np.testing.assert_allclose(fresh(x)["pred_logits"], converted(x)["pred_logits"], atol=1e-6)
    with pytest.raises(FileExistsError):
        convert(config, str(tmp_path / "official.npz"), str(out))


def test_attention_import_matches_torch_multihead_attention():
    """Keras MHA with imported in_proj/out_proj equals torch's formula, computed in NumPy."""
    config = _tiny()
    model = build_model(config.model)
    state = _random_state_dict(model, seed=1)
    load_state_dict(model, state)
    layer = model.transformer.encoder_layers[0].self_attn
    p = "transformer.encoder.layers.0.self_attn"
    w, b = state[f"{p}.in_proj_weight"], state[f"{p}.in_proj_bias"]
    wo, bo = state[f"{p}.out_proj.weight"], state[f"{p}.out_proj.bias"]
    d, heads = 64, 4
    x = np.random.default_rng(2).normal(size=(1, 5, d)).astype(np.float32)
    q, k, v = (x @ w[i * d:(i + 1) * d].T + b[i * d:(i + 1) * d] for i in range(3))
    split = lambda t: t.reshape(1, 5, heads, d // heads).transpose(0, 2, 1, 3)  # noqa: E731
    q, k, v = split(q) / np.sqrt(d // heads), split(k), split(v)
    a = q @ k.transpose(0, 1, 3, 2)
    a = np.exp(a - a.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    ref = (a @ v).transpose(0, 2, 1, 3).reshape(1, 5, d) @ wo.T + bo
    np.testing.assert_allclose(layer(x, x, key=x).numpy(), ref, rtol=1e-5, atol=1e-3)


def test_mismatches_are_listed_by_name():
    model = build_model(_tiny().model)
    state = _random_state_dict(model)
    state.pop("class_embed.bias")
    state["extra.weight"] = np.zeros(3, np.float32)
    state["input_proj.bias"] = np.zeros(7, np.float32)
    with pytest.raises(CheckpointMismatchError) as e:
        load_state_dict(model, state)
    msg = str(e.value)
    assert "unknown" in msg and "extra.weight" in msg
    assert "missing" in msg and "class_embed.bias" in msg
    assert "mis-shaped" in msg and "input_proj.bias: checkpoint (7,), model expects (64,)" in msg


def test_dataparallel_prefix_and_optional_buffers_are_accepted():
    model = build_model(_tiny().model)
    state = _random_state_dict(model)
    state["backbone.0.body.bn1.num_batches_tracked"] = np.zeros((), np.int64)
    prefixed = {f"module.{k}": v for k, v in state.items()}
    assert load_state_dict(model, prefixed) == len(state) - 1


def test_wrong_joint_count_is_a_clear_error():
    config = _tiny()
    model = build_model(config.model)
    state = _random_state_dict(model)
    config.model.num_joints = 16
    with pytest.raises(CheckpointMismatchError, match="class_embed.weight"):
        load_state_dict(build_model(config.model), state)


def test_read_state_dict_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_state_dict(str(tmp_path / "nope.npz"))
    bad = tmp_path / "weights.bin.gz"
    bad.write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported checkpoint format"):
        read_state_dict(str(bad))
