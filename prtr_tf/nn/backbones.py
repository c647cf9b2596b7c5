"""Backbone factory: name -> Keras layer producing the stride-32 map."""


def build_backbone(name, torch_prefix="backbone.0.body", frozen=None):
    """``frozen``: ResNet frozen BN + stem/layer1 (None = the depth's default)."""
    if name.startswith("resnet"):
        from prtr_tf.nn.resnet import ResNet
        return ResNet(name, torch_prefix=torch_prefix, frozen=frozen)
    if name.startswith("hrnet_w"):
        if frozen:
            raise ValueError("HRNet has ordinary trainable BN; frozen_backbone applies to ResNet")
        from prtr_tf.nn.hrnet import HRNet
        return HRNet(width=int(name[len("hrnet_w"):]), torch_prefix=torch_prefix)
    raise ValueError(f"unknown backbone {name!r}: expected resnet50/101/152, resnet_tiny, "
                     "hrnet_w32 or hrnet_w48")
