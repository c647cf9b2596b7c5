"""Dataset facts: the keypoint sets (joint names, skeleton, flip pairs, OKS sigmas).

Everything that knows which joints a dataset has reads it here: the configs size
the models from ``joints``, the data pipelines and the flip test mirror with
``flip_pairs`` (`flip_permutation`), OKS (evaluation, OKS-NMS, serving) uses
``sigmas`` (None where a set has none: no OKS-NMS), and the drawing uses
``skeleton``. Joint indices are 0-based.
"""
import numpy as np

COCO_JOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
               "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
                 (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
                 (3, 5), (4, 6))
# Standard COCO keypoint sigmas (pycocotools ``COCOeval.Params.kpt_oks_sigmas``).
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                        .87, .87, .89, .89]) / 10.0
MPII_JOINTS = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
               "pelvis", "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow",
               "right_shoulder", "left_shoulder", "left_elbow", "left_wrist")
MPII_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
MPII_SKELETON = ((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
                 (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15))

DATASETS = {
    "coco": dict(joints=COCO_JOINTS, flip_pairs=COCO_FLIP_PAIRS, skeleton=COCO_SKELETON,
                 sigmas=COCO_SIGMAS),
    "mpii": dict(joints=MPII_JOINTS, flip_pairs=MPII_FLIP_PAIRS, skeleton=MPII_SKELETON,
                 sigmas=None),  # MPII is scored by PCKh, not OKS
}


def keypoint_set(name):
    """The facts of dataset ``name`` (a key of `DATASETS`); a clear error otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {tuple(DATASETS)}")
    return DATASETS[name]


def of_config(config):
    """The keypoint set of a config (``config.data.dataset``)."""
    return keypoint_set(config.data.dataset)


def oks_sigmas(config):
    """The OKS sigmas (J,) of a config's keypoint set, or None when it has none."""
    sigmas = of_config(config)["sigmas"]
    return None if sigmas is None else np.asarray(sigmas, np.float64)


def flip_permutation(num_joints, flip_pairs):
    """The joint order of a mirrored pose: left and right of every pair swapped."""
    perm = list(range(num_joints))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm
