"""Dataset facts: the keypoint sets (joint names, skeleton, flip pairs, OKS sigmas).

Everything that knows which joints a dataset has reads it here: the configs size
the models from ``joints``, the data pipelines and the flip test mirror with
``flip_pairs`` (`flip_permutation`, `flip_pairs_of`), OKS (evaluation, OKS-NMS,
serving) uses ``sigmas`` (None where a set has none: no OKS-NMS), and the drawing
uses ``skeleton``. Joint indices are 0-based.

Every keypoint set is made by `make_keypoint_set` from its joint names: flip pairs
are derived from the names (`prtr_tf.data.joint_names`) unless given, and sigmas
come from the published tables of `KNOWN_SETS` when the names are one of them
(COCO, CrowdPose, AP-10K, the 21-joint hand), else from a stated default. The
built-in datasets (`DATASETS`: COCO, MPII) are such sets; a config with
``data.dataset = "custom"`` takes its set from its COCO-format annotation file
(`resolve`, `prtr_tf.data.keypoint_file`), with ``config.data.keypoints`` fields
replacing what the file lacks or gets wrong.
"""
import os
import warnings

import numpy as np

from prtr_tf.data.joint_names import derive_flip_pairs, side_and_key, unpaired_sided, words
from prtr_tf.data.keypoint_file import KeypointSetWarning, read_keypoint_categories

CUSTOM = "custom"  # config.data.dataset of a COCO-format file with its own keypoint set
DEFAULT_SIGMA = 0.05  # OKS sigma of a joint no published table covers (custom configs)

COCO_JOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
               "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
                 (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
                 (3, 5), (4, 6))
# Standard COCO keypoint sigmas (pycocotools ``COCOeval.Params.kpt_oks_sigmas``).
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                        .87, .87, .89, .89]) / 10.0
MPII_JOINTS = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
               "pelvis", "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow",
               "right_shoulder", "left_shoulder", "left_elbow", "left_wrist")
