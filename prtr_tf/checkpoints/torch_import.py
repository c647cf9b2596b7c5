"""Import of official PyTorch state_dicts (PRTR two-stage, DETR) into Keras models,
and of the ImageNet classification checkpoints the official backbones start from
(`load_imagenet_backbone`).

Every Keras layer that holds official weights carries ``torch_name``, its module
path in the official ``state_dict`` (see `prtr_tf.nn.layers.named`). This
module derives, from the model alone, the full list of official tensor names with
the Keras variables they fill and the layout change each needs (OIHW -> HWIO for
convs, transposes for linears, split/reshape for attention), then checks the
state_dict against it: unknown, missing or mis-shaped tensors are one error that
lists them all. Nothing is skipped silently: the only entries dropped by name are
the ``num_batches_tracked`` buffers (no values) and, for an ImageNet checkpoint, its
classification head, which is reported.
"""
import os
from typing import NamedTuple

import keras
import numpy as np

from prtr_tf.checkpoints.torch_file import read_state_dict  # noqa: F401  (PyTorch-free)

from prtr_tf.nn.layers import FrozenBatchNorm, TorchConv2D

# Buffers that torch keeps for BatchNorm but that carry nothing Keras needs.
OPTIONAL_SUFFIXES = (".num_batches_tracked",)


class CheckpointMismatchError(ValueError):
    """The state_dict and the model disagree; the message lists every difference."""


def _shape(variable):
    return tuple(variable.shape)


def _conv(layer, p):
    h, w, cin, cout = _shape(layer.kernel)
    out = {f"{p}.weight": ((cout, cin, h, w), [(layer.kernel, lambda t: t.transpose(2, 3, 1, 0))])}
    if layer.use_bias:
        out[f"{p}.bias"] = ((cout,), [(layer.bias, None)])
    return out


def _dense(layer, p):
    out = {f"{p}.weight": (_shape(layer.kernel)[::-1], [(layer.kernel, lambda t: t.T)])}
    if layer.use_bias:
        out[f"{p}.bias"] = (_shape(layer.bias), [(layer.bias, None)])
    return out


def _norm(layer, p):
    c = _shape(layer.gamma)
    out = {f"{p}.weight": (c, [(layer.gamma, None)]), f"{p}.bias": (c, [(layer.beta, None)])}
    if hasattr(layer, "moving_mean"):
        out[f"{p}.running_mean"] = (c, [(layer.moving_mean, None)])
        out[f"{p}.running_var"] = (c, [(layer.moving_variance, None)])
    return out


def attention_mapping(layer, p):
    """torch packed in_proj (3d, d) -> Keras query/key/value EinsumDense (d, h, d/h)."""
    denses = (layer._query_dense, layer._key_dense, layer._value_dense)
    d, heads, head_dim = _shape(layer._query_dense.kernel)

    def part(i, bias):
        if bias:
            return lambda t: t[i * d:(i + 1) * d].reshape(heads, head_dim)
        return lambda t: t[i * d:(i + 1) * d].T.reshape(d, heads, head_dim)

    out_kernel = layer._output_dense.kernel
    d_out = _shape(out_kernel)[-1]
    return {
        f"{p}.in_proj_weight": ((3 * d, d), [(dn.kernel, part(i, False))
                                             for i, dn in enumerate(denses)]),
        f"{p}.in_proj_bias": ((3 * d,), [(dn.bias, part(i, True))
                                         for i, dn in enumerate(denses)]),
        f"{p}.out_proj.weight": ((d_out, heads * head_dim),
                                 [(out_kernel, lambda t: t.T.reshape(heads, head_dim, -1))]),
        f"{p}.out_proj.bias": ((d_out,), [(layer._output_dense.bias, None)]),
    }


def _embedding(layer, p):
    return {f"{p}.weight": (_shape(layer.embeddings), [(layer.embeddings, None)])}


_CONVERTERS = (
    (keras.layers.MultiHeadAttention, attention_mapping),
    ((TorchConv2D, keras.layers.Conv2D), _conv),
    (keras.layers.Dense, _dense),
    ((keras.layers.BatchNormalization, FrozenBatchNorm, keras.layers.LayerNormalization), _norm),
    (keras.layers.Embedding, _embedding),
)


def torch_mapping(model):
    """{official name: (official shape, [(keras variable, numpy transform or None), ...])}."""
    mapping = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        name = getattr(layer, "torch_name", None)
        if name is None:
            continue
        for types, fn in _CONVERTERS:
            if isinstance(layer, types):
                for key, targets in fn(layer, name).items():
                    if key in mapping:
                        raise RuntimeError(f"two layers claim official tensor {key!r}")
                    mapping[key] = targets
                break
        else:
            raise TypeError(f"no converter for {type(layer).__name__} ({name})")
    covered = {id(v) for _, targets in mapping.values() for v, _ in targets}
    stray = [v.path for v in model.weights if id(v) not in covered]
    if stray:
        raise RuntimeError(f"model weights with no official counterpart: {stray[:10]}")
    return mapping


def official_shapes(model):
    """{official tensor name: shape} that a checkpoint for ``model`` must hold."""
    return {name: shape for name, (shape, _) in torch_mapping(model).items()}


