"""Multiply-accumulate (MAC) counts as the paper reports "GFLOPs" (spec §9).

    python -m tools.flops --config=configs/coco_res50_384x288.py [--config=... more]
    python -m tools.flops --all

The paper's GFLOPs are fvcore ``FlopCountAnalysis`` totals, which count one
multiply-add as one "flop". `count_macs` reproduces fvcore's rules analytically
from the shapes seen in one eager forward pass, recorded by wrapping the ``call``
of every counted layer for the duration of that pass:

=====================  ==========================================  ==============
Keras                  MACs                                        fvcore op
=====================  ==========================================  ==============
Conv1D/2D/3D           out positions x prod(kernel shape)          _convolution
Dense, EinsumDense     prod(output) x contracted kernel dims       linear/einsum
MultiHeadAttention     QK^T + AV: B*heads*Lq*Lk*(dk + dv)          bmm
LayerNormalization     5 x input elements (4 without affine)       layer_norm
BatchNormalization     2 x input elements (eval mode, affine)      batch_norm
FrozenBatchNorm        0 (DETR's is plain mul/add, ignored)        --
HRNet nearest upsample 1 x output element                          upsample_nearest2d
=====================  ==========================================  ==============

Biases, activations, residual adds, pooling, softmax and the positional encoding
are not counted, as in fvcore. The official parameter count comes from
`prtr_tf.nn.layers.count_parameters`.

Every fvcore figure of spec §9 comes out the same to its two printed decimals. BN
counts only in HRNet: 0.10 G of W32's 21.80 at 384x288, with the upsampling
adding another 0.005 G. torch's FlopCounterMode counts only conv, mm and bmm,
which makes conv + linear + attention = 21.70, the "torch counter" figure.
"""
import contextlib
import glob
import math
import os
import sys

import keras
import tensorflow as tf
from absl import flags

from prtr_tf.nn.layers import FrozenBatchNorm
from tools.flags import parse, usage_error

CATEGORIES = ("conv", "linear", "attention", "norm", "upsample")

# fvcore GMACs of the official model, batch 1 (spec §9): (backbone, dataset, H, W) -> GMACs.
REFERENCE_GMACS = {
    ("resnet50", "coco", 384, 288): 11.05,
    ("resnet50", "coco", 512, 384): 18.93,
    ("resnet101", "coco", 384, 288): 19.23,
    ("resnet101", "coco", 512, 384): 33.48,
    ("hrnet_w32", "coco", 384, 288): 21.80,
    ("hrnet_w32", "coco", 512, 384): 38.05,
    ("resnet50", "mpii", 256, 256): 6.94,
    ("resnet152", "mpii", 256, 256): 16.64,
}


def _shape(x):
    return tuple(int(d) for d in x.shape)


def _conv_macs(layer, args, out):
    spatial = _shape(out)[2:] if layer.data_format == "channels_first" else _shape(out)[1:-1]
    return "conv", _shape(out)[0] * math.prod(spatial) * math.prod(_shape(layer.kernel))


def _dense_macs(layer, args, out):
    return "linear", math.prod(_shape(out)) * _shape(layer.kernel)[0]


def _einsum_dense_macs(layer, args, out):
    """prod(output) x the kernel dimensions that are summed over (absent from the output)."""
    inputs, rest = layer.equation.split(",")
    kernel_letters, output_letters = rest.split("->")
    contracted = [n for letter, n in zip(kernel_letters, _shape(layer.kernel))
                  if letter not in output_letters]
    return "linear", math.prod(_shape(out)) * math.prod(contracted)


def _layer_norm_macs(layer, args, out):
    affine = layer.scale or layer.center
    return "norm", math.prod(_shape(args[0])) * (5 if affine else 4)


def _batch_norm_macs(layer, args, out):
    # fvcore, eval mode: 2 per element with affine parameters, 1 without.
    affine = layer.scale or layer.center
    return "norm", math.prod(_shape(args[0])) * (2 if affine else 1)


def _attention_macs(layer, args, out):
    """``_compute_attention(query, key, value, ...)`` on projected (B, L, heads, dim) tensors."""
    query, key, value = (_shape(t) for t in args[:3])
    lq, lk = math.prod(query[1:-2]), math.prod(key[1:-2])
    return "attention", query[0] * query[-2] * lq * lk * (query[-1] + value[-1])


# (layer type, method to wrap, rule); the first matching type wins.
RULES = (
    (FrozenBatchNorm, "call", lambda layer, args, out: ("norm", 0)),
    (keras.layers.Conv1D, "call", _conv_macs),
    (keras.layers.Conv2D, "call", _conv_macs),
    (keras.layers.Conv3D, "call", _conv_macs),
    (keras.layers.Dense, "call", _dense_macs),
    (keras.layers.EinsumDense, "call", _einsum_dense_macs),
    (keras.layers.LayerNormalization, "call", _layer_norm_macs),
    (keras.layers.BatchNormalization, "call", _batch_norm_macs),
    (keras.layers.MultiHeadAttention, "_compute_attention", _attention_macs),
)


