"""One set of data flags for the two-stage pipeline of a custom set (issue 30): the
detector config takes its keypoint set (its objects' categories) from the pose
model's config (`keypoint_sets.adopt`, called by prtr-export before the detector
loads), and a custom config given without data flags takes the set recorded in its
checkpoint's workdir (`weights.recorded_set`, in `weights.load_model` and prtr-export).
Before, configs/custom_detector.py stopped with "data/custom/annotations/train.json
does not exist" unless --detector_config.data.* repeated the pose model's flags.
"""
import json

import pytest

from prtr_tf.checkpoints import weights
from prtr_tf.config import load_config
from prtr_tf.data import keypoint_sets
from prtr_tf.models import registry
from prtr_tf.training import keypoint_record
from tests.custom_sets import custom_config


def test_the_detector_takes_the_pose_models_set():
    """Rules out: the detector config still reading its own (absent) data paths, and a
    set other than the pose config's (joints, the file's category ids, the source)."""
    pose = custom_config("ap10k_mini")  # 54 categories sharing one keypoint set
    detector = load_config("custom_detector")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        registry.get(load_config("custom_detector"))  # the failure without the pose set
    assert keypoint_sets.adopt(detector, pose, "--config")
    registry.get(detector)  # resolves: no FileNotFoundError
    kp, theirs = detector.data.keypoints, pose.data.keypoints
    assert tuple(kp.joints) == tuple(theirs.joints) and len(kp.joints) == 17
    assert tuple(kp.category_ids) == tuple(theirs.category_ids)
    assert len(kp.category_ids) == 54
    assert keypoint_sets.category_ids(detector) == keypoint_sets.category_ids(pose)
    assert kp.resolved_from.startswith("--config (") and "animal_keypoints.json" in \
        kp.resolved_from
    # Resolved configs and sets that are not custom are left as they are.
    assert not keypoint_sets.adopt(detector, custom_config("crowdpose_mini"), "--config")
    assert len(detector.data.keypoints.joints) == 17
    other = load_config("custom_detector")
    assert not keypoint_sets.adopt(other, load_config("tiny"), "--config")  # COCO's set
    assert not other.data.keypoints.resolved_from


def test_a_custom_config_without_data_flags_takes_its_workdirs_record(tmp_path):
    """A workdir trained on a custom set (keypoint_set.json with the set and its
    categories) loads with the bare custom config; a config that has its own
    annotation file keeps resolving from it; a different count of joints in the
    config is an error. Rules out the record being ignored or overriding a config's
    own file."""
    trained = custom_config("onehand10k_mini")
    keypoint_record.record(str(tmp_path), trained)
    with open(tmp_path / keypoint_record.FILE, encoding="utf-8") as f:
        assert json.load(f)["category_ids"] == list(trained.data.keypoints.category_ids)
    bare = load_config("custom_keypoints")  # data/custom/...: absent
    assert not keypoint_sets.has_own_set(bare)
    assert weights.recorded_set(bare, str(tmp_path / "last.weights.h5"))
    assert bare.model.num_joints == 21
    assert tuple(bare.data.keypoints.joints) == tuple(trained.data.keypoints.joints)
    assert tuple(bare.data.keypoints.flip_pairs) == tuple(trained.data.keypoints.flip_pairs)
    assert tuple(bare.data.keypoints.category_ids) == \
        tuple(trained.data.keypoints.category_ids)
    keypoint_record.check(str(tmp_path), bare)  # the record's set: it checks
    # a detector of the same workdir's set through the adopted pose config
    detector = load_config("custom_detector")
    assert keypoint_sets.adopt(detector, bare, "--config")
    assert tuple(detector.data.keypoints.joints) == tuple(trained.data.keypoints.joints)
    # a config with its own file resolves from it, not from the record
    own = custom_config("crowdpose_mini", resolve=False)
    assert keypoint_sets.has_own_set(own)
    assert not weights.recorded_set(own, str(tmp_path))
    wrong = load_config("custom_keypoints")
    wrong.model.num_joints = 17
    with pytest.raises(ValueError, match="num_joints=17 but .* has 21 joints"):
        weights.recorded_set(wrong, str(tmp_path))


def test_a_custom_detector_workdir_records_its_set(tmp_path):
    """predict loads the detector before the pose model: a custom detector's workdir
    records its set, so its config needs no data flags either. Rules out a detector
    record that is missing or holds other categories, and COCO detectors writing one."""
    trained = custom_config("ap10k_mini", config_name="custom_detector")
    assert keypoint_record.record(str(tmp_path), trained)
    bare = load_config("custom_detector")
    assert weights.recorded_set(bare, str(tmp_path / "best.weights.h5"))
    assert tuple(bare.data.keypoints.category_ids) == \
        tuple(trained.data.keypoints.category_ids)
    assert len(bare.data.keypoints.category_ids) == 54
    registry.get(bare)  # resolves: no FileNotFoundError
    assert keypoint_record.record(str(tmp_path / "coco"), load_config("detr_r50_person")) \
        is None
