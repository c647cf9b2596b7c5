"""HRNet-C backbone: the ImageNet classification HRNet without its classifier.

Follows HRNet/HRNet-Image-Classification ``cls_hrnet.py`` as the official PRTR
two-stage model uses it (spec §1.1): stem, layer1, stages 2-4 with multi-resolution
fusion, then the classification head (incre_modules, downsamp_modules, final_layer)
that fuses the four branches into one stride-32 map with 2048 channels.
BatchNorm is ordinary trainable BN (eps 1e-5, Keras momentum 0.9).

Every conv / BN carries ``torch_name``, its module path in the official state_dict.
"""
import keras
import tensorflow as tf

from prtr_tf.nn.layers import Composite, batch_norm, conv
from prtr_tf.nn.resnet import Bottleneck

# (num_modules, num_branches) of stages 2, 3, 4; every branch has 4 BasicBlocks.
STAGES = ((1, 2), (4, 3), (3, 4))
NUM_BLOCKS = 4
STEM_CHANNELS = 64
HEAD_PLANES = (32, 64, 128, 256)  # incre Bottleneck planes -> 128/256/512/1024 channels
OUT_CHANNELS = 2048


def upsample_nearest(x, factor):
    """torch ``nn.Upsample(scale_factor=factor, mode='nearest')`` for an integer factor."""
    return tf.repeat(tf.repeat(x, factor, axis=1), factor, axis=2)


def run_chain(layers, x, training):
    for layer in layers:
        x = layer(x, training=training)
    return x


class ConvBN(Composite):
    """An official ``nn.Sequential(conv, bn[, relu])`` named `prefix` (``.0`` conv, ``.1`` bn)."""

    def __init__(self, filters, kernel_size, strides, prefix, use_bias=False, relu=True, **kw):
        super().__init__(**kw)
        self.conv = conv(filters, kernel_size, strides, use_bias=use_bias,
                         torch_name=f"{prefix}.0")
        self.bn = batch_norm(f"{prefix}.1")
        self.relu = relu

    def call(self, x, training=None):
        x = self.bn(self.conv(x), training=training)
        return tf.nn.relu(x) if self.relu else x


class BasicBlock(Composite):
    def __init__(self, planes, prefix, **kw):
        super().__init__(**kw)
        self.conv1 = conv(planes, 3, torch_name=f"{prefix}.conv1")
        self.bn1 = batch_norm(f"{prefix}.bn1")
        self.conv2 = conv(planes, 3, torch_name=f"{prefix}.conv2")
        self.bn2 = batch_norm(f"{prefix}.bn2")

    def call(self, x, training=None):
        out = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        out = self.bn2(self.conv2(out), training=training)
        return tf.nn.relu(out + x)


class HighResolutionModule(Composite):
    """Parallel branches of BasicBlocks, then every branch fuses all the others.

    Fusion into branch i sums, over branches j: j == i as is; j > i through 1x1 conv
    + BN and nearest upsampling by 2^(j-i); j < i through i-j 3x3 stride-2 conv + BN
    links with ReLU on all but the last. The sum is followed by a ReLU.
    """

    def __init__(self, channels, prefix, **kw):
        super().__init__(**kw)
        n = len(channels)
        self.branches = [[BasicBlock(c, f"{prefix}.branches.{i}.{b}") for b in range(NUM_BLOCKS)]
                         for i, c in enumerate(channels)]
        self.fuse_layers = []
        for i in range(n):
            row = []
            for j in range(n):
                p = f"{prefix}.fuse_layers.{i}.{j}"
                if j > i:
                    row.append([ConvBN(channels[i], 1, 1, p, relu=False)])
                elif j < i:
                    row.append([ConvBN(channels[i] if k == i - j - 1 else channels[j], 3, 2,
                                       f"{p}.{k}", relu=k < i - j - 1) for k in range(i - j)])
                else:
                    row.append([])
            self.fuse_layers.append(row)

    def _fuse(self, i, j, x, training):
        x = run_chain(self.fuse_layers[i][j], x, training)
        return upsample_nearest(x, 2 ** (j - i)) if j > i else x

    def call(self, xs, training=None):
        xs = [run_chain(blocks, x, training) for blocks, x in zip(self.branches, xs)]
        out = []
        for i in range(len(xs)):
            y = xs[0] if i == 0 else self._fuse(i, 0, xs[0], training)
            for j in range(1, len(xs)):
                y = y + (xs[j] if i == j else self._fuse(i, j, xs[j], training))
            out.append(tf.nn.relu(y))
        return out


