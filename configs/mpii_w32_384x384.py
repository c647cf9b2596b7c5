"""MPII, two-stage PRTR, hrnet_w32, 384x384 crops.

Official: two_stage/experiments/mpii/transformer/w32_384x384_adamw_lr1e-4.yaml.
Published: MPII val PCKh@0.5 mean 89.526 (official two_stage README).
"""
from prtr_tf.models.keypoint.config import two_stage


def get_config():
    return two_stage('hrnet_w32', 'mpii', (384, 384), lr_backbone=1e-4, lr_steps=(60,),
                     batch_size=64, paper_ap=89.526)
