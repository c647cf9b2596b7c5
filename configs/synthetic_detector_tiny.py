"""A tiny DETR person detector on the synthetic set (tests and `make demo`).

Not an official configuration: the tiny ResNet (stride 16), a 2+2-layer
transformer of width 64 and 10 queries on the 256x320 synthetic images (one to
four persons each), DETR's losses, matcher and augmentation at small scales.
"""
from prtr_tf.models.detector.config import detector


def get_config():
    c = detector("resnet_tiny", num_classes=1, lr=1e-3, lr_backbone=1e-3, epochs=30,
                 lr_steps=(25,), batch_size=8,
                 model_overrides=dict(hidden_dim=64, nheads=4, enc_layers=2, dec_layers=2,
                                      dim_feedforward=128, num_queries=10, dropout=0.0),
                 root="data/synthetic",
                 train_ann="train/person_keypoints.json", train_images="train/images",
                 val_ann="val/person_keypoints.json", val_images="val/images",
                 synthetic={"train": (16, 1), "val": (40, 2)},
                 scales=(224, 240, 256, 272, 288), max_size=384, crop_resize_scales=(224, 256),
                 crop_min_size=160, crop_max_size=240, test_size=256,
                 crop_prob=0.0)  # random crops of these small images mostly cut persons

    c.train.steps_per_epoch = 20
    c.train.eval_every_epochs = 10
    c.train.clip_norm = 1.0
    c.train.log_every_steps = 10
    return c
