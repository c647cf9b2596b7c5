"""A tiny two-stage model for tests and smoke runs (not an official configuration).

A 4-block bottleneck ResNet of width 16 (C5 = 512 channels), a 2+2-layer
transformer of width 64 and 20 queries on 128x96 crops: the same code paths as the
official models at a fraction of the cost.
"""
from prtr_tf.models.keypoint.config import two_stage


def get_config():
    return two_stage("resnet_tiny", "coco", (128, 96), lr_backbone=1e-4, lr_steps=(40,),
                     batch_size=8, epochs=50, lr=1e-3,
                     model_overrides=dict(hidden_dim=64, nheads=4, enc_layers=2, dec_layers=2,
                                          dim_feedforward=128, num_queries=20))
