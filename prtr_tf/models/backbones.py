"""Backbone factory: name -> Keras layer producing the stride-32 map."""


def build_backbone(name, torch_prefix="backbone.0.body"):
    if name.startswith("resnet"):
        from prtr_tf.models.resnet import ResNet
        return ResNet(name, torch_prefix=torch_prefix)
    if name.startswith("hrnet_w"):
        from prtr_tf.models.hrnet import HRNet
        return HRNet(width=int(name[len("hrnet_w"):]), torch_prefix=torch_prefix)
    raise ValueError(f"unknown backbone {name!r}: expected resnet50/101/152, resnet_tiny, "
                     "hrnet_w32 or hrnet_w48")
