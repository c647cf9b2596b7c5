"""End-to-end PRTR (ResNet-50, C3+C4+C5 crops) on any COCO-format keypoint dataset:
the keypoint set (joints, skeleton, flip pairs, sigmas) from the annotation file as
in configs/custom_keypoints.py, the detector on every annotated instance of the set's
categories (one object class).

    python train.py --config=configs/custom_e2e.py --workdir=runs/mine_e2e \\
        --config.data.root=/data/mine --config.data.train_ann=annotations/train.json \\
        --config.data.train_images=images/train --config.data.val_ann=annotations/val.json \\
        --config.data.val_images=images/val

Not a published configuration: the settings of e2e_r50_coco.
"""
from prtr_tf.models.end_to_end.config import end_to_end


def get_config():
    return end_to_end("resnet50", "custom", data_overrides=dict(
        root="data/custom", train_ann="annotations/train.json",
        val_ann="annotations/val.json", train_images="images", val_images="images"))
