"""COCO, two-stage PRTR, resnet50, 384x288 crops.

Official: two_stage/experiments/coco/transformer/res50_384x288_adamw_lr1e-4.yaml.
Published: COCO val2017 AP with DETR boxes 68.2 (official two_stage README).
"""
from prtr_tf.models.keypoint.config import two_stage


def get_config():
    return two_stage('resnet50', 'coco', (384, 288), lr_backbone=1e-5, lr_steps=(120, 140),
                     batch_size=128, paper_ap=68.2)