class HRNet(Composite):
    """HRNet-W{width}-C body + classification head: (B,H,W,3) -> (B,H/32,W/32,2048).

    H and W must be divisible by 32 (the fusion adds maps of matching sizes).
    """

    out_channels = OUT_CHANNELS
    num_channels = OUT_CHANNELS

    def __init__(self, width=32, torch_prefix="backbone.0.body", **kw):
        kw.setdefault("name", "backbone")
        super().__init__(**kw)
        self.width, self.torch_prefix = width, torch_prefix
        p = torch_prefix
        self.conv1 = conv(STEM_CHANNELS, 3, 2, torch_name=f"{p}.conv1")
        self.bn1 = batch_norm(f"{p}.bn1")
        self.conv2 = conv(STEM_CHANNELS, 3, 2, torch_name=f"{p}.conv2")
        self.bn2 = batch_norm(f"{p}.bn2")
        self.layer1 = [Bottleneck(STEM_CHANNELS, 1, b == 0, f"{p}.layer1.{b}", frozen_bn=False)
                       for b in range(4)]

        # transitions[s][i]: the chain producing branch i of stage s+2 (empty = identity).
        # An existing branch whose width changes gets one 3x3 conv + BN + ReLU; a new
        # branch gets a 3x3 stride-2 conv + BN + ReLU on the last previous branch.
        self.transitions, self.stages = [], []
        pre = [STEM_CHANNELS * 4]
        for s, (num_modules, num_branches) in enumerate(STAGES):
            channels = [width * 2 ** i for i in range(num_branches)]
            t = f"{p}.transition{s + 1}"
            chains = []
            for i, c in enumerate(channels):
                if i < len(pre):
                    chains.append([ConvBN(c, 3, 1, f"{t}.{i}")] if c != pre[i] else [])
                else:
                    chains.append([ConvBN(channels[i] if k == i - len(pre) else pre[-1], 3, 2,
                                          f"{t}.{i}.{k}") for k in range(i + 1 - len(pre))])
            self.transitions.append(chains)
            self.stages.append([HighResolutionModule(channels, f"{p}.stage{s + 2}.{m}")
                                for m in range(num_modules)])
            pre = channels

        self.incre_modules = [Bottleneck(planes, 1, True, f"{p}.incre_modules.{i}.0",
                                         frozen_bn=False)
                              for i, planes in enumerate(HEAD_PLANES)]
        self.downsamp_modules = [ConvBN(HEAD_PLANES[i + 1] * 4, 3, 2, f"{p}.downsamp_modules.{i}",
                                        use_bias=True) for i in range(len(HEAD_PLANES) - 1)]
        self.final_layer = ConvBN(OUT_CHANNELS, 1, 1, f"{p}.final_layer", use_bias=True)

    main_level = "head"

    def call(self, x, training=False, return_levels=False):
        """The 2048-channel stride-32 head output; with ``return_levels`` a dict of the
        last stage's branches C2..C5 (strides 4..32, width x 1, 2, 4, 8 channels) and
        that output as "head" (``main_level``)."""
        x = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        x = tf.nn.relu(self.bn2(self.conv2(x), training=training))
        x = run_chain(self.layer1, x, training)
        xs = [x]
        for chains, modules in zip(self.transitions, self.stages):
            xs = [run_chain(chain, xs[i] if i < len(xs) else xs[-1], training)
                  for i, chain in enumerate(chains)]
            for module in modules:
                xs = module(xs, training=training)
        y = self.incre_modules[0](xs[0], training=training)
        for i, down in enumerate(self.downsamp_modules):
            y = self.incre_modules[i + 1](xs[i + 1], training=training) + down(y, training=training)
        out = self.final_layer(y, training=training)
        if return_levels:
            levels = {f"C{i + 2}": branch for i, branch in enumerate(xs)}
            levels["head"] = out
            return levels
        return out

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, None if h is None else h // 32, None if w is None else w // 32, OUT_CHANNELS)

    def get_config(self):
        return {**super().get_config(), "width": self.width, "torch_prefix": self.torch_prefix}
