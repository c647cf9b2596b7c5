"""A tiny deformable two-stage model for tests and smoke runs (not an official
configuration).

The resnet_tiny backbone of configs/tiny.py (its levels C2..C4, strides 4, 8, 16, plus
the extra stride-2 conv level), a 2+2-layer deformable transformer of width 64 (4 heads,
2 sampling points per level) and 20 queries on 128x96 crops.
"""
from prtr_tf.models.keypoint.deformable import deformable_two_stage


def get_config():
    return deformable_two_stage("resnet_tiny", (128, 96), lr_backbone=1e-4, lr_steps=(40,),
                                batch_size=8, epochs=50, lr=1e-3, enc_n_points=2,
                                dec_n_points=2,
                                model_overrides=dict(hidden_dim=64, nheads=4, enc_layers=2,
                                                     dec_layers=2, dim_feedforward=128,
                                                     num_queries=20))
