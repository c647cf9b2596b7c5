"""The tiny model on the synthetic multi-person set: the embedded default of `make demo`.

Data are generated on first use into ``data/synthetic`` (COCO format, 17 joints;
`python -m prtr_tf.data.synthetic`). Not an official configuration.

Sizes are chosen for a few CPU minutes: 16 training images (~40 persons) seen
600 times in mild augmentation, and 40 held-out images. DETR-style set prediction
converges slowly (the official recipe is 200 epochs of COCO on 4 GPUs): in this
budget the model learns the training persons well (AP on the training split)
while its AP on held-out images stays low; both are reported by the demo.
"""
from prtr_tf.models.keypoint.config import two_stage


def get_config():
    c = two_stage("resnet_tiny", "coco", (128, 96), lr_backbone=1e-3, lr_steps=(25,),
                  batch_size=16, epochs=30, lr=1e-3,
                  model_overrides=dict(hidden_dim=64, nheads=4, enc_layers=2, dec_layers=2,
                                       dim_feedforward=128, num_queries=20),
                  root="data/synthetic",
                  train_ann="train/person_keypoints.json", train_images="train/images",
                  val_ann="val/person_keypoints.json", val_images="val/images",
                  synthetic={"train": (16, 1), "val": (40, 2)},
                  # Mild augmentation; no flip: the synthetic limbs are colour-coded
                  # left/right, so a mirrored figure would contradict its labels' colours.
                  scale_factor=0.15, rotation_factor=10.0, rotation_prob=0.3, flip=False)
    c.train.steps_per_epoch = 20
    c.train.eval_every_epochs = 10
    c.train.clip_norm = 1.0
    c.train.log_every_steps = 10
    c.test.batch_size = 32
    return c
