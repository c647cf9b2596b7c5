"""COCO, two-stage PRTR, hrnet_w32, 384x288 crops.

Official: two_stage/experiments/coco/transformer/w32_384x288_adamw_lr1e-4.yaml.
Published: COCO val2017 AP with DETR boxes 73.1 (official two_stage README).
"""
from prtr_tf.models.keypoint.config import two_stage


def get_config():
    return two_stage('hrnet_w32', 'coco', (384, 288), lr_backbone=1e-4, lr_steps=(70, 95),
                     batch_size=64, paper_ap=73.1)
