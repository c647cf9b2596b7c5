"""MPII PCKh@0.5, as HRNet/PRTR ``dataset/mpii.py::evaluate`` (spec §5.7).

A joint is correct when ||pred + 1 - gt|| <= 0.5 * head_size, with predictions in
0-based pixels (+1 back to MPII's 1-based MATLAB coordinates) and head_size =
SC_BIAS (0.6) x the diagonal of the person's head box. Only annotated joints count.
The table averages left and right, and its Mean is over all joints but pelvis and
thorax, weighted by joint counts (i.e. correct / annotated over those 14 joints).

Head boxes are not in the HRNet JSON layout: they come from the official
``gt_valid.mat`` (`load_gt_mat`). Without it, `head_size_from_annotation` gives an
**approximation** (see there); numbers computed with it are not the official PCKh.
"""
import collections
import os
import warnings

import numpy as np

from prtr_tf.data.jsonfile import read_json
from prtr_tf.data.keypoint_sets import MPII_JOINTS

SC_BIAS = 0.6  # head size = SC_BIAS x head-box diagonal (official MPII / HRNet)
# Approximate head size = HEAD_SEGMENT_FACTOR x ||head_top - upper_neck||. PCKh is defined
# on the head segment length (Andriluka et al., CVPR 2014); the official code estimates
# that length as 0.6 x the head-box diagonal, so without boxes we use the segment itself.
HEAD_SEGMENT_FACTOR = 1.0

NUM_JOINTS = len(MPII_JOINTS)
_J = {name: i for i, name in enumerate(MPII_JOINTS)}
EXCLUDED = (_J["pelvis"], _J["thorax"])  # left out of the Mean, as HRNet's mask[6:8]
# Table 3 columns: (name, joints averaged), HRNet's name_value order.
GROUPS = (
    ("Head", ("head_top",)),
    ("Shoulder", ("left_shoulder", "right_shoulder")),
    ("Elbow", ("left_elbow", "right_elbow")),
    ("Wrist", ("left_wrist", "right_wrist")),
    ("Hip", ("left_hip", "right_hip")),
    ("Knee", ("left_knee", "right_knee")),
    ("Ankle", ("left_ankle", "right_ankle")),
)
# Short names of gt_valid.mat's ``dataset_joints`` that HRNet looks up, per joint index.
MAT_JOINT_NAMES = {
    "head": "head_top", "lsho": "left_shoulder", "lelb": "left_elbow", "lwri": "left_wrist",
    "lhip": "left_hip", "lkne": "left_knee", "lank": "left_ankle", "rsho": "right_shoulder",
    "relb": "right_elbow", "rwri": "right_wrist", "rkne": "right_knee", "rank": "right_ankle",
    "rhip": "right_hip",
}


def _array(value, shape, name):
    arr = np.asarray(value, np.float64)
    if arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    return arr


def head_sizes_from_boxes(headboxes):
    """(N, 2, 2) head boxes [[x1, y1], [x2, y2]] -> (N,) head sizes SC_BIAS x diagonal."""
    boxes = _array(headboxes, (None, 2, 2), "headboxes")
    return SC_BIAS * np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=-1)


def head_size_from_annotation(gt_joints, joints_vis=None, factor=HEAD_SEGMENT_FACTOR):
    """APPROXIMATE head sizes (N,) when no head box is available.

    head_size = ``factor`` x ||head_top - upper_neck|| (joints 9 and 8). This is the
    head-segment length PCKh is defined on, which the official 0.6 x box diagonal only
    estimates, so results differ (slightly) from the official PCKh. Persons whose
    head_top or upper_neck is not annotated have no head size: a ValueError names them.
    """
    joints = _array(gt_joints, (None, NUM_JOINTS, 2), "gt_joints")
    top, neck = _J["head_top"], _J["upper_neck"]
    if joints_vis is not None:
        vis = _array(joints_vis, (len(joints), NUM_JOINTS), "joints_vis") > 0
        bad = np.where(~(vis[:, top] & vis[:, neck]))[0]
        if bad.size:
            raise ValueError(f"persons {bad[:10].tolist()} lack an annotated head_top / "
                             "upper_neck: no head size can be approximated; pass head boxes")
    return factor * np.linalg.norm(joints[:, top] - joints[:, neck], axis=-1)


