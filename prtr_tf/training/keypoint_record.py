"""The keypoint set a model was trained on, recorded in its workdir
(``keypoint_set.json``: joint names, skeleton, flip pairs, sigmas; `record`) and checked
when the model is loaded for inference (`check`, from `prtr_tf.checkpoints.weights.load_model`).

A config whose set differs from the recorded one (another annotation file with as
many joints, names in another order, other flip pairs) loads the weights without
complaint and labels every joint wrongly; `check` makes that an error naming both.
Workdirs written before the record existed are not checked.
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
    """Writes (atomically) ``workdir``/keypoint_set.json of ``config``'s keypoint set;
    only for configs of models with joints (``config.model.num_joints``)."""
    if not config.model.get("num_joints"):
        return None
    path = os.path.join(workdir, FILE)
    atomic.write_text(path, json.dumps(keypoint_sets.metadata(config), indent=1) + "\n")
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


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value
