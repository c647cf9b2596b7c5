"""What the workdir's keypoint record compares (issue 27): joint names (in order) and
flip pairs make a load fail; skeleton and sigmas (drawing and scoring only) do not."""
import json
import os

import ml_collections
import pytest

from prtr_tf.data import keypoint_sets as ks
from prtr_tf.training import keypoint_record


def _config(joints=("head", "left_fin", "right_fin"), flip_pairs=((1, 2),),
            skeleton=((0, 1), (0, 2)), sigmas=(0.1, 0.2, 0.3), num_joints=3):
    kp = ks.keypoints_config(joints=joints, flip_pairs=flip_pairs, skeleton=skeleton,
                             sigmas=sigmas, resolved_from="x.json", sigma_source="given")
    return ml_collections.ConfigDict(dict(data=dict(dataset="custom", keypoints=kp),
                                          model=dict(num_joints=num_joints)))


def test_record_writes_the_metadata(tmp_path):
    path = keypoint_record.record(str(tmp_path), _config())
    assert path == os.path.join(str(tmp_path), "keypoint_set.json")
    with open(path) as f:
        saved = json.load(f)
    assert saved["keypoint_names"] == ["head", "left_fin", "right_fin"]
    assert saved["flip_pairs"] == [[1, 2]] and saved["sigmas"] == [0.1, 0.2, 0.3]
    # a detector config (no joints) writes nothing
    det = ml_collections.ConfigDict(dict(data=dict(dataset="coco"), model=dict()))
    other = tmp_path / "det"
    other.mkdir()
    assert keypoint_record.record(str(other), det) is None
    assert not (other / "keypoint_set.json").exists()


@pytest.mark.parametrize("change, fails", [
    (dict(joints=("head", "right_fin", "left_fin")), True),    # names in another order
    (dict(joints=("head", "left_fin", "right_tail")), True),   # another name
    (dict(flip_pairs=()), True),                               # flip disabled
    (dict(flip_pairs=((2, 1),)), True),                        # pair written the other way
    (dict(skeleton=((1, 2),)), False),                         # drawing only
    (dict(sigmas=(0.3, 0.3, 0.3)), False),                     # scoring only
])
def test_check_compares_names_and_flip_pairs_only(tmp_path, change, fails):
    keypoint_record.record(str(tmp_path), _config())
    weights = os.path.join(str(tmp_path), "model.weights.h5")  # a file in the workdir
    config = _config(**change)
    if fails:
        with pytest.raises(ValueError, match="differs from the one the model was trained"):
            keypoint_record.check(weights, config)
        with pytest.raises(ValueError, match="differs"):
            keypoint_record.check(str(tmp_path), config)  # the workdir itself
    else:
        keypoint_record.check(weights, config)
        keypoint_record.check(str(tmp_path), config)


def test_check_without_a_record_or_joints_passes(tmp_path):
    keypoint_record.check(str(tmp_path), _config())  # no record: nothing to compare
    keypoint_record.record(str(tmp_path), _config())
    keypoint_record.check(str(tmp_path), _config(joints=("a", "b", "c"), num_joints=0))
    assert keypoint_record.recorded(str(tmp_path / "nothere" / "w.h5")) == (None, None)
    path, saved = keypoint_record.recorded(str(tmp_path))
    assert path.endswith("keypoint_set.json") and saved["dataset"] == "custom"


def test_error_names_the_field_and_both_values(tmp_path):
    keypoint_record.record(str(tmp_path), _config())
    with pytest.raises(ValueError) as e:
        keypoint_record.check(str(tmp_path), _config(flip_pairs=()), label="eval's config")
    msg = str(e.value)
    assert msg.startswith("eval's config's keypoint set differs")
    assert "flip_pairs [] vs [[1, 2]]" in msg
    assert "keypoint_set.json" in msg


def test_record_without_flip_pairs_key_skips_that_field(tmp_path):
    keypoint_record.record(str(tmp_path), _config())
    path = tmp_path / "keypoint_set.json"
    saved = json.loads(path.read_text())
    del saved["flip_pairs"]
    path.write_text(json.dumps(saved))
    keypoint_record.check(str(tmp_path), _config(flip_pairs=()))
    with pytest.raises(ValueError, match="keypoint_names"):
        keypoint_record.check(str(tmp_path), _config(joints=("x", "left_fin", "right_fin")))


