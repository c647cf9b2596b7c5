"""A person-only Deformable DETR R50, derived from the official 91-class checkpoint.

``prtr-convert --config=configs/deformable_detr_r50_person.py
--checkpoint=r50_deformable_detr-checkpoint.pth --output=...`` keeps the person row
(``model.person_row``, COCO id 1) of the classifier. With sigmoid classes (no softmax,
no no-object column) its person scores and boxes are exactly the 91-class model's
(tests/detector/test_deformable_detr.py). Fine-tuning on persons: LR 2e-4 / 2e-5 as the
official schedule (not measured here).
"""
from prtr_tf.models.detector.deformable import deformable_detector


def get_config():
    return deformable_detector("resnet50", num_classes=1)
