"""Multiply-accumulate (MAC) counts as the paper reports "GFLOPs" (spec §9).

    python -m tools.flops --config=configs/coco_res50_384x288.py [--config=... more]
    python -m tools.flops --all
    python -m tools.flops --config=configs/deformable_detr_r50_coco.py [--image_size=800,1066]

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
GroupNormalization     5 x input elements (4 without affine)       group_norm
BatchNormalization     2 x input elements (eval mode, affine)      batch_norm
FrozenBatchNorm        0 (DETR's is plain mul/add, ignored)        --
HRNet nearest upsample 1 x output element                          upsample_nearest2d
deformable sampling    5 x sampled values x channels: "sampling"   (none, see below)
=====================  ==========================================  ==============

Biases, activations, residual adds, pooling, softmax and the positional encoding
are not counted, as in fvcore. The official parameter count comes from
`prtr_tf.nn.layers.count_parameters`.

Multi-scale deformable attention (`prtr_tf.nn.ms_deform_attn`: the deformable PRTR and
Deformable DETR): its four projections are Dense layers, counted as above. The sampling
itself (`ms_deform_attn_core`) has no fvcore rule: the official models run it as the
CUDA autograd function ``MSDeformAttnFunction``, which fvcore's tracer sees as an opaque
``prim::PythonOp`` and counts as 0. It is therefore a category of its own, "sampling",
NOT in ``total``: ``total`` is what fvcore prints for the official model (the figure the
official READMEs give), ``total_with_sampling`` adds the sampling, counted as Deformable
DETR's Appendix A.1 does: per query, head, level, point and channel of the head, 4 MACs
of bilinear interpolation (fvcore's own ``grid_sampler`` rule, 4 per output element, is
what fvcore would count for the official pure-PyTorch core ``F.grid_sample``) plus 1 for
the attention weight (the weighted sum over levels and points), i.e.
``5 x N x Lq x M x L x P x D`` per attention layer. The locations, the softmax and the
corner weights are elementwise (uncounted, as fvcore's rules would).

Person detectors (`role` detector: DETR, Deformable DETR) are counted on one unpadded
image of ``--image_size`` (default: a 640x480 photo, COCO's most common size, at the
config's test resize: ``test_size`` x int(test_size x 4 / 3), 800x1066). The papers'
detector figures are averages over the first 100 COCO val2017 images, which a single
size does not reproduce exactly.

Every fvcore figure of spec §9 comes out the same to its two printed decimals. BN
counts only in HRNet: 0.10 G of W32's 21.80 at 384x288, with the upsampling
adding another 0.005 G. torch's FlopCounterMode counts only conv, mm and bmm,
which makes conv + linear + attention = 21.70, the "torch counter" figure.
"""
import contextlib
import glob
import inspect
import math
import os
import sys

import keras
import tensorflow as tf
from absl import flags

from prtr_tf.nn.layers import FrozenBatchNorm
from tools.flags import parse, usage_error

CATEGORIES = ("conv", "linear", "attention", "norm", "upsample", "sampling")
FVCORE_CATEGORIES = CATEGORIES[:-1]  # what fvcore sees of the official models: ``total``
BILINEAR_MACS = 4  # per sampled value and channel (fvcore's grid_sampler rule)
WEIGHT_MACS = 1  # per sampled value and channel: times its attention weight, summed

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
# The deformable keypoint model: the official two_stage README's "GFLOPs" (fvcore through
# the official tools/trace.py, one decimal; the CUDA sampling op counted as 0).
REFERENCE_DEFORMABLE_GMACS = {("resnet50", "coco", 384, 288): 29.1}


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


def _sampling_macs(core, args, kwargs, out):
    """``ms_deform_attn_core(value (N, S, M, D), spatial_shapes, level_start_index,
    sampling_locations, attention_weights (N, Lq, M, L, P))``: every sampled value of
    every head channel, (4 + 1) MACs each."""
    bound = inspect.signature(core).bind(*args, **kwargs).arguments
    samples = math.prod(_shape(bound["attention_weights"])) * _shape(bound["value"])[-1]
    return "sampling", samples * (BILINEAR_MACS + WEIGHT_MACS)


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
    (keras.layers.GroupNormalization, "call", _layer_norm_macs),  # fvcore: the same rule
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


def _counting_core(core, record):
    """`core` (the deformable sampling) that also records `_sampling_macs`."""

    def wrapped(*args, **kwargs):
        out = core(*args, **kwargs)
        record(*_sampling_macs(core, args, kwargs, out))
        return out

    return wrapped


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
    # MSDeformAttn calls the sampling core, a module-level function, by its global name.
    deform = sys.modules.get("prtr_tf.nn.ms_deform_attn")
    core = getattr(deform, "ms_deform_attn_core", None)
    if core is not None:
        deform.ms_deform_attn_core = _counting_core(core, record)
    try:
        yield
    finally:
        for layer, attribute in patched:
            del layer.__dict__[attribute]
        if upsample is not None:
            hrnet.upsample_nearest = upsample
        if core is not None:
            deform.ms_deform_attn_core = core


