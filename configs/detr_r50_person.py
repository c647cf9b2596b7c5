"""The paper's two-stage person detector: DETR R50 fine-tuned on COCO persons (spec §8).

Initialised from the official DETR R50 with the class head reduced to person +
no-object (``prtr-convert --config=configs/detr_r50_person.py
--checkpoint=detr-r50-e632da11.pth ...`` does the reduction), then fine-tuned for
10 epochs at LR 5e-6 (backbone 1e-7) on persons with visible keypoints.
Published: person box AP 50.2 on COCO val2017 (the boxes of the two-stage README).
"""
from prtr_tf.models.detector.config import detector


def get_config():
    return detector("resnet50", num_classes=1, lr=5e-6, lr_backbone=1e-7, epochs=10,
                    lr_steps=(), paper_ap=50.2)