def test_record_text_and_messages(tmp_path, monkeypatch):
    # The record is indented by one space (readable, diff-able); a broken record names
    # what it is; the default label and the datasets are in the error.
    keypoint_record.record(str(tmp_path), _config())
    text = (tmp_path / "keypoint_set.json").read_text()
    assert text.startswith('{\n "dataset": "custom",\n "keypoint_names": [\n  "head",')
    assert text.endswith("}\n")
    with pytest.raises(ValueError) as e:
        keypoint_record.check(str(tmp_path), _config(joints=("a", "left_fin", "right_fin")))
    msg = str(e.value)
    assert msg.startswith("the config's keypoint set differs")
    assert "(dataset 'custom' vs 'custom'); use the config and data it was trained with, " \
           "or the model would label its joints wrongly" in msg
    (tmp_path / "keypoint_set.json").write_text("{broken")
    with pytest.raises(ValueError, match="^the workdir's record of the keypoint set the "
                                         "model was trained on '"):
        keypoint_record.check(str(tmp_path), _config())


def test_a_weights_file_named_without_a_folder_is_in_the_current_one(tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    keypoint_record.record(".", _config())
    path, saved = keypoint_record.recorded("model.weights.h5")
    assert path == os.path.join(".", "keypoint_set.json") and saved is not None
    with pytest.raises(ValueError, match="flip_pairs"):
        keypoint_record.check("model.weights.h5", _config(flip_pairs=()))


def test_other_joints_only_for_as_many_joints_with_other_names(tmp_path):
    if not hasattr(keypoint_record, "other_joints"):
        pytest.skip("keypoint_record.other_joints is not in this version")
    assert keypoint_record.other_joints(str(tmp_path), _config()) is None  # no record
    keypoint_record.record(str(tmp_path), _config())
    assert keypoint_record.other_joints(str(tmp_path), _config()) is None  # same names
    # other flip pairs, skeleton or sigmas: the same joints
    assert keypoint_record.other_joints(str(tmp_path), _config(flip_pairs=())) is None
    # another number of joints: no class head fits anyway
    four = _config(joints=("a", "b", "c", "d"), flip_pairs=(), skeleton=(),
                   sigmas=(0.1,) * 4, num_joints=4)
    assert keypoint_record.other_joints(str(tmp_path), four) is None
    assert keypoint_record.other_joints(
        str(tmp_path), _config(joints=("x", "left_fin", "right_fin"), num_joints=0)) is None
    msg = keypoint_record.other_joints(str(tmp_path),
                                       _config(joints=("x", "left_fin", "right_fin")))
    assert msg == (f"{tmp_path / 'keypoint_set.json'} names other joints ('custom': "
                   "['head', 'left_fin', 'right_fin']... vs ['x', 'left_fin', "
                   "'right_fin']...)")


def test_record_of_a_custom_detector_and_of_a_coco_pose_config(tmp_path):
    """A custom detector config (no num_joints) records its set with its categories
    (predict gives them to the detector config without data flags); a COCO pose config
    (num_joints 17, not custom) records COCO's set and category 1. Rules out recording
    custom configs only, or joint models only, and category ids left out."""
    det = _config()
    det.model = ml_collections.ConfigDict({})
    det.data.keypoints.category_ids = (3, 7)
    path = keypoint_record.record(str(tmp_path), det)
    with open(path) as f:
        saved = json.load(f)
    assert saved["category_ids"] == [3, 7]
    assert saved["keypoint_names"] == ["head", "left_fin", "right_fin"]
    coco = ml_collections.ConfigDict(dict(data=dict(dataset="coco"),
                                          model=dict(num_joints=17)))
    (tmp_path / "coco").mkdir()
    path = keypoint_record.record(str(tmp_path / "coco"), coco)
    with open(path) as f:
        saved = json.load(f)
    assert saved["dataset"] == "coco" and saved["category_ids"] == [1]
    assert saved["keypoint_names"] == list(ks.COCO_JOINTS)
    # a config without a data section and without joints: nothing
    bare = ml_collections.ConfigDict(dict(model=dict()))
    assert keypoint_record.record(str(tmp_path / "coco"), bare) is None


def test_other_joints_names_the_first_three_joints_of_each(tmp_path):
    # Five joints, all renamed: the message shows three of each, then "...".
    five = ("a", "b", "c", "d", "e")
    keypoint_record.record(str(tmp_path), _config(joints=five, flip_pairs=(), skeleton=(),
                                                  sigmas=(0.1,) * 5, num_joints=5))
    msg = keypoint_record.other_joints(str(tmp_path), _config(
        joints=("v", "w", "x", "y", "z"), flip_pairs=(), skeleton=(), sigmas=(0.1,) * 5,
        num_joints=5))
    assert msg.endswith("names other joints ('custom': ['a', 'b', 'c']... vs "
                        "['v', 'w', 'x']...)")
