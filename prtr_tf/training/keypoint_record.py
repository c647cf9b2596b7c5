"""The keypoint set a model was trained on, recorded in its workdir
(``keypoint_set.json``: joint names, skeleton, flip pairs, sigmas; `record`) and checked
when the model is loaded for inference (`check`, from `prtr_tf.checkpoints.weights.load_model`).

A config whose set differs from the recorded one (another annotation file with as
many joints, names in another order, other flip pairs) loads the weights without
complaint and labels every joint wrongly; `check` makes that an error naming both.
Workdirs written before the record existed are not checked. Training's
``init_weights`` is not checked (fine-tuning onto another set is allowed): a new
workdir records its own set, and `other_joints` tells the trainer when a class head
of as many joints means other ones.
"""
import json
import os

from prtr_tf.data import keypoint_sets
from prtr_tf.data.jsonfile import read_json
from prtr_tf.files import atomic

FILE = "keypoint_set.json"
# What decides the meaning of the model's outputs: the joint at each index, and which
# joints the flip test swaps. Skeleton and sigmas only change drawing and scoring.
CHECKED = ("keypoint_names", "flip_pairs")


def record(workdir, config):
    """Writes (atomically) ``workdir``/keypoint_set.json of ``config``'s keypoint set
    (`prtr_tf.data.keypoint_sets.metadata` and the object categories); only for configs
    of models with joints (``config.model.num_joints``) and for custom detector configs
    (their objects are the set's categories: `prtr_tf.checkpoints.weights.recorded_set`
    gives the set to the detector config of predict or export without data flags)."""
    custom = config.get("data") is not None and \
        config.data.get("dataset") == keypoint_sets.CUSTOM
    if not config.model.get("num_joints") and not custom:
        return None
    path = os.path.join(workdir, FILE)
    saved = dict(keypoint_sets.metadata(config),
                 category_ids=list(keypoint_sets.category_ids(config)))
    atomic.write_text(path, json.dumps(saved, indent=1) + "\n")
    return path


def recorded(checkpoint):
    """(path, the recorded set) of the workdir that ``checkpoint`` (a workdir or a
    weights file in one) names, or (None, None)."""
    folder = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint)
    path = os.path.join(folder or ".", FILE)
    if not os.path.isfile(path):
        return None, None
    return path, read_json(path, "the workdir's record of the keypoint set the model was "
                                 "trained on")


def check(checkpoint, config, label="the config"):
    """ValueError when ``config``'s keypoint set differs from the one recorded beside
    ``checkpoint`` (see the module docstring); nothing without a record."""
    path, saved = recorded(str(checkpoint))
    check_same_set(config, saved, label, path)


def check_same_set(config, saved, label, path):
    """ValueError when ``config``'s keypoint set differs from ``saved`` (the set
    recorded in ``path``: a workdir's keypoint_set.json or a model file's) in
    `CHECKED`; nothing when there is no record or the config has no joints."""
    if saved is None or not config.model.get("num_joints"):
        return
    current = keypoint_sets.metadata(config)
    for field in CHECKED:
        if field in saved and list(map(_plain, saved[field])) != list(
                map(_plain, current[field])):
            raise ValueError(
                f"{label}'s keypoint set differs from the one the model was trained on "
                f"({path}): {field} {current[field]} vs {saved[field]} (dataset "
                f"{current['dataset']!r} vs {saved.get('dataset')!r}); use the config and "
                "data it was trained with, or the model would label its joints wrongly")


def other_joints(checkpoint, config):
    """When the set recorded beside ``checkpoint`` has as many joints as ``config``'s
    but other names (a model fine-tuned onto another set: its class head would label
    them wrongly), a few words saying so; else None (no record, the same joints, or
    another number of joints, which no class head fits anyway)."""
    path, saved = recorded(str(checkpoint))
    if saved is None or not config.model.get("num_joints") or "keypoint_names" not in saved:
        return None
    theirs = list(map(str, saved["keypoint_names"]))
    ours = list(map(str, keypoint_sets.metadata(config)["keypoint_names"]))
    if theirs == ours or len(theirs) != len(ours):
        return None
    return (f"{path} names other joints ({saved.get('dataset')!r}: {theirs[:3]}... vs "
            f"{ours[:3]}...)")


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value