def load_annotations(path_or_list):
    """HRNet-layout MPII JSON -> dict(gt_joints (N,16,2) 1-based, joints_vis (N,16), images)."""
    if isinstance(path_or_list, (str, os.PathLike)):
        name = os.fspath(path_or_list)
        annotations = read_json(path_or_list, "MPII annotation file")
    else:
        name, annotations = "<annotations>", path_or_list
    joints, vis, images = [], [], []
    for i, a in enumerate(annotations):
        for key in ("joints", "joints_vis"):
            if key not in a:
                raise ValueError(f"{name}: annotation #{i} has no field {key!r}")
        joints.append(_array(a["joints"], (NUM_JOINTS, 2), f"{name}: annotation #{i} 'joints'"))
        vis.append(_array(a["joints_vis"], (NUM_JOINTS,), f"{name}: annotation #{i} 'joints_vis'"))
        images.append(a.get("image"))
    return {"gt_joints": np.reshape(joints, (-1, NUM_JOINTS, 2)),
            "joints_vis": np.reshape(vis, (-1, NUM_JOINTS)), "images": images}


def _mat_names(dataset_joints):
    # loadmat gives a (1, 16) object array of 1-element string arrays (a MATLAB cell).
    return [str(np.asarray(x).ravel()[0]) if np.asarray(x).size else ""
            for x in np.asarray(dataset_joints, dtype=object).ravel()]


def load_gt_mat(path):
    """The official ``gt_valid.mat`` -> dict(gt_joints, joints_vis, headboxes, head_sizes).

    Fields read: pos_gt_src (16, 2, N), jnt_missing (16, N), headboxes_src (2, 2, N) and,
    when present, dataset_joints (checked to be in the `MPII_JOINTS` order, which HRNet
    assumes). Returns gt_joints (N, 16, 2) 1-based, joints_vis = 1 - jnt_missing (N, 16),
    headboxes (N, 2, 2), head_sizes (N,) = SC_BIAS x diagonal.
    """
    from scipy.io import loadmat

    name = os.fspath(path)
    mat = loadmat(name)
    for key in ("pos_gt_src", "jnt_missing", "headboxes_src"):
        if key not in mat:
            raise ValueError(f"{name}: no field {key!r} (fields: "
                             f"{sorted(k for k in mat if not k.startswith('__'))})")
    if "dataset_joints" in mat:
        names = _mat_names(mat["dataset_joints"])
        for short, joint in MAT_JOINT_NAMES.items():
            if short not in names or names.index(short) != _J[joint]:
                raise ValueError(f"{name}: dataset_joints {names} does not put {short!r} at "
                                 f"index {_J[joint]} ({joint}), the MPII_JOINTS order")
    pos = np.asarray(mat["pos_gt_src"], np.float64)
    missing = np.asarray(mat["jnt_missing"], np.float64)
    boxes = np.asarray(mat["headboxes_src"], np.float64)
    if pos.ndim != 3 or pos.shape[:2] != (NUM_JOINTS, 2):
        raise ValueError(f"{name}: pos_gt_src must be (16, 2, N), got {pos.shape}")
    n = pos.shape[2]
    if missing.shape != (NUM_JOINTS, n) or boxes.shape != (2, 2, n):
        raise ValueError(f"{name}: jnt_missing {missing.shape} / headboxes_src {boxes.shape} "
                         f"do not match pos_gt_src {pos.shape} ((16, N) / (2, 2, N), N={n})")
    headboxes = boxes.transpose(2, 0, 1)
    return {"gt_joints": pos.transpose(2, 0, 1), "joints_vis": 1.0 - missing.T,
            "headboxes": headboxes, "head_sizes": head_sizes_from_boxes(headboxes)}


