"""The DETR detector of the two-stage pipeline on any COCO-format keypoint dataset
(configs/custom_keypoints.py is its keypoint model): one object class, every
annotated instance with a labelled keypoint of the keypoint set's categories (an
AP-10K file's 54 species are one "animal" class; its detections carry the first
category's id). DETR ResNet-50, 100 queries, DETR's schedule and augmentation.

    python train.py --config=configs/custom_detector.py --workdir=runs/mine_detector \\
        --config.data.root=/data/mine --config.data.train_ann=annotations/train.json \\
        --config.data.train_images=images/train --config.data.val_ann=annotations/val.json \\
        --config.data.val_images=images/val

Not an official configuration; start from the official DETR
(``--config.train.init_weights``, converted with prtr-convert and the
``detr_r50_person`` config's head) or ImageNet (``--config.train.init_backbone``).
"""
from prtr_tf.data.keypoint_sets import CUSTOM, keypoints_config
from prtr_tf.models.detector.config import detector


def get_config():
    c = detector("resnet50", num_classes=1, root="data/custom",
                 train_ann="annotations/train.json", val_ann="annotations/val.json",
                 train_images="images", val_images="images")
    c.data.dataset = CUSTOM  # the objects: the categories of the file's keypoint set
    c.data.keypoints = keypoints_config()
    return c