def count_macs(model, image_size_hw, batch=1, channels=3):
    """fvcore-style multiply-accumulates of one forward pass of `model` on zero images.

    `model` is any Keras model or layer called on images (B, H, W, channels); it is
    built first if needed. Returns ints per category: ``conv``, ``linear``
    (Dense/EinsumDense, including the attention projections), ``attention`` (the QK^T
    and AV matmuls), ``norm``, ``upsample`` and ``sampling`` (the deformable sampling,
    see the module docstring); ``total``, the sum of all but ``sampling`` (what fvcore
    prints for the official model), and ``total_with_sampling``.
    """
    images = tf.zeros((batch, *image_size_hw, channels))
    if not model.built:
        model(images, training=False)  # creates the lazily built sublayers (e.g. MHA's)
    counts = dict.fromkeys(CATEGORIES, 0)

    def record(category, macs):
        counts[category] += int(macs)

    with _recording(model, record):
        model(images, training=False)
    counts["total"] = sum(counts[c] for c in FVCORE_CATEGORIES)
    counts["total_with_sampling"] = counts["total"] + counts["sampling"]
    return counts


# The official figures per family (`Family.name`).
REFERENCES = {"prtr": REFERENCE_GMACS, "prtr_deformable": REFERENCE_DEFORMABLE_GMACS}


def reference_gmacs(model_config, family="prtr"):
    """The official fvcore figure of a keypoint config of ``family``, or None."""
    table = REFERENCES.get(family)
    if table is None or "image_size" not in model_config:
        return None
    h, w = model_config.image_size
    dataset = "mpii" if model_config.num_joints == 16 else "coco"
    return table.get((model_config.backbone, dataset, h, w))


def detector_image_size(config):
    """(H, W) of a detector's counted image: a 640x480 photo at the test resize."""
    short = int(config.data.test_size)
    return short, int(short * 4 / 3)


TABLE_HEADER = ("| config | input (H×W) | params | GMACs | reference | Δ | conv | linear "
                "| attention | norm | upsample | sampling | GMACs + sampling |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def table_row(name, params, counts, reference=None, size=None):
    g = {k: v / 1e9 for k, v in counts.items()}
    ref = f"{reference:g}" if reference else "—"
    delta = f"{100 * (g['total'] / reference - 1):+.2f}%" if reference else "—"
    size = "×".join(str(int(s)) for s in size) if size else "—"
    return (f"| {name} | {size} | {params:,} | {g['total']:.3f} | {ref} | {delta} "
            f"| {g['conv']:.3f} | {g['linear']:.3f} | {g['attention']:.3f} "
            f"| {g['norm']:.4f} | {g['upsample']:.4f} | {g.get('sampling', 0):.4f} "
            f"| {g.get('total_with_sampling', g['total']):.3f} |")


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
        flags.DEFINE_string("image_size", None, "H,W of the image a person detector config "
                            "is counted on (default: test_size x int(test_size x 4/3), a "
                            "640x480 photo at the test resize).", flag_values=values)

    args = parse(argv, define, __doc__.split("\n\n")[0], "python -m tools.flops")
    if args.positional:
        usage_error(f"unexpected arguments: {args.positional}")
    image_size = None
    if args.image_size:
        try:
            image_size = tuple(int(v) for v in args.image_size.split(","))
        except ValueError:
            image_size = ()
        if len(image_size) != 2 or min(image_size) < 32:
            usage_error(f"--image_size={args.image_size}: expected H,W (pixels, >= 32)")
    configs = [(path, True) for path in args.config]  # (config, named by --config)
    if args.all:
        root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "configs")
        configs += [(path, False) for path in sorted(glob.glob(os.path.join(root, "*.py")))]
    if not configs:
        usage_error("give --config or --all")
    print(TABLE_HEADER)
    for path, named_config in configs:
        config = load_config(path)
        kind = registry.get(config)
        model_config = config.model
        if kind.inputs == "crops":  # the keypoint Transformers on person crops
            size = tuple(model_config.image_size)
        elif kind.role == registry.DETECTOR and named_config:  # --all: crops only
            size = image_size or detector_image_size(config)
        else:
            if named_config:
                usage_error(f"{path}: counts keypoint models on crops and person "
                            f"detectors only (a {kind.title} config)")
            continue
        model = kind.build(model_config)  # the family's architecture (vanilla, deformable)
        counts = count_macs(model, size, batch=args.batch)
        name = os.path.splitext(os.path.basename(path))[0]
        print(table_row(name, count_parameters(model), counts,
                        reference_gmacs(model_config, kind.name), size), flush=True)
        del model
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
