"""Two-stage PRTR keypoint Transformer (ResNet-50, 256x192 crops) on any COCO-format
keypoint dataset: persons, animals, hands, other skeletons.

Point it at a folder; nothing else is needed:

    python train.py --config=configs/custom_keypoints.py --workdir=runs/mine \\
        --config.data.root=/data/mine --config.data.train_ann=annotations/train.json \\
        --config.data.train_images=images/train --config.data.val_ann=annotations/val.json \\
        --config.data.val_images=images/val

The keypoint set comes from the annotation file (`prtr_tf.data.keypoint_sets.resolve`): joint
names and skeleton from ``categories[].keypoints`` / ``skeleton``, the model sized to
the number of joints, flip pairs derived from the names, OKS sigmas from the
published tables when the names match one (COCO, CrowdPose, AP-10K, 21-joint hand),
else ``config.data.keypoints.default_sigma``. Every ``config.data.keypoints`` field
replaces what the file gives (e.g. ``--config.data.keypoints.skeleton='((0, 1),)'``).
Every annotated instance of the set's categories is an object (one class). Not an
official configuration: the schedule is the COCO ResNet-50 one; start from ImageNet
with ``--config.train.init_backbone=resnet50-0676ba61.pth``.
"""
from prtr_tf.models.keypoint.config import two_stage


def get_config():
    return two_stage("resnet50", "custom", (256, 192), lr_backbone=1e-5, lr_steps=(120, 140),
                     batch_size=32, root="data/custom", train_ann="annotations/train.json",
                     val_ann="annotations/val.json", train_images="images",
                     val_images="images")
