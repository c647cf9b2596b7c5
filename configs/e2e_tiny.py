"""A tiny end-to-end PRTR on the synthetic set, for tests and smoke runs (not a
published configuration).

resnet_tiny (three stages C2..C4, strides 4..16; all three are cropped), the tiny
detector of ``synthetic_detector_tiny`` (a 2+2-layer DETR of width 64 with 10
queries) and a 2+2-layer keypoint transformer of width 64 with 20 queries on
non-square 8 x 6 crops (the synthetic persons are upright, taller than wide).
Data as ``synthetic_detector_tiny`` (generated on first use into data/synthetic,
DETR's augmentation at small scales); no flip: the synthetic limbs are
colour-coded left/right, so a mirrored figure would contradict its labels' colours.
"""
from prtr_tf.models.end_to_end.config import end_to_end


def get_config():
    c = end_to_end(
        "resnet_tiny", "coco", lr=1e-3, lr_backbone=1e-3, epochs=30, lr_steps=(25,),
        batch_size=8, levels=("C2", "C3", "C4"), crop_size=(8, 6), kpt_hidden_dim=64,
        kpt_pos="sine+learned", kpt_nheads=4, kpt_enc_layers=2, kpt_dec_layers=2,
        kpt_dim_feedforward=128, kpt_num_queries=20, max_persons=5,
        detector_overrides=dict(hidden_dim=64, nheads=4, enc_layers=2, dec_layers=2,
                                dim_feedforward=128, num_queries=10, dropout=0.0),
        data_overrides=dict(
            root="data/synthetic",
            train_ann="train/person_keypoints.json", train_images="train/images",
            val_ann="val/person_keypoints.json", val_images="val/images",
            synthetic={"train": (16, 1), "val": (40, 2)},
            scales=(224, 240, 256, 272, 288), max_size=384, crop_resize_scales=(224, 256),
            crop_min_size=160, crop_max_size=240, test_size=256, pad_multiple=16,
            flip_prob=0.0, crop_prob=0.0))
    c.train.steps_per_epoch = 20
    c.train.eval_every_epochs = 10
    c.train.clip_norm = 1.0
    c.train.log_every_steps = 10
    return c
