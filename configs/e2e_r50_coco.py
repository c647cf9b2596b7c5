"""End-to-end PRTR, ResNet-50, COCO (spec §8; every default is explained in
`prtr_tf.models.end_to_end.config`).

Not one of the official release's configurations (its end-to-end code is an
illustrative notebook): DETR R50 person detector (initialise it from the official
DETR R50 with ``prtr-convert``), C3 + C4 + C5 STN crops of 10 x 10
(3584 channels), a 6+6-layer keypoint transformer of width 256, trained with AdamW
(LR 1e-4, backbone 1e-5, halved at epochs 25 and 60) on DETR's augmentation at the
paper's scales (shortest side 760-1024, longest <= 1400).
"""
from prtr_tf.models.end_to_end.config import end_to_end


def get_config():
    return end_to_end("resnet50", "coco")
