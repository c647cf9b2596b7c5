"""A tiny end-to-end PRTR for tests and smoke runs (not a published configuration).

resnet_tiny (three stages, named C2..C4; all three are cropped), a 1+2-layer
detector of width 32 with 10 queries, and a 1+2-layer keypoint transformer of width
32 with 20 queries on non-square 6 x 5 crops.
"""
from prtr_tf.e2e_config import end_to_end


def get_config():
    return end_to_end(
        "resnet_tiny", "coco", lr=1e-3, lr_backbone=1e-4, epochs=10, lr_steps=(5,),
        batch_size=2, levels=("C2", "C3", "C4"), crop_size=(6, 5), kpt_hidden_dim=32,
        kpt_pos="sine+learned", kpt_nheads=2, kpt_enc_layers=1, kpt_dec_layers=2,
        kpt_dim_feedforward=64, kpt_num_queries=20, max_persons=3,
        detector_overrides=dict(hidden_dim=32, nheads=2, enc_layers=1, dec_layers=2,
                                dim_feedforward=64, num_queries=10))