def _counting(fn, rule, owner, record):
    """`fn` that also records ``rule(owner, args, output)``."""

    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        record(*rule(owner, args, out[0] if isinstance(out, tuple) else out))
        return out

    return wrapped


def _upsample_macs(fn, args, out):
    return "upsample", math.prod(_shape(out))


@contextlib.contextmanager
def _recording(model, record):
    """Wraps the counted methods of every sublayer (and HRNet's upsampling) while active."""
    patched, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        for layer_type, attribute, rule in RULES:
            if isinstance(layer, layer_type):
                wrapped = _counting(getattr(layer, attribute), rule, layer, record)
                object.__setattr__(layer, attribute, wrapped)  # shadows the bound method
                patched.append((layer, attribute))
                break
    # HRNet upsamples with a module-level function (tf.repeat), not a layer.
    hrnet = sys.modules.get("prtr_tf.nn.hrnet")
    upsample = getattr(hrnet, "upsample_nearest", None)
    if upsample is not None:
        hrnet.upsample_nearest = _counting(upsample, _upsample_macs, upsample, record)
    try:
        yield
    finally:
        for layer, attribute in patched:
            del layer.__dict__[attribute]
        if upsample is not None:
            hrnet.upsample_nearest = upsample


def count_macs(model, image_size_hw, batch=1, channels=3):
    """fvcore-style multiply-accumulates of one forward pass of `model` on zero images.

    `model` is any Keras model or layer called on images (B, H, W, channels); it is
    built first if needed. Returns ints: ``total`` and per category ``conv``,
    ``linear`` (Dense/EinsumDense, including the attention projections),
    ``attention`` (the QK^T and AV matmuls), ``norm`` and ``upsample``.
    """
    images = tf.zeros((batch, *image_size_hw, channels))
    if not model.built:
        model(images, training=False)  # creates the lazily built sublayers (e.g. MHA's)
    counts = dict.fromkeys(CATEGORIES, 0)

    def record(category, macs):
        counts[category] += int(macs)

    with _recording(model, record):
        model(images, training=False)
    counts["total"] = sum(counts[c] for c in CATEGORIES)
    return counts


def reference_gmacs(model_config):
    h, w = model_config.image_size
    dataset = "mpii" if model_config.num_joints == 16 else "coco"
    return REFERENCE_GMACS.get((model_config.backbone, dataset, h, w))


TABLE_HEADER = ("| config | params | GMACs | reference | Δ | conv | linear | attention | norm "
                "| upsample |\n|---|---|---|---|---|---|---|---|---|---|")


def table_row(name, params, counts, reference=None):
    g = {k: v / 1e9 for k, v in counts.items()}
    ref = f"{reference:.2f}" if reference else "—"
    delta = f"{100 * (g['total'] / reference - 1):+.2f}%" if reference else "—"
    return (f"| {name} | {params:,} | {g['total']:.3f} | {ref} | {delta} | {g['conv']:.3f} "
            f"| {g['linear']:.3f} | {g['attention']:.3f} | {g['norm']:.4f} "
            f"| {g['upsample']:.4f} |")


def main(argv=None):
    from prtr_tf.config import load_config
    from prtr_tf.nn.layers import count_parameters
    from prtr_tf.models import registry

    def define(values):
        flags.DEFINE_multi_string("config", [], "Config files or names in configs/ (repeat "
                                  "the flag for more).", flag_values=values)
        flags.DEFINE_bool("all", False, "Every keypoint config (on crops) in configs/.",
                          flag_values=values)
        flags.DEFINE_integer("batch", 1, "Batch size of the counted pass.", flag_values=values)

    args = parse(argv, define, __doc__.split("\n\n")[0], "python -m tools.flops")
    if args.positional:
        usage_error(f"unexpected arguments: {args.positional}")
    configs = list(args.config)
    if args.all:
        root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "configs")
        configs += sorted(glob.glob(os.path.join(root, "*.py")))
    if not configs:
        usage_error("give --config or --all")
    print(TABLE_HEADER)
    for path in configs:
        config = load_config(path)
        kind = registry.get(config)
        if kind.inputs != "crops":  # the keypoint Transformer on person crops
            if not args.all:
                usage_error(f"{path}: counts keypoint models on crops only (a "
                            f"{kind.title} config)")
            continue
        model_config = config.model
        model = kind.build(model_config)  # the family's architecture (vanilla, deformable)
        counts = count_macs(model, model_config.image_size, batch=args.batch)
        name = os.path.splitext(os.path.basename(path))[0]
        print(table_row(name, count_parameters(model), counts, reference_gmacs(model_config)),
              flush=True)
        del model
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
