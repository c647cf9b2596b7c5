"""MPII, two-stage PRTR, resnet101, 384x384 crops.

Official: two_stage/experiments/mpii/transformer/res101_384x384_adamw_lr1e-4.yaml.
Published: MPII val PCKh@0.5 mean 87.916 (official two_stage README).
"""
from prtr_tf.models.keypoint.config import two_stage


def get_config():
    return two_stage('resnet101', 'mpii', (384, 384), lr_backbone=1e-5, lr_steps=(130,),
                     batch_size=128, paper_ap=87.916)
