"""MPII, two-stage PRTR, resnet152, 384x384 crops. (The official builder rejects resnet152; the spec's fix, removing that assert, is what this builds.)

Official: two_stage/experiments/mpii/transformer/res152_384x384_adamw_lr1e-4.yaml.
Published: MPII val PCKh@0.5 mean 88.215 (official two_stage README).
"""
from prtr_tf.models.keypoint.config import two_stage


def get_config():
    return two_stage('resnet152', 'mpii', (384, 384), lr_backbone=1e-5, lr_steps=(130,),
                     batch_size=128, paper_ap=88.215)
