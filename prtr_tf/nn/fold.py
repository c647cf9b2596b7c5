"""Frozen BatchNorm folded into the convolution before it, for inference and export.

A `FrozenBatchNorm` after a convolution is y = conv(x, K) * s + b with s, b fixed
(s = gamma / sqrt(var + eps), b = beta - mean * s), which equals conv(x, K * s) + b.
`fold_frozen_batchnorm` rewrites the weights that way in place: the kernel becomes
K * s and the norm a bias (gamma 1, mean 0, var 1 - eps, beta b; ``folded``: its call
is a BiasAdd): one elementwise op instead of two, which TensorFlow's graph optimiser
can fuse with the convolution, and which ONNX Runtime fuses into its Conv (measured:
18-42% faster ONNX exports, benchmarks/inference.md).

The folded weights are still the same network, also read as unfolded (the norm is an
identity scale), so a folded model saves and loads like any other. Only for a model
that is no longer trained: in training the convolutions after a frozen norm train
(layers 2-4), and a kernel trained as K * s moves differently from K.
"""
import numpy as np

from prtr_tf.nn.layers import FrozenBatchNorm, TorchConv2D


def conv_norm_pairs(model):
    """Every (convolution, FrozenBatchNorm) pair that a layer of ``model`` declares
    (``frozen_pairs()``: the norm is applied to the convolution's output only)."""
    pairs = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for conv, norm in getattr(layer, "frozen_pairs", lambda: ())():
            if isinstance(conv, TorchConv2D) and isinstance(norm, FrozenBatchNorm):
                pairs.append((conv, norm))
    return pairs


def fold_frozen_batchnorm(model):
    """Folds every frozen BatchNorm of ``model`` (built) into its convolution's kernel;
    returns the number folded (0 for a model without frozen norms, e.g. HRNet, or
    already folded: folding twice changes nothing)."""
    count = 0
    for conv, norm in conv_norm_pairs(model):
        if norm.folded:
            continue
        if not conv.built or not norm.built:
            raise ValueError(f"fold_frozen_batchnorm: {conv.name} / {norm.name} are not "
                             "built; call the model once before folding")
        gamma, beta, mean, var = (np.asarray(v.numpy(), np.float64) for v in (
            norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance))
        scale = gamma / np.sqrt(var + norm.epsilon)
        kernel = np.asarray(conv.kernel.numpy(), np.float64) * scale  # HWIO: per output
        conv.kernel.assign(kernel.astype(conv.kernel.dtype))
        norm.beta.assign((beta - mean * scale).astype(norm.beta.dtype))
        norm.gamma.assign(np.ones_like(gamma, dtype=norm.gamma.dtype))
        norm.moving_mean.assign(np.zeros_like(mean, dtype=norm.moving_mean.dtype))
        norm.moving_variance.assign(np.full_like(var, 1.0 - norm.epsilon,
                                                 dtype=norm.moving_variance.dtype))
        norm.folded = True
        count += 1
    return count
