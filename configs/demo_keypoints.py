"""The keypoint Transformer of `make demo`: the tiny model trained to generalise.

Not an official configuration. The tiny ResNet and a 2+2-layer Transformer of width
64 on 128x96 crops, as ``synthetic_tiny``, but trained on a synthetic set large
enough that the model cannot memorise it (``data.synthetic``), with a linear LR
warm-up, and evaluated on held-out images. Data are generated on first use into
``data.root`` (the demo points it into its workdir). See the README's "The demo"
for the measured learning curve.
"""
from prtr_tf.keypoint.config import two_stage

DEMO_DATA = {"train": (2000, 1), "val": (100, 2)}


def get_config():
    c = two_stage("resnet_tiny", "coco", (128, 96), lr_backbone=5e-4, lr_steps=(100,),
                  batch_size=16, epochs=12, lr=5e-4,
                  model_overrides=dict(hidden_dim=64, nheads=4, enc_layers=2, dec_layers=2,
                                       dim_feedforward=128, num_queries=20),
                  root="runs/demo/data",
                  train_ann="train/person_keypoints.json", train_images="train/images",
                  val_ann="val/person_keypoints.json", val_images="val/images",
                  synthetic=dict(DEMO_DATA),
                  # No flip: the synthetic limbs are colour-coded left/right.
                  scale_factor=0.15, rotation_factor=10.0, rotation_prob=0.3, flip=False)
    # Not in the paper: the positional encoding also added to the tokens before the
    # encoder (prtr_tf.keypoint.model); measured to leave the mean pose sooner.
    c.model.pos_in_tokens = True
    c.train.steps_per_epoch = 250
    c.train.warmup_steps = 300
    c.train.eval_every_epochs = 1
    c.train.clip_norm = 1.0
    c.train.log_every_steps = 50
    c.test.batch_size = 64
    c.test.flip_test = False
    return c
