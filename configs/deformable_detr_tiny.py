"""A tiny Deformable DETR person detector on the synthetic set (tests).

Not an official configuration: the tiny ResNet (its C2..C4 as the three backbone
levels, strides 4 / 8 / 16, + the stride-32 extra level), a 1+1-layer deformable
transformer of width 32 (4 heads, 2 points) and 10 queries on the 256x320 synthetic
images; batches padded to one fixed size (the sampling's spatial shapes are static).
"""
from prtr_tf.models.detector.deformable import deformable_detector


def get_config():
    c = deformable_detector(
        "resnet_tiny", num_classes=1, lr=1e-3, lr_backbone=1e-4, epochs=30, lr_steps=(25,),
        batch_size=8,
        model_overrides=dict(hidden_dim=32, nheads=4, enc_layers=1, dec_layers=2,
                             dim_feedforward=64, num_queries=10, dropout=0.0,
                             enc_n_points=2, dec_n_points=2, groups=8),
        root="data/synthetic",
        train_ann="train/person_keypoints.json", train_images="train/images",
        val_ann="val/person_keypoints.json", val_images="val/images",
        synthetic={"train": (16, 1), "val": (40, 2)},
        scales=(224, 240, 256), max_size=320, crop_resize_scales=(224, 256),
        crop_min_size=160, crop_max_size=240, test_size=256, crop_prob=0.0,
        pad_size=(320, 320))
    c.test.top_k = 10
    c.train.steps_per_epoch = 20
    c.train.eval_every_epochs = 10
    c.train.clip_norm = 0.1
    c.train.log_every_steps = 10
    return c