MPII_SKELETON = ((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
                 (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15))

# Published per-joint OKS sigmas, by joint name (matched as `normalized_names`).
KNOWN_SETS = {
    "coco": (COCO_JOINTS, tuple(COCO_SIGMAS)),
    # CrowdPose (crowdposetools; mmpose configs/_base_/datasets/crowdpose.py).
    "crowdpose": (("left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                   "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                   "right_knee", "left_ankle", "right_ankle", "head", "neck"),
                  (.079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089,
                   .079, .079)),
    # AP-10K (mmpose configs/_base_/datasets/ap10k.py, in the AP-10K file's joint order).
    "ap10k": (("left_eye", "right_eye", "nose", "neck", "root_of_tail", "left_shoulder",
               "left_elbow", "left_front_paw", "right_shoulder", "right_elbow",
               "right_front_paw", "left_hip", "left_knee", "left_back_paw", "right_hip",
               "right_knee", "right_back_paw"),
              (.025, .025, .026, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107,
               .087, .087, .089, .089)),
    # The 21-joint hand (OneHand10K / COCO-WholeBody hand names; mmpose's
    # coco_wholebody_hand sigmas).
    "hand21": (("wrist",) + tuple(f"{finger}{i}" for finger in (
        "thumb", "forefinger", "middle_finger", "ring_finger", "pinky_finger")
        for i in (1, 2, 3, 4)),
               (.029, .022, .035, .037, .047, .026, .025, .024, .035, .018, .024, .022, .026,
                .017, .021, .021, .032, .02, .019, .022, .031)),
}


def normalized_names(names):
    """Joint names compared across spellings: lower-case words joined by ``_``, side
    words as ``left`` / ``right`` (``L_Shoulder`` == ``left_shoulder``)."""
    out = []
    for name in names:
        side, key = side_and_key(name)
        ws = list(key) if side is None else [
            {"L": "left", "R": "right"}[side] if w == "<side>" else w for w in key]
        out.append("_".join(ws) if ws else str(name))
    return tuple(out)


def known_sigmas(names):
    """(sigmas (J,) ordered as ``names``, the table's name) when the names are those of
    a `KNOWN_SETS` table (in any order and spelling), else (None, None)."""
    norm = normalized_names(names)
    for table, (joints, sigmas) in KNOWN_SETS.items():
        lookup = dict(zip(normalized_names(joints), sigmas))
        if len(norm) == len(lookup) and set(norm) == set(lookup):
            return tuple(float(lookup[n]) for n in norm), table
    return None, None


def _check_pairs(pairs, num_joints, field, names=()):
    """0-based index pairs from pairs of indices or joint names; ValueError naming
    ``field`` otherwise."""
    index = {n: i for i, n in enumerate(names)}
    out = []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ValueError(f"{field}: {pair!r} is not a pair (a, b)")
        ab = []
        for v in pair:
            if isinstance(v, str) and v in index:
                ab.append(index[v])
            elif isinstance(v, (int, np.integer)) and not isinstance(v, bool) \
                    and 0 <= v < num_joints:
                ab.append(int(v))
            else:
                raise ValueError(f"{field}: {pair!r} names no joint (0-based indices "
                                 f"0..{num_joints - 1} or one of the joint names)")
        out.append(tuple(ab))
    return tuple(out)


def make_keypoint_set(joints, skeleton=(), flip_pairs=None, sigmas=None,
                      default_sigma=None, name="custom", source="the config"):
    """A keypoint set dict: ``joints`` (names), ``skeleton`` and ``flip_pairs``
    (0-based), ``sigmas`` (J,) or None, ``sigma_source``, ``name``.

    ``flip_pairs`` None: derived from the names (a `KeypointSetWarning` when none are
    found: horizontal flip is then disabled). ``sigmas`` None: a `KNOWN_SETS` table
    matching the names, else ``default_sigma`` for every joint (with a warning), else
    None (a set scored without OKS, as MPII)."""
    joints = tuple(str(j) for j in joints)
    j = len(joints)
    skeleton = _check_pairs(skeleton, j, f"{source}: skeleton", joints)
    if flip_pairs is None:
        flip_pairs = derive_flip_pairs(joints)
        if not flip_pairs:
            warnings.warn(f"{source}: no left/right pairs among the joint names "
                          f"{list(joints)}: horizontal flip is disabled in training and "
                          "in the flip test (give pairs with "
                          "--config.data.keypoints.flip_pairs)", KeypointSetWarning,
                          stacklevel=2)
        elif unpaired_sided(joints, flip_pairs):
            warnings.warn(f"{source}: joints {unpaired_sided(joints, flip_pairs)} have a "
                          "side but no partner: they are not swapped when flipping",
                          KeypointSetWarning, stacklevel=2)
    flip_pairs = _check_pairs(flip_pairs, j, f"{source}: flip_pairs", joints)
    seen = [i for pair in flip_pairs for i in pair]
    if len(seen) != len(set(seen)) or any(a == b for a, b in flip_pairs):
        raise ValueError(f"{source}: flip_pairs {flip_pairs} use a joint twice")
    sigma_source = "given"
    if sigmas is not None and len(sigmas):
        sigmas = np.asarray(sigmas, np.float64)
        if sigmas.shape != (j,) or not np.all(np.isfinite(sigmas)) or np.any(sigmas <= 0):
            raise ValueError(f"{source}: sigmas has {sigmas.size} values; {j} positive "
                             f"numbers are needed (one per joint)")
    else:
        found, table = known_sigmas(joints)
        if found is not None:
            sigmas, sigma_source = np.asarray(found, np.float64), f"published ({table})"
        elif default_sigma:
            sigmas = np.full((j,), float(default_sigma))
            sigma_source = f"default ({float(default_sigma)} for every joint)"
            warnings.warn(f"{source}: no published OKS sigmas for these joints: every joint "
                          f"uses config.data.keypoints.default_sigma={float(default_sigma)} "
                          "(set --config.data.keypoints.sigmas for your own)",
                          KeypointSetWarning, stacklevel=2)
        else:
            sigmas, sigma_source = None, "none"
    return dict(name=name, joints=joints, skeleton=skeleton, flip_pairs=flip_pairs,
                sigmas=sigmas, sigma_source=sigma_source)


DATASETS = {
    "coco": make_keypoint_set(COCO_JOINTS, COCO_SKELETON, name="coco"),
    "mpii": make_keypoint_set(MPII_JOINTS, MPII_SKELETON, name="mpii"),  # PCKh: no sigmas
}
COCO_FLIP_PAIRS = DATASETS["coco"]["flip_pairs"]
MPII_FLIP_PAIRS = DATASETS["mpii"]["flip_pairs"]


def keypoint_set(name):
    """The facts of dataset ``name`` (a key of `DATASETS`); a clear error otherwise."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {tuple(DATASETS)} or "
                         f"{CUSTOM!r} (the keypoint set of a COCO-format file)")
    return DATASETS[name]


_FILE_CACHE = {}


def _file_set(path):
    """`read_keypoint_categories` of ``path``, read once per file version."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    if key not in _FILE_CACHE:
        _FILE_CACHE[key] = read_keypoint_categories(path)
    return _FILE_CACHE[key]


def _annotation_file(config):
    """The first existing annotation file of the config (train, then val), or None."""
    data = config.data
    for split in ("train", "val"):
        path = os.path.join(data.root, data[f"{split}_ann"])
        if os.path.isfile(path):
            return path
    return None


def resolve(config):
    """Fills in the keypoint set of a custom config (``data.dataset == "custom"``) from
    its annotation file and ``config.data.keypoints``: the joint names, skeleton, flip
    pairs, sigmas and category ids, and ``config.model.num_joints`` (0: from the
    file). Other configs are left as they are. Runs once per config (the file it read
    is recorded in ``config.data.keypoints.resolved_from``); returns ``config``."""
    data = config.get("data") if hasattr(config, "get") else None
    if data is None or data.get("dataset") != CUSTOM:
        return config
    kp = data.keypoints
    if kp.resolved_from:
        return config
    path = _annotation_file(config)
    info = _file_set(path) if path else None
    joints = tuple(kp.joints)
    if info is None and not joints:
        train = os.path.join(data.root, data.train_ann)
        raise FileNotFoundError(
            f"the keypoint set of this custom config comes from its annotation file, and "
            f"{train} does not exist (config.data.root={data.root!r}, config.data.train_ann="
            f"{data.train_ann!r}); point --config.data.root at your COCO-format folder or "
            "give the joints with --config.data.keypoints.joints")
    source = info["file"] if info else "config.data.keypoints"
    if info and joints and len(joints) != len(info["joints"]):
        raise ValueError(f"config.data.keypoints.joints names {len(joints)} joints but "
                         f"{info['file']} has {len(info['joints'])} ({list(info['joints'])})")
    joints = joints or info["joints"]
    for field in ("skeleton", "flip_pairs"):  # given ones: errors name the config field
        _check_pairs(kp[field], len(joints), f"config.data.keypoints.{field}", joints)
    if kp.sigmas and len(kp.sigmas) != len(joints):
        raise ValueError(f"config.data.keypoints.sigmas has {len(kp.sigmas)} values; the "
                         f"{len(joints)} joints of {source} need one each")
    skeleton = tuple(kp.skeleton) or (info["skeleton"] if info else ())
    kset = make_keypoint_set(joints, skeleton, tuple(kp.flip_pairs) or None,
                             tuple(kp.sigmas) or None, kp.default_sigma, name=CUSTOM,
                             source=source)
    if "num_joints" in config.model:  # keypoint models (a detector has none)
        num = int(config.model.num_joints)
        if num not in (0, len(joints)):
            raise ValueError(f"config.model.num_joints={num} but {source} has {len(joints)} "
                             "joints (0: take the number from the file)")
        for field in ("num_queries", "kpt_num_queries"):  # every joint needs a query
            if int(config.model.get(field, len(joints))) < len(joints):
                raise ValueError(f"config.model.{field}={config.model[field]} is fewer than "
                                 f"the {len(joints)} joints of {source}: the keypoint "
                                 f"Transformer matches one query to each joint (set "
                                 f"--config.model.{field}={len(joints)} or more)")
    if "num_joints" in config.model:  # written only once every check passed
        config.model.num_joints = len(joints)
    kp.joints = tuple(joints)
    kp.skeleton = tuple(tuple(e) for e in kset["skeleton"])
    kp.flip_pairs = tuple(tuple(p) for p in kset["flip_pairs"])
    kp.sigmas = () if kset["sigmas"] is None else tuple(float(s) for s in kset["sigmas"])
    if not kp.category_ids:
        kp.category_ids = tuple(info["category_ids"]) if info else (1,)
    kp.sigma_source = kset["sigma_source"]
    kp.resolved_from = source
    return config


def _unresolved_custom(config):
    data = config.get("data") if hasattr(config, "get") else None
    return (data is not None and data.get("dataset") == CUSTOM
            and not data.keypoints.resolved_from)


def has_own_set(config):
    """False for a custom config whose set cannot come from itself: not resolved, no
    ``config.data.keypoints.joints`` and no annotation file where its data fields
    point (e.g. a detector config given without the data flags of its pose model)."""
    if not _unresolved_custom(config):
        return True
    return bool(config.data.keypoints.joints) or _annotation_file(config) is not None


def adopt(config, source, where):
    """Gives the unresolved custom ``config`` the keypoint set of ``source``: a
    resolved config (the two-stage pipeline's detector takes its pose model's set,
    so one set of data flags serves both) or a workdir's keypoint_set.json / an
    export's metadata (a dict, `metadata`); ``where`` names the source for messages.
    Other configs, and configs already resolved, are left as they are. Returns
    whether ``config`` took the set."""
    if not _unresolved_custom(config):
        return False
    if isinstance(source, dict):
        kset = set_from_metadata(source, where)
        kp = keypoints_config_of(kset, where)
        kp.category_ids = tuple(int(c) for c in source.get("category_ids", ())) or (1,)
    else:
        if source.data.dataset != CUSTOM:
            return False
        kp = resolve(source).data.keypoints
    num = len(kp.joints)
    if "num_joints" in config.model and int(config.model.num_joints) not in (0, num):
        raise ValueError(f"config.model.num_joints={config.model.num_joints} but {where} "
                         f"has {num} joints (0: take the number from it)")
    for field in ("joints", "skeleton", "flip_pairs", "sigmas", "category_ids",
                  "sigma_source"):
        config.data.keypoints[field] = kp[field]
    config.data.keypoints.resolved_from = f"{where} ({kp.resolved_from})" \
        if kp.resolved_from and kp.resolved_from != where else str(where)
    if "num_joints" in config.model:
        config.model.num_joints = num
    return True


def of_config(config):
    """The keypoint set of a config (``config.data.dataset``; a custom config's after
    `resolve`)."""
    if config.data.dataset != CUSTOM:
        return keypoint_set(config.data.dataset)
    kp = resolve(config).data.keypoints
    return dict(name=CUSTOM, joints=tuple(kp.joints), skeleton=tuple(kp.skeleton),
                flip_pairs=tuple(kp.flip_pairs), sigmas=np.asarray(kp.sigmas, np.float64) if len(kp.sigmas) else None,
                sigma_source=kp.sigma_source)


def category_ids(config):
    """The annotation categories whose instances are this config's objects (COCO and
    MPII: the person, 1)."""
    if config.data.dataset != CUSTOM:
        return (1,)
    return tuple(int(c) for c in resolve(config).data.keypoints.category_ids)


def oks_sigmas(config):
    """The OKS sigmas (J,) of a config's keypoint set, or None when it has none."""
    sigmas = of_config(config)["sigmas"]
    return None if sigmas is None else np.asarray(sigmas, np.float64)


def flip_pairs_of(config, enabled=True):
    """The flip pairs for mirroring (flip test, training flip), or None: when not
    ``enabled`` or when the set has no pairs (then mirroring is disabled; `resolve`
    warned)."""
    if not enabled:
        return None
    pairs = of_config(config)["flip_pairs"]
    return tuple(pairs) if pairs else None


def flip_permutation(num_joints, flip_pairs):
    """The joint order of a mirrored pose: left and right of every pair swapped."""
    perm = list(range(num_joints))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm


def metadata(config):
    """The keypoint set as JSON-ready metadata (exports): names, skeleton, flip pairs,
    sigmas."""
    kset = of_config(config)
    return dict(dataset=str(config.data.dataset), keypoint_names=list(kset["joints"]),
                skeleton=[list(e) for e in kset["skeleton"]],
                flip_pairs=[list(p) for p in kset["flip_pairs"]],
                sigmas=None if kset["sigmas"] is None else [float(s) for s in kset["sigmas"]])


def keypoints_config(**overrides):
    """``config.data.keypoints`` of a custom config: every field empty means "from the
    annotation file" (see `resolve`)."""
    import ml_collections
    fields = dict(
        joints=(),  # joint names; (): the file's categories[].keypoints
        skeleton=(),  # 0-based (a, b) edges; (): the file's categories[].skeleton (1-based)
        flip_pairs=(),  # pairs of joint names or 0-based indices; (): derived from the names
        sigmas=(),  # per-joint OKS sigmas; (): published ones for the names, else default
        default_sigma=DEFAULT_SIGMA,
        category_ids=(),  # the object categories; (): those of the keypoint set
        sigma_source="",  # filled in by resolve: where the sigmas came from
        resolved_from="",  # filled in by resolve: the file the set was read from
    )
    fields.update(overrides)
    return ml_collections.ConfigDict(fields)


def set_from_metadata(meta, where="the export"):
    """The keypoint set an export's metadata holds (`metadata`; a .tflite's, a
    SavedModel's or an ONNX file's), for drawing and post-processing."""
    joints = tuple(str(j) for j in meta["keypoint_names"])
    sigmas = meta.get("sigmas")
    if sigmas is None and meta.get("dataset") in DATASETS:  # exported before sigmas were
        sigmas = DATASETS[meta["dataset"]]["sigmas"]
    kset = dict(name=str(meta.get("dataset", CUSTOM)), joints=joints,
                skeleton=_check_pairs(meta.get("skeleton", ()), len(joints),
                                      f"{where}: skeleton"),
                flip_pairs=_check_pairs(meta.get("flip_pairs", ()), len(joints),
                                        f"{where}: flip_pairs"),
                sigmas=None if sigmas is None else np.asarray(sigmas, np.float64),
                sigma_source=f"the metadata of {where}")
    return kset


def keypoints_config_of(kset, source):
    """A resolved ``config.data.keypoints`` holding the keypoint set ``kset``."""
    return keypoints_config(
        joints=tuple(kset["joints"]), skeleton=tuple(tuple(e) for e in kset["skeleton"]),
        flip_pairs=tuple(tuple(p) for p in kset["flip_pairs"]),
        sigmas=() if kset["sigmas"] is None else tuple(float(s) for s in kset["sigmas"]),
        sigma_source=str(kset.get("sigma_source", "")), resolved_from=str(source))
