"""End-to-end PRTR, ResNet-101, COCO: the paper's ResNet backbone for this variant
(spec §8; defaults explained in `prtr_tf.models.end_to_end.config`, otherwise as e2e_r50_coco).
Initialise the detector from the official DETR R101 with ``prtr-convert``.
"""
from prtr_tf.models.end_to_end.config import end_to_end


def get_config():
    return end_to_end("resnet101", "coco")