def _scaled_errors(preds, gt_joints, joints_vis, head_sizes):
    preds = np.asarray(preds, np.float64)
    if preds.ndim != 3 or preds.shape[1] != NUM_JOINTS or preds.shape[2] not in (2, 3):
        raise ValueError(f"preds must be (N, 16, 2) or (N, 16, 3), got {preds.shape}")
    n = len(preds)
    gt = _array(gt_joints, (n, NUM_JOINTS, 2), "gt_joints (same N as preds)")
    vis = _array(joints_vis, (n, NUM_JOINTS), "joints_vis (same N as preds)") > 0
    sizes = _array(head_sizes, (n,), "head_sizes (same N as preds)")
    bad = np.where(~(np.isfinite(sizes) & (sizes > 0)) & vis.any(1))[0]
    if bad.size:
        raise ValueError(f"head_sizes must be finite and > 0; persons {bad[:10].tolist()} "
                         f"have {sizes[bad[:10]].tolist()}")
    err = np.linalg.norm(preds[..., :2] + 1.0 - gt, axis=-1)  # 0-based -> 1-based
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(vis, err / sizes[:, None], np.inf)
    return scaled, vis


def pckh_per_joint(preds, gt_joints, joints_vis, head_sizes, threshold=0.5):
    """Per-joint PCKh in % (16,) and annotated-joint counts (16,).

    Args:
      preds: (N, 16, 2|3) predictions in 0-based image pixels (a score column is ignored).
      gt_joints: (N, 16, 2) ground truth in 1-based MPII coordinates.
      joints_vis: (N, 16), > 0 where the joint is annotated (1 - jnt_missing).
      head_sizes: (N,) normalisers, already x SC_BIAS (`head_sizes_from_boxes`).

    A joint never annotated gets NaN.
    """
    scaled, vis = _scaled_errors(preds, gt_joints, joints_vis, head_sizes)
    count = vis.sum(axis=0)
    correct = ((scaled <= threshold) & vis).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pck = np.where(count > 0, 100.0 * correct / np.maximum(count, 1), np.nan)
    return pck, count


def _mean(pck, count):
    weights = count.astype(np.float64)
    weights[list(EXCLUDED)] = 0.0
    weights[np.isnan(pck)] = 0.0
    if weights.sum() == 0:
        return float("nan")
    return float(np.sum(np.nan_to_num(pck) * weights) / weights.sum())


def pckh(preds, gt_joints, joints_vis, head_sizes, threshold=0.5):
    """PCKh summary in the paper's Table 3 layout.

    Returns an OrderedDict: Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle (left/right
    averaged), Mean (all joints but pelvis/thorax, weighted by counts) at ``threshold``,
    and Mean@0.1 at 0.1 (HRNet's logged "Mean@0.1" uses pckAll[11], i.e. 0.11).
    Arguments as `pckh_per_joint`.
    """
    pck, count = pckh_per_joint(preds, gt_joints, joints_vis, head_sizes, threshold)
    out = collections.OrderedDict(
        (name, float(np.mean([pck[_J[j]] for j in joints]))) for name, joints in GROUPS)
    out["Mean"] = _mean(pck, count)
    out["Mean@0.1"] = _mean(*pckh_per_joint(preds, gt_joints, joints_vis, head_sizes, 0.1))
    return out


def evaluate_mpii(preds, annotations, gt_mat=None, threshold=0.5):
    """PCKh of ``preds`` (N, 16, 2|3; 0-based, in annotation order) against MPII GT.

    With ``gt_mat`` (official ``gt_valid.mat``) joints, visibility and head boxes come
    from it. Otherwise from ``annotations`` (HRNet JSON path or list) with the
    approximate `head_size_from_annotation`, and a warning says so.
    """
    if gt_mat is not None:
        gt = load_gt_mat(gt_mat)
        sizes = gt["head_sizes"]
    else:
        if annotations is None:
            raise ValueError("evaluate_mpii needs annotations (HRNet JSON) or gt_mat")
        gt = load_annotations(annotations)
        warnings.warn("no gt_valid.mat head boxes: PCKh uses the approximate head size "
                      f"{HEAD_SEGMENT_FACTOR} x ||head_top - upper_neck||, not the official "
                      "0.6 x head-box diagonal", stacklevel=2)
        sizes = head_size_from_annotation(gt["gt_joints"], gt["joints_vis"])
    return pckh(preds, gt["gt_joints"], gt["joints_vis"], sizes, threshold)


def format_table(name_value, name="PRTR"):
    """Markdown table of a `pckh` result (values already in %), one decimal."""
    keys = list(name_value)
    return "\n".join([
        "| Model | " + " | ".join(keys) + " |",
        "|---" * (len(keys) + 1) + "|",
        f"| {name} | " + " | ".join(f"{name_value[k]:.1f}" for k in keys) + " |",
    ])
