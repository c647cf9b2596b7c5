"""The DETR person detector of `make demo`: the tiny detector trained to generalise.

Not an official configuration: ``synthetic_detector_tiny``'s model (the tiny ResNet,
a 2+2-layer Transformer of width 64, 10 queries) on the demo's synthetic set (the
same images as ``demo_keypoints``), with a linear LR warm-up, evaluated with COCO
box AP on the held-out images.
"""
from prtr_tf.detector.config import detector

# The same images as configs/demo_keypoints.py (keep the two equal).
DEMO_DATA = {"train": (2000, 1), "val": (100, 2)}


def get_config():
    c = detector("resnet_tiny", num_classes=1, lr=1e-3, lr_backbone=1e-3, epochs=3,
                 lr_steps=(100,), batch_size=8,
                 model_overrides=dict(hidden_dim=64, nheads=4, enc_layers=2, dec_layers=2,
                                      dim_feedforward=128, num_queries=10, dropout=0.0),
                 root="runs/demo/data",
                 train_ann="train/person_keypoints.json", train_images="train/images",
                 val_ann="val/person_keypoints.json", val_images="val/images",
                 synthetic=dict(DEMO_DATA),
                 scales=(224, 240, 256, 272, 288), max_size=384, crop_resize_scales=(224, 256),
                 crop_min_size=160, crop_max_size=240, test_size=256,
                 crop_prob=0.0)  # random crops of these small images mostly cut persons
    c.train.steps_per_epoch = 250
    c.train.warmup_steps = 300
    c.train.eval_every_epochs = 1
    c.train.clip_norm = 1.0
    c.train.log_every_steps = 50
    return c
