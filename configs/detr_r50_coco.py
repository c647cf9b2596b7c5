"""The official DETR R50 (COCO, 91 classes + no-object), for importing its checkpoint as is.

Official: facebookresearch/detr, ``detr-r50-e632da11.pth`` (500 epochs, lr 1e-4,
backbone 1e-5, lr drop at 400). Published: COCO val2017 box AP 42.0.
"""
from prtr_tf.models.detector.config import detector


def get_config():
    return detector("resnet50", num_classes=91, epochs=500, lr_steps=(400,), paper_ap=42.0,
                    category_ids=(), min_keypoints=0,
                    train_ann="annotations/instances_train2017.json",
                    val_ann="annotations/instances_val2017.json")
