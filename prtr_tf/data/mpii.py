"""MPII reader: the HRNet/PRTR JSON layout -> per-person records (spec §5.1).

The file is a list of {image, center [x, y], scale, joints [[x, y] x 16], joints_vis [16]}
in 1-based MATLAB coordinates. As in HRNet ``dataset/mpii.py``: c_y += 15 s, s *= 1.25
(scale = (s, s)), then c -= 1 and joints -= 1 (to 0-based). Records have the fields of
`prtr_tf.data.coco` with ``box_score`` 1, ``ann_id`` the index in the list, and
``image_id`` the digits of the image name (MPII names are numbers) or the index.
"""
import os

import numpy as np

from prtr_tf.data.jsonfile import read_json
from prtr_tf.data.skips import bad_sample

NUM_JOINTS = 16


def _finite(value, shape):
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        return None
    if arr.shape != shape or not np.isfinite(arr).all():
        return None
    return arr


def load_mpii(ann_file, image_dir, num_joints=NUM_JOINTS, skip_bad=True, skip_counter=None):
    """Records from an MPII annotation JSON (path or loaded list).

    Malformed entries (missing field, wrong number of joints, non-finite values) are
    counted skips with a warning naming the file, index and field, or a ValueError
    with ``skip_bad=False``.
    """
    if isinstance(ann_file, list):
        annotations, name = ann_file, "<in-memory JSON>"
    else:
        annotations, name = read_json(ann_file, "annotation file"), os.fspath(ann_file)
    records = []
    for index, a in enumerate(annotations):
        where = f"{name}: annotation #{index}"
        missing = [k for k in ("image", "center", "scale", "joints", "joints_vis") if k not in a]
        if missing:
            bad_sample(f"{where}: missing field {missing[0]!r}", skip_bad, skip_counter)
            continue
        center = _finite(a["center"], (2,))
        scale = _finite(a["scale"], ())
        joints = _finite(a["joints"], (num_joints, 2))
        vis = _finite(a["joints_vis"], (num_joints,))
        for field, value, shape in (("center", center, "2"), ("scale", scale, "1"),
                                    ("joints", joints, f"{num_joints}x2"),
                                    ("joints_vis", vis, str(num_joints))):
            if value is None:
                bad_sample(f"{where} ({a['image']}): field {field!r} is not {shape} finite "
                           "number(s)", skip_bad, skip_counter)
                break
        else:
            s = float(scale)
            c = center.copy()
            if c[0] != -1:
                c[1] = c[1] + 15 * s
                s = s * 1.25
            c = c - 1
            joint_arr = np.zeros((num_joints, 3), np.float32)
            joint_arr[:, :2] = joints - 1
            joint_arr[:, 2] = np.minimum(vis, 1)
            stem = os.path.splitext(os.path.basename(a["image"]))[0]
            records.append(dict(
                image_path=os.path.join(image_dir, a["image"]),
                image_id=int(stem) if stem.isdigit() else index,
                center=c.astype(np.float32), scale=np.array([s, s], np.float32),
                joints=joint_arr, box_score=1.0, ann_id=index))
    return records

