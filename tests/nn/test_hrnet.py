"""HRNet-C backbone: official names/shapes/counts, output shapes, fusion numerics."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.nn.hrnet import HRNet, HighResolutionModule, upsample_nearest
from prtr_tf.nn.layers import BN_EPS, TorchConv2D, count_parameters

PREFIX = "backbone.0.body."


@pytest.fixture(scope="module")
def w32():
    model = HRNet(32)
    model(np.zeros((1, 64, 64, 3), np.float32))
    return model


def torch_tensors(model):
    """{official tensor name: torch shape} implied by the layers' torch_name tags."""
    out = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        name = getattr(layer, "torch_name", None)
        if name is None:
            continue
        if isinstance(layer, TorchConv2D):
            out[f"{name}.weight"] = tuple(np.transpose(layer.kernel.numpy(), (3, 2, 0, 1)).shape)
            if layer.use_bias:
                out[f"{name}.bias"] = tuple(layer.bias.shape)
        else:
            assert isinstance(layer, keras.layers.BatchNormalization), name
            for suffix in ("weight", "bias", "running_mean", "running_var"):
                out[f"{name}.{suffix}"] = tuple(layer.gamma.shape)
            out[f"{name}.num_batches_tracked"] = ()
    return out


def test_w32_parameter_count(w32):
    assert count_parameters(w32) == 39_183_680  # spec §9
    assert w32.out_channels == w32.num_channels == 2048


def test_w32_names_and_shapes_match_official_state_dict(w32, golden_dir):
    manifest = json.loads((golden_dir / "prtr_hrnet_w32_384x288.json").read_text())
    official = {e["name"]: tuple(e["shape"]) for e in manifest["tensors"]
                if e["name"].startswith(PREFIX)}
    ours = torch_tensors(w32)
    assert sorted(set(ours) - set(official)) == []
    assert sorted(set(official) - set(ours)) == []
    assert {n: s for n, s in ours.items() if s != official[n]} == {}
    # Ordinary trainable BN, torch momentum 0.1 / eps 1e-5 (spec §1.1); 325 BN layers.
    bns = [l for l in w32._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 325
    assert all(l.trainable and l.momentum == 0.9 and l.epsilon == BN_EPS for l in bns)


def test_w32_output_shape_384x288(w32):
    assert tuple(w32(np.zeros((2, 384, 288, 3), np.float32)).shape) == (2, 12, 9, 2048)


def test_w48_shape_and_parameter_count():
    model = HRNet(48)
    assert tuple(model(np.zeros((1, 64, 96, 3), np.float32)).shape) == (1, 2, 3, 2048)
    # 75,420,864 + the ImageNet fc (2048*1000 + 1000) = 77.47M, the published W48-C size.
    assert count_parameters(model) == 75_420_864
    assert any(getattr(l, "torch_name", "") == PREFIX + "stage4.0.branches.3.0.conv1"
               and l.filters == 384 for l in model._flatten_layers())


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_upsample_equals_torch_nearest(factor):
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype(np.float32)
    expected = np.repeat(np.repeat(x, factor, axis=1), factor, axis=2)
    np.testing.assert_array_equal(upsample_nearest(tf.constant(x), factor).numpy(), expected)


def np_conv(x, layer):
    """NHWC conv with torch symmetric padding, from a TorchConv2D's weights."""
    k = layer.kernel.numpy()
    s, p = layer.strides[0], layer.torch_padding
    x = np.pad(x, [(0, 0), (p, p), (p, p), (0, 0)])
    ho, wo = (x.shape[1] - k.shape[0]) // s + 1, (x.shape[2] - k.shape[1]) // s + 1
    out = sum(np.einsum("bhwc,co->bhwo", x[:, i:i + s * ho:s, j:j + s * wo:s], k[i, j])
              for i in range(k.shape[0]) for j in range(k.shape[1]))
    return out + (layer.bias.numpy() if layer.use_bias else 0)


def np_bn(x, bn):
    return ((x - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + BN_EPS)
            * bn.gamma.numpy() + bn.beta.numpy())


def test_fusion_matches_numpy():
    """Multi-resolution fusion of a 3-branch module vs a NumPy re-computation."""
    rng = np.random.default_rng(1)
    channels, sizes = (2, 4, 8), (8, 4, 2)
    module = HighResolutionModule(channels, "m")
    xs = [rng.normal(size=(2, s, s, c)).astype(np.float32) for s, c in zip(sizes, channels)]
    module(xs)
    for layer in module._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):  # non-trivial statistics
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, c))
            layer.beta.assign(rng.normal(size=c))
            layer.moving_mean.assign(rng.normal(size=c))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c))
    got = [y.numpy() for y in module(xs, training=False)]

    branch = []
    for blocks, x in zip(module.branches, xs):
        for block in blocks:
            x = block(x, training=False)
        branch.append(x.numpy().astype(np.float64))
    for i in range(3):
        y = np.zeros_like(branch[i])
        for j in range(3):
            chain, x = module.fuse_layers[i][j], branch[j]
            for k, cb in enumerate(chain):
                x = np_bn(np_conv(x, cb.conv), cb.bn)
                if j < i and k < len(chain) - 1:  # ReLU on every down link but the last
                    x = np.maximum(x, 0)
            if j > i:
                x = np.repeat(np.repeat(x, 2 ** (j - i), axis=1), 2 ** (j - i), axis=2)
            y = y + x
        np.testing.assert_allclose(got[i], np.maximum(y, 0), rtol=1e-4, atol=1e-4)
