"""torchvision-layout ResNet (v1.5: stride on the 3x3 conv, convs without bias).

Frozen BatchNorm everywhere and a frozen stem + layer1, as DETR's backbone and
the official PRTR two-stage model use it (spec §1.1). Only C5 is returned by
default; `return_levels` gives every stage (C2..C5) for the end-to-end model.
"""
import keras
import tensorflow as tf

from prtr_tf.nn.layers import Composite, batch_norm, conv

DEPTHS = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
    # A small bottleneck ResNet for tests and the synthetic demo (not an official model):
    # three stages, so its output (C4) has stride 16 and small crops still give a
    # useful number of tokens.
    "resnet_tiny": (1, 1, 1),
}
WIDTHS = {"resnet_tiny": 16}


class Bottleneck(Composite):
    """torchvision Bottleneck (expansion 4, stride on the 3x3 conv).

    Shared by ResNet (frozen BN) and HRNet's layer1 / head (trainable BN).
    ``downsample`` adds the 1x1 conv + BN shortcut (``{prefix}.downsample.0/.1``).
    """

    expansion = 4

    def __init__(self, planes, strides, downsample, prefix, frozen_bn=True, trainable=True,
                 **kw):
        super().__init__(**kw)
        self.conv1 = conv(planes, 1, torch_name=f"{prefix}.conv1")
        self.bn1 = batch_norm(f"{prefix}.bn1", frozen=frozen_bn)
        self.conv2 = conv(planes, 3, strides, torch_name=f"{prefix}.conv2")
        self.bn2 = batch_norm(f"{prefix}.bn2", frozen=frozen_bn)
        self.conv3 = conv(planes * 4, 1, torch_name=f"{prefix}.conv3")
        self.bn3 = batch_norm(f"{prefix}.bn3", frozen=frozen_bn)
        self.downsample = None
        if downsample:
            self.downsample = [conv(planes * 4, 1, strides, torch_name=f"{prefix}.downsample.0"),
                               batch_norm(f"{prefix}.downsample.1", frozen=frozen_bn)]
        self.trainable = trainable  # after the sublayers exist, so that it reaches them

    def frozen_pairs(self):
        """(conv, norm) pairs for `prtr_tf.nn.fold` (the norms are frozen or not)."""
        pairs = [(self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)]
        return pairs + ([tuple(self.downsample)] if self.downsample is not None else [])

    def call(self, x, training=None):
        identity = x
        out = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        out = tf.nn.relu(self.bn2(self.conv2(out), training=training))
        out = self.bn3(self.conv3(out), training=training)
        if self.downsample is not None:
            identity = self.downsample[1](self.downsample[0](x), training=training)
        return tf.nn.relu(out + identity)


class ResNet(Composite):
    """ResNet body; ``call`` returns the last level (C5), or with return_levels every
    stage's output ``{'C2': stride 4, ..., 'C5': stride 32}`` (resnet_tiny: C2..C4);
    ``main_level`` names the one ``call`` returns by default."""

    def __init__(self, depth="resnet50", torch_prefix="backbone.0.body", frozen=None, **kw):
        kw.setdefault("name", "backbone")
        super().__init__(**kw)
        if depth not in DEPTHS:
            raise ValueError(f"unknown ResNet {depth!r}; choose one of {tuple(DEPTHS)}")
        # The official backbones start from ImageNet weights: frozen BN, frozen stem and
        # layer1. The tiny test backbone trains from scratch: ordinary BN, all trainable.
        frozen = depth != "resnet_tiny" if frozen is None else frozen
        width = WIDTHS.get(depth, 64)
        # torch_prefix: the official module path of the body; an ImageNet checkpoint
        # names the same tensors without it (`prtr_tf.checkpoints.torch_import.backbone_mapping`).
        self.depth, self.torch_prefix = depth, torch_prefix
        p = torch_prefix
        self.conv1 = conv(width, 7, 2, torch_name=f"{p}.conv1", trainable=not frozen)
        self.bn1 = batch_norm(f"{p}.bn1", frozen=frozen)
        self.stages = []
        inplanes = width
        for i, blocks in enumerate(DEPTHS[depth]):
            planes = width * 2 ** i
            stage = []
            for b in range(blocks):
                strides = 2 if (b == 0 and i > 0) else 1
                downsample = b == 0 and (strides != 1 or inplanes != planes * 4)
                stage.append(Bottleneck(planes, strides, downsample, f"{p}.layer{i + 1}.{b}",
                                        frozen_bn=frozen, trainable=not frozen or i > 0,
                                        name=f"layer{i + 1}_{b}"))
                inplanes = planes * 4
            self.stages.append(stage)
        self.level_channels = [width * 4 * 2 ** i for i in range(len(DEPTHS[depth]))]
        self.out_channels = self.level_channels[-1]
        self.main_level = f"C{len(DEPTHS[depth]) + 1}"

    def frozen_pairs(self):
        """The stem's (conv, norm) for `prtr_tf.nn.fold` (the blocks declare theirs)."""
        return [(self.conv1, self.bn1)]

    def call(self, x, training=None, return_levels=False):
        x = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        # torch MaxPool2d(3, 2, padding=1) pads with -inf; after ReLU zeros are equivalent.
        x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        x = tf.nn.max_pool2d(x, 3, 2, "VALID")
        levels = {}
        for i, stage in enumerate(self.stages):
            for block in stage:
                x = block(x, training=training)
            levels[f"C{i + 2}"] = x
        if return_levels:
            return levels
        return x
