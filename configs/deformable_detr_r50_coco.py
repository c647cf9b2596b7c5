"""The official Deformable DETR R50 (plain: 4 levels, 300 queries; COCO, 91 sigmoid
classes), for importing its checkpoint as is.

Official: fundamentalvision/Deformable-DETR ``r50_deformable_detr-checkpoint.pth`` (a
training checkpoint; its ``model`` entry is read), 50 epochs, LR 2e-4 (backbone,
sampling offsets and reference points 2e-5), drop at 40. Published: COCO val2017 box AP
44.5. ``prtr-convert --config=configs/deformable_detr_r50_coco.py
--checkpoint=r50_deformable_detr-checkpoint.pth --output=...`` (docs/checkpoints.md).
"""
from prtr_tf.models.detector.deformable import deformable_detector


def get_config():
    return deformable_detector("resnet50", num_classes=91, paper_ap=44.5,
                               category_ids=(), min_keypoints=0,
                               train_ann="annotations/instances_train2017.json",
                               val_ann="annotations/instances_val2017.json")
