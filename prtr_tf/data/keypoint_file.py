"""The keypoint set a COCO-format annotation file declares: ``categories[].keypoints``
(the joint names, hence their number) and ``categories[].skeleton`` (edges between
1-based joint indices, as in COCO's own files).

Several categories may share one keypoint list (AP-10K: 54 species, one set): they
are one object class here, and their ids are kept. Categories with different
keypoint lists are an error naming them. A skeleton that does not fit the joints
(an index outside 1..J, an entry that is not a pair) is reported with a warning
naming the file and the field and is not used: nothing is drawn rather than
something wrong (``config.data.keypoints.skeleton`` replaces it). A skeleton that
holds index 0 and fits 0..J-1 is read as 0-based, with a warning.
"""
import os
import warnings

from prtr_tf.data.jsonfile import read_json


class KeypointSetWarning(UserWarning):
    """A keypoint set fact that was replaced or disabled (skeleton, flip pairs, sigmas)."""


def _edges(raw):
    """The skeleton as a list of (int, int), or None when an entry is not a pair of
    integers."""
    if not isinstance(raw, (list, tuple)):
        return None
    out = []
    for edge in raw:
        if (not isinstance(edge, (list, tuple)) or len(edge) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in edge)):
            return None
        out.append((int(edge[0]), int(edge[1])))
    return out


def skeleton_from_file(raw, num_joints, where):
    """0-based skeleton edges from a file's 1-based ``skeleton`` (see the module
    docstring); ``()`` with a `KeypointSetWarning` when it does not fit."""
    if raw is None or raw == []:
        return ()
    edges = _edges(raw)
    hint = ("it is not used (no skeleton is drawn); give 0-based edges with "
            "--config.data.keypoints.skeleton='((0, 1), (1, 2))'")
    if edges is None:
        warnings.warn(f"{where}.skeleton is not a list of [joint, joint] integer pairs: "
                      f"{hint}", KeypointSetWarning, stacklevel=3)
        return ()
    values = [v for e in edges for v in e]
    if not values:
        return ()
    low, high = min(values), max(values)
    if low >= 1 and high <= num_joints:
        return tuple((a - 1, b - 1) for a, b in edges)
    if low == 0 and high <= num_joints - 1:
        warnings.warn(f"{where}.skeleton holds joint index 0: read as 0-based (COCO "
                      "skeletons are 1-based)", KeypointSetWarning, stacklevel=3)
        return tuple(edges)
    warnings.warn(f"{where}.skeleton holds joint indices {low}..{high}, but the category "
                  f"has {num_joints} keypoints (1-based indices 1..{num_joints}): {hint}",
                  KeypointSetWarning, stacklevel=3)
    return ()


def read_keypoint_categories(path):
    """The keypoint set of a COCO-format file: dict(joints (names), skeleton (0-based
    edges, possibly ``()``), category_ids, category_names, file). ValueError when no
    category has ``keypoints`` or categories disagree."""
    data = read_json(path, "annotation file")
    name = os.fspath(path)
    cats = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(cats, list):
        raise ValueError(f"{name}: no 'categories' list (a COCO keypoint file lists its "
                         "categories with their 'keypoints' names)")
    with_kp = [(i, c) for i, c in enumerate(cats)
               if isinstance(c, dict) and isinstance(c.get("keypoints"), list) and c["keypoints"]]
    if not with_kp:
        raise ValueError(f"{name}: no entry of 'categories' has a 'keypoints' list of joint "
                         "names; give them with --config.data.keypoints.joints")
    first_index, first = with_kp[0]
    joints = tuple(str(n) for n in first["keypoints"])
    for i, c in with_kp[1:]:
        if tuple(str(n) for n in c["keypoints"]) != joints:
            raise ValueError(
                f"{name}: categories[{first_index}] ({first.get('name')!r}) and "
                f"categories[{i}] ({c.get('name')!r}) have different 'keypoints' lists; one "
                "keypoint set per file is supported (split the file per set)")
    if len(set(joints)) != len(joints):
        dup = sorted({n for n in joints if joints.count(n) > 1})
        raise ValueError(f"{name}: categories[{first_index}].keypoints names {dup} twice")
    where = f"{name}: categories[{first_index}]"
    skeleton = skeleton_from_file(first.get("skeleton"), len(joints), where)
    return dict(joints=joints, skeleton=skeleton, file=name,
                category_ids=tuple(int(c["id"]) for _, c in with_kp if "id" in c),
                category_names=tuple(str(c.get("name", "")) for _, c in with_kp))
