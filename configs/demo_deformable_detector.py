"""A Deformable DETR person detector on the demo's data: the counterpart of
``demo_detector`` (issue 29, `python -m tools.detector_convergence`).

Not an official configuration: ``deformable_detr_tiny``'s model (a 1+2-layer deformable
transformer of width 32, 4 heads, 2 points, 10 queries) on the official strides 8, 16,
32, 64: the tiny ResNet's C3, C4 (its last two maps) + two extra stride-2 levels
(``model.backbone_levels`` 2; deformable_detr_tiny reads C2..C4, strides 4..32, 4x the
tokens: 3060 against 765 at 192 x 192, and its steps took 4.5x DETR's here), loss (sigmoid focal loss, matcher and weights 2 / 5 / 2) and learning rates
(1e-3, backbone and sampling offsets 1e-4) and gradient clipping (0.1), on exactly the
data of ``demo_detector``: the same generated images (``demo_keypoints``' synthetic set),
augmentation and scales (shortest side 112 / 128 / 144, longest <= 192, evaluation at
128), with demo_detector's schedule (12 epochs of 250 steps, batch 8, a 300-step linear
warm-up, the LR / 10 after epoch 10, held-out box AP after every epoch). Batches are
padded to one fixed 192 x 192 (the deformable sampling's spatial shapes are static:
`prtr_tf.models.detector.resize.detector_pad_size`), where demo_detector pads each
batch to its largest image.

The learning rates are deformable_detr_tiny's (a test config), NOT tuned for this set;
demo_detector's were (configs/demo_detector.py).
"""
from prtr_tf.config import load_config



def get_config():
    c = load_config("deformable_detr_tiny")
    demo = load_config("demo_detector")
    c.data.update(demo.data.to_dict())  # the same images, augmentation and sizes
    c.data.pad_size = (192, 192)  # holds max_size both ways (one static shape)
    c.model.backbone_levels = 2  # strides 8, 16 (+ 32, 64): the official model's
    c.train.update({k: demo.train[k] for k in (
        "epochs", "steps_per_epoch", "batch_size", "lr_steps", "lr_factor", "warmup_steps",
        "eval_every_epochs", "log_every_steps", "checkpoint_every_steps", "seed")})
    c.test.batch_size = demo.test.batch_size
    return c
