"""End-to-end PRTR, HRNet-W48, COCO: the paper's other backbone for this variant
(spec §8; defaults explained in `prtr_tf.models.end_to_end.config`).

The STN crops HRNet's last-stage branches at strides 8, 16 and 32 (C3 + C4 + C5 =
96 + 192 + 384 = 672 channels); the DETR person detector reads the 2048-channel
stride-32 output of HRNet's classification head, as the two-stage HRNet model
does. HRNet trains its (ordinary) BN, and its backbone learning rate is the
two-stage HRNet configs' 1e-4 (spec §7) rather than ResNet's 1e-5.
"""
from prtr_tf.models.end_to_end.config import end_to_end


def get_config():
    return end_to_end("hrnet_w48", "coco", lr_backbone=1e-4)
