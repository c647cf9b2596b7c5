"""Frozen BatchNorm folded into the convolutions (prtr_tf.nn.fold): the same outputs,
the norms gone from the graph, a folded model saves and loads like any other."""
import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.nn.fold import conv_norm_pairs, fold_frozen_batchnorm
from prtr_tf.nn.layers import FrozenBatchNorm
from prtr_tf.nn.resnet import ResNet


def frozen_tiny_resnet(seed=0):
    """resnet_tiny with frozen BN and statistics far from the identity (with the
    initial ones, gamma 1 / beta 0 / mean 0 / var 1, folding would change nothing)."""
    tf.keras.utils.set_random_seed(seed)
    net = ResNet("resnet_tiny", frozen=True)
    net(tf.zeros((1, 64, 48, 3)), training=False)
    rng = np.random.default_rng(seed)
    for layer in net._flatten_layers():
        if isinstance(layer, FrozenBatchNorm):
            c = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.3, 2.0, c))
            layer.beta.assign(rng.normal(0, 0.5, c))
            layer.moving_mean.assign(rng.normal(0, 0.5, c))
            layer.moving_variance.assign(rng.uniform(0.2, 3.0, c))
    return net


def test_folding_keeps_the_outputs_and_removes_the_norm_ops():
    net = frozen_tiny_resnet()
    x = tf.constant(np.random.default_rng(1).standard_normal((2, 64, 48, 3)), tf.float32)
    before = net(x, training=False, return_levels=True)
    norms = [n for _, n in conv_norm_pairs(net)]
    # Every frozen norm of the network is declared after its convolution: stem + 3 per
    # block + the 3 shortcuts.
    assert len(norms) == len([layer for layer in net._flatten_layers()
                              if isinstance(layer, FrozenBatchNorm)]) == 1 + 3 * 3 + 3
    assert fold_frozen_batchnorm(net) == len(norms)
    after = net(x, training=False, return_levels=True)
    for level in before:
        ref = before[level].numpy()
        err = np.abs(after[level].numpy() - ref).max() / np.abs(ref).max()
        assert err < 1e-5, (level, err)
    # The traced graph has BiasAdds and no multiply left of the norms.
    graph = tf.function(lambda t: net(t, training=False)).get_concrete_function(
        tf.TensorSpec((1, 64, 48, 3))).graph
    ops = [op.type for op in graph.get_operations()]
    assert ops.count("BiasAdd") == len(norms) and "Rsqrt" not in ops and "Mul" not in ops
    # Folding again changes nothing (every norm says it is folded).
    weights = [w.numpy() for w in net.weights]
    assert fold_frozen_batchnorm(net) == 0
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights, net.weights))


def test_folded_weights_in_an_unfolded_model():
    """The folded weights are the same network read without the flag (identity norms),
    so weights saved from a folded model are an ordinary checkpoint."""
    net = frozen_tiny_resnet()
    x = tf.constant(np.random.default_rng(2).standard_normal((1, 64, 48, 3)), tf.float32)
    ref = net(x, training=False).numpy()
    fold_frozen_batchnorm(net)
    plain = frozen_tiny_resnet(seed=5)
    plain.set_weights(net.get_weights())
    assert not any(n.folded for _, n in conv_norm_pairs(plain))
    got = plain(x, training=False).numpy()
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-5


def test_trainable_batchnorm_and_unbuilt_models():
    # resnet_tiny's default is ordinary (trainable) BN: nothing to fold.
    net = ResNet("resnet_tiny")
    net(tf.zeros((1, 32, 32, 3)), training=False)
    assert fold_frozen_batchnorm(net) == 0
    with pytest.raises(ValueError, match="not built"):
        fold_frozen_batchnorm(ResNet("resnet_tiny", frozen=True))
