"""MPII, two-stage PRTR, resnet50, 384x384 crops.

Official: two_stage/experiments/mpii/transformer/res50_384x384_adamw_lr1e-4.yaml.
Published: MPII val PCKh@0.5 mean 86.31 (official two_stage README).
"""
from prtr_tf.models.keypoint.config import two_stage


def get_config():
    return two_stage('resnet50', 'mpii', (384, 384), lr_backbone=1e-5, lr_steps=(130,),
                     batch_size=128, paper_ap=86.31)
