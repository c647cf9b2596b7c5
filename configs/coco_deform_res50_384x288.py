"""COCO, deformable two-stage PRTR, resnet50, 384x288 crops.

Official: two_stage/experiments/coco/deformable_transformer/res50_384x288_adamw_lr1e-4.yaml
(deformable-spec.md §1.9: AdamW lr 1e-4, backbone and the sampling offsets / reference
points at 1e-5, 100 epochs, LR halved at 50 and 70, batch 64 = 16 x 4 GPUs).
Published: COCO val2017 AP with DETR boxes 70.8 (official two_stage README).
"""
from prtr_tf.models.keypoint.deformable import deformable_two_stage


def get_config():
    return deformable_two_stage('resnet50', (384, 288), lr_backbone=1e-5, lr_steps=(50, 70),
                                batch_size=64, epochs=100, paper_ap=70.8)
