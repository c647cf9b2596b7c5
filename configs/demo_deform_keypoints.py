"""The deformable keypoint Transformer on the demo's data: the counterpart of
``demo_keypoints`` (issue 28, convergence at equal training minutes:
`python -m tools.detector_convergence --detectors=demo_keypoints,demo_deform_keypoints`).

Not an official configuration: ``deform_tiny``'s model (a 2+2-layer deformable
transformer of width 64, 4 heads, 2 sampling points per level, 20 queries on 128x96
crops) on the official strides 8, 16, 32, 64 (the tiny ResNet's C3, C4 and two extra
stride-2 levels: ``model.backbone_levels`` 2), with everything else of
``demo_keypoints``: the same generated images, augmentation (box shift included),
schedule (14 epochs of 250 steps, batch 16, a 300-step warm-up, the LR / 10 for the
last 2 epochs), learning rates (5e-4; the backbone, and with it the sampling offsets
and reference points as in the official recipe, 1e-3) and gradient clipping (1.0).
Only the architecture differs.
"""
from prtr_tf.config import load_config



def get_config():
    c = load_config("demo_keypoints")
    c.model = load_config("deform_tiny").model
    # The official strides 8, 16, 32, 64: the tiny ResNet's last two maps (C3, C4) + two
    # extra stride-2 levels (deform_tiny reads C2..C4, strides 4..32: 1020 tokens per
    # 128x96 crop against 256; its steps ran at 0.3 per second against the vanilla
    # model's 3 here), as configs/demo_deformable_detector.py.
    c.model.backbone_levels = 2
    return c