def strip_prefix(state_dict, prefix="module."):
    """Removes torch DataParallel's ``module.`` prefix when every key has it."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def load_state_dict(model, state_dict, rename=None):
    """Copies an official state_dict into ``model``; raises if anything disagrees.

    Args:
      model: a built Keras model whose layers carry ``torch_name``.
      state_dict: {name: array}; torch tensors are converted with ``.numpy()``.
      rename: optional function mapping a state_dict key to the model's naming
        (or to None to drop it on purpose, e.g. DETR's 91-class head rows).
    Returns:
      The number of official tensors copied.
    """
    state_dict = strip_prefix(dict(state_dict))
    if rename is not None:
        state_dict = {rename(k): v for k, v in state_dict.items()}
        state_dict.pop(None, None)
    loaded = copy_checked(
        torch_mapping(model), state_dict, "the checkpoint does not match the model "
        "configuration", "Check that --config names the configuration the checkpoint was "
        "trained with (backbone, number of joints, transformer sizes).")
    return len(loaded)


def copy_checked(mapping, state_dict, mismatch, advice):
    """Copies ``state_dict`` into the variables of ``mapping`` (`torch_mapping`) after
    checking it: unknown, missing or mis-shaped tensors raise one
    `CheckpointMismatchError` that lists them all (``mismatch``: what the message
    says first, ``advice``: what it says last) and nothing is assigned. Entries
    ending in `OPTIONAL_SUFFIXES` are ignored. Returns the names copied."""
    unknown = sorted(k for k in state_dict
                     if k not in mapping and not k.endswith(OPTIONAL_SUFFIXES))
    missing = sorted(k for k in mapping if k not in state_dict)
    assignments, misshaped = [], []
    for key, (shape, targets) in mapping.items():
        if key not in state_dict:
            continue
        value = state_dict[key]
        value = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if tuple(value.shape) != shape:
            misshaped.append(f"{key}: checkpoint {tuple(value.shape)}, model expects {shape}")
            continue
        for variable, transform in targets:
            assignments.append((variable, transform(value) if transform else value))
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} unknown tensor(s) (not in this model): "
                        + ", ".join(unknown))
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) (the model needs them): "
                        + ", ".join(missing))
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped tensor(s): " + "; ".join(misshaped))
    if problems:
        raise CheckpointMismatchError(f"{mismatch}. " + " | ".join(problems) + f". {advice}")
    for variable, array in assignments:
        variable.assign(array.astype(variable.dtype))
    return [key for key in mapping if key in state_dict]


# ---------------------------------------------------------------- ImageNet backbones
#
# The official training starts every backbone from an ImageNet classification
# checkpoint: torchvision's resnet50/101/152 state_dicts, or HRNet-Image-
# Classification's hrnetv2_w32/w48_imagenet_pretrained.pth (cls_hrnet.py). Their names
# are the backbone's official names without the model's prefix (``backbone.0.body.``):
# ``conv1.weight``, ``layer1.0.bn1.running_mean``, ``stage2.0.fuse_layers.0.1.0.weight``.

# The classification head, skipped by name: torchvision ResNet's ``fc``, HRNet's
# ``classifier``. (HRNet's incre_modules, downsamp_modules and final_layer belong to
# the backbone: they make its 2048-channel output.)
HEAD_PREFIXES = ("fc.", "classifier.")


class BackboneImport(NamedTuple):
    """What `load_imagenet_backbone` did: the ImageNet names it copied, the head
    entries it skipped, the ``num_batches_tracked`` buffers (no values) it ignored."""
    loaded: list
    head: list
    ignored: list

    def summary(self):
        head = ", ".join(self.head) if self.head else "none"
        return (f"loaded {len(self.loaded)} tensors into the backbone; skipped the "
                f"classification head ({len(self.head)}: {head}) and "
                f"{len(self.ignored)} num_batches_tracked buffer(s)")


def backbone_mapping(backbone):
    """`torch_mapping` of a built backbone layer (`prtr_tf.nn.backbones`) in the
    ImageNet naming: its official names without ``backbone.torch_prefix``."""
    prefix = backbone.torch_prefix + "."
    mapping = torch_mapping(backbone)
    outside = [k for k in mapping if not k.startswith(prefix)]
    if outside:
        raise RuntimeError(f"backbone tensors outside its prefix {prefix!r}: {outside[:10]}")
    return {k[len(prefix):]: targets for k, targets in mapping.items()}


def load_imagenet_backbone(backbone, state_dict, source="the checkpoint", description=None):
    """Copies an ImageNet classification state_dict into a built backbone layer (a
    model's ``backbone``); returns a `BackboneImport`.

    The head (`HEAD_PREFIXES`) is skipped and ``num_batches_tracked`` ignored; any
    other unknown, missing or mis-shaped tensor is a `CheckpointMismatchError` that
    lists them all (``source`` and ``description`` name the file and the model in it).
    """
    state_dict = strip_prefix(dict(state_dict))
    head = sorted(k for k in state_dict if k.startswith(HEAD_PREFIXES))
    ignored = sorted(k for k in state_dict
                     if k.endswith(OPTIONAL_SUFFIXES) and k not in head)
    body = {k: v for k, v in state_dict.items() if k not in head}
    desc = f" of {description}" if description else ""
    loaded = copy_checked(
        backbone_mapping(backbone), body,
        f"{source} does not match the backbone{desc} as an ImageNet classification "
        "checkpoint",
        "Check that it is the ImageNet checkpoint of the configured backbone: torchvision's "
        "resnet50/101/152 state_dict for resnet*, HRNet-Image-Classification's "
        "hrnetv2_w32/w48_imagenet_pretrained.pth for hrnet_w*.")
    return BackboneImport(loaded, head, ignored)


def load_imagenet_file(backbone, path, what="checkpoint", description=None):
    """`load_imagenet_backbone` from a ``.pth`` (read without torch) or ``.npz`` file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    if str(path).endswith(".h5"):
        raise ValueError(f"{what} {path!r} is a Keras weights file; it takes an ImageNet "
                         "checkpoint (.pth or .npz). A *.weights.h5 (e.g. from prtr-convert "
                         "--backbone_only) goes to config.train.init_weights")
    return load_imagenet_backbone(backbone, read_state_dict(path), f"{what} {path!r}",
                                  description)
