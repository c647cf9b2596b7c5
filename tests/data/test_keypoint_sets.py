"""Keypoint sets from the data (`prtr_tf.data.keypoint_sets`, `prtr_tf.data.joint_names`,
`prtr_tf.data.keypoint_file`): names, skeleton, flip pairs and sigmas of real
COCO-format files and of synthetic name lists."""
import json
import warnings

import numpy as np
import pytest

from prtr_tf.data import keypoint_sets
from prtr_tf.models import registry
from prtr_tf.config import load_config
from prtr_tf.data.joint_names import derive_flip_pairs, words
from prtr_tf.data.keypoint_file import KeypointSetWarning, read_keypoint_categories
from tests.custom_sets import SETS, custom_config, point_at
from tests.conftest import require_shared


# ------------------------------------------------------------------ names -> flip pairs

@pytest.mark.parametrize("names, pairs", [
    (["nose", "left_eye", "right_eye"], ((1, 2),)),
    (["l_eye", "r_eye", "neck"], ((0, 1),)),
    (["Left Eye", "Right Eye", "Head"], ((0, 1),)),
    (["eye_left", "eye_right"], ((0, 1),)),
    (["leftEye", "rightEye", "LShoulder", "RShoulder"], ((0, 1), (2, 3))),
    (["L_F_Paw", "R_F_Paw", "L_B_Paw", "R_B_Paw"], ((0, 1), (2, 3))),
    (["front_left_paw", "front_right_paw", "tail"], ((0, 1),)),
    (["shoulder_l", "shoulder_r", "hip-L", "hip-R"], ((0, 1), (2, 3))),
    (["wrist_right", "elbow", "wrist_left"], ((0, 2),)),  # right first: lower index first
    # a side with no partner, and a name with two side words, pair with nothing
    (["left_eye", "right_ear", "left_right_thing"], ()),
    # not side words: "rear", "lr", "tr1", "thumb1"
    (["rear_paw", "lr", "thumb1", "thumb2"], ()),
])
def test_flip_pairs_from_name_spellings(names, pairs):
    assert derive_flip_pairs(names) == pairs


def test_words_split_separators_camel_case_and_digits():
    assert words("LShoulder") == ["l", "shoulder"]
    assert words("middle_finger4") == ["middle", "finger", "4"]
    assert words("Root of tail") == ["root", "of", "tail"]


def test_builtin_sets_are_made_by_the_same_mechanism():
    # The derived pairs are the published ones (HRNet / PRTR flip_pairs).
    assert keypoint_sets.COCO_FLIP_PAIRS == ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12),
                                        (13, 14), (15, 16))
    assert keypoint_sets.MPII_FLIP_PAIRS == ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
    np.testing.assert_array_equal(keypoint_sets.DATASETS["coco"]["sigmas"], keypoint_sets.COCO_SIGMAS)
    assert keypoint_sets.DATASETS["mpii"]["sigmas"] is None  # scored by PCKh


def test_a_set_without_pairs_disables_flip_with_a_warning():
    with pytest.warns(KeypointSetWarning) as caught:
        kset = keypoint_sets.make_keypoint_set(["a", "b", "c"], default_sigma=0.05)
    messages = [str(w.message) for w in caught]
    assert any("horizontal flip is disabled" in m for m in messages)
    assert any("default_sigma=0.05" in m for m in messages)  # the stated default
    assert kset["flip_pairs"] == () and kset["sigma_source"].startswith("default")
    np.testing.assert_allclose(kset["sigmas"], [0.05] * 3)


def test_training_mirrors_only_sets_with_pairs():
    """The training augmentation draws flips for a set with pairs (crowdpose_mini) and
    none for a set without (onehand10k_mini: 21 hand joints, no sides), config.data.flip
    on in both."""
    import tensorflow as tf
    from prtr_tf.models.keypoint.data import _Augmenter
    drawn = {}
    for name in ("crowdpose_mini", "onehand10k_mini"):
        config = custom_config(name)
        assert config.data.flip
        j = config.model.num_joints
        augment = _Augmenter(config.data, keypoint_sets.flip_pairs_of(config), j)
        joints = tf.constant(np.tile([[10.0, 20.0, 1.0]], (j, 1)), tf.float32)
        flips = [bool(augment(tf.constant([7, i]), tf.constant([50.0, 60.0]), tf.constant(
            [1.0, 1.0]), joints, 100)[3]) for i in range(40)]
        drawn[name] = (augment.flip, sum(flips))
    assert drawn["crowdpose_mini"][0] and 8 <= drawn["crowdpose_mini"][1] <= 32, drawn
    assert drawn["onehand10k_mini"] == (False, 0), drawn


def test_known_sigmas_match_names_in_any_order_and_spelling():
    names = ["Right_Shoulder", "L_Shoulder"] + [n for n in keypoint_sets.KNOWN_SETS["crowdpose"][0]
                                                if "shoulder" not in n]
    sigmas, table = keypoint_sets.known_sigmas(names)
    assert table == "crowdpose" and sigmas[:2] == (0.079, 0.079) and sigmas[-1] == 0.079
    assert keypoint_sets.known_sigmas(["a", "b"]) == (None, None)


def test_given_pairs_and_sigmas_are_checked():
    kset = keypoint_sets.make_keypoint_set(["a", "b", "c"], flip_pairs=[("a", "c")],
                                      sigmas=[0.1, 0.2, 0.3])
    assert kset["flip_pairs"] == ((0, 2),) and kset["sigma_source"] == "given"
    with pytest.raises(ValueError, match=r"flip_pairs: \('a', 'x'\) names no joint"):
        keypoint_sets.make_keypoint_set(["a", "b"], flip_pairs=[("a", "x")])
    with pytest.raises(ValueError, match="sigmas has 2 values; 3 positive"):
        keypoint_sets.make_keypoint_set(["a", "b", "c"], flip_pairs=(), sigmas=[0.1, 0.2])


# ------------------------------------------------------------------ the real files

EXPECTED_PAIRS = {
    "crowdpose_mini": ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    "ap10k_mini": ((0, 1), (5, 8), (6, 9), (7, 10), (11, 14), (12, 15), (13, 16)),
    "onehand10k_mini": (),
}
EXPECTED_SIGMAS = {"crowdpose_mini": "crowdpose", "ap10k_mini": "ap10k",
                   "onehand10k_mini": "hand21"}


@pytest.mark.parametrize("name", sorted(SETS))
def test_custom_config_takes_the_set_from_the_file(name):
    config = custom_config(name, tiny=False, resolve=False)
    assert config.model.num_joints == 0  # not known before the file is read
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry.get(config)  # resolves the set
    kset = keypoint_sets.of_config(config)
    ann = json.loads((require_shared("data", name) / SETS[name][0]).read_text())
    assert kset["joints"] == tuple(ann["categories"][0]["keypoints"])
    assert config.model.num_joints == SETS[name][1] == len(kset["joints"])
    assert kset["flip_pairs"] == EXPECTED_PAIRS[name]
    for a, b in kset["flip_pairs"]:  # every pair is a left and a right joint
        assert {kset["joints"][a].split("_")[0], kset["joints"][b].split("_")[0]} == \
            {"left", "right"}
    assert kset["sigmas"].shape == (SETS[name][1],)
    assert config.data.keypoints.sigma_source == f"published ({EXPECTED_SIGMAS[name]})"
    np.testing.assert_allclose(
        kset["sigmas"], keypoint_sets.KNOWN_SETS[EXPECTED_SIGMAS[name]][1])
    messages = [str(w.message) for w in caught if issubclass(w.category, KeypointSetWarning)]
    assert any("horizontal flip is disabled" in m for m in messages) == (name ==
                                                                         "onehand10k_mini")
    # resolved once: a second call reads nothing and warns nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.get(config)


def test_ap10k_species_are_one_object_class():
    config = custom_config("ap10k_mini")
    assert len(keypoint_sets.category_ids(config)) == 54
    from prtr_tf.data.splits import load_records
    records = load_records(config, "val")
    assert sorted(r["category_id"] for r in records) == [1, 26]  # antelope and another


def test_skeleton_from_the_file_is_1_based():
    info = read_keypoint_categories(require_shared("data", "onehand10k_mini") /
                                    "hand_keypoints.json")
    assert info["skeleton"][:4] == ((0, 1), (1, 2), (2, 3), (3, 4))
    assert max(max(e) for e in info["skeleton"]) == 20


def test_crowdpose_skeleton_that_does_not_fit_is_reported_and_replaceable():
    path = require_shared("data", "crowdpose_mini") / "person_keypoints.json"
    with pytest.warns(KeypointSetWarning) as caught:
        info = read_keypoint_categories(path)
    message = str(caught[0].message)
    assert str(path) in message and "categories[0].skeleton" in message
    assert "6..17" in message and "14 keypoints" in message
    assert info["skeleton"] == ()  # nothing drawn rather than something wrong
    config = point_at(load_config("custom_keypoints"), "crowdpose_mini")
    config.data.keypoints.skeleton = ((12, 13), (13, 0), (13, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keypoint_sets.resolve(config)
    assert keypoint_sets.of_config(config)["skeleton"] == ((12, 13), (13, 0), (13, 1))


def test_bad_config_skeleton_names_the_field():
    config = point_at(load_config("custom_keypoints"), "onehand10k_mini")
    config.data.keypoints.skeleton = ((0, 21),)
    with pytest.raises(ValueError, match=r"^config.data.keypoints.skeleton: \(0, 21\) names "
                                         "no joint"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            keypoint_sets.resolve(config)


def test_skeleton_variants(tmp_path):
    from prtr_tf.data.keypoint_file import skeleton_from_file
    with pytest.warns(KeypointSetWarning, match="read as 0-based"):
        assert skeleton_from_file([[0, 1], [1, 2]], 3, "f") == ((0, 1), (1, 2))
    with pytest.warns(KeypointSetWarning, match="not a list of"):
        assert skeleton_from_file([[1, "b"]], 3, "f") == ()
    assert skeleton_from_file([], 3, "f") == ()


def test_files_without_keypoint_categories_or_with_two_sets(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"images": [], "annotations": [],
                                "categories": [{"id": 1, "name": "x"}]}))
    with pytest.raises(ValueError, match=r"a.json: no entry of 'categories' has a "
                                         "'keypoints' list"):
        read_keypoint_categories(path)
    path.write_text(json.dumps({"categories": [
        {"id": 1, "name": "x", "keypoints": ["a", "b"]},
        {"id": 2, "name": "y", "keypoints": ["a", "c"]}]}))
    with pytest.raises(ValueError, match=r"categories\[0\] \('x'\) and categories\[1\] "
                                         r"\('y'\) have different 'keypoints' lists"):
        read_keypoint_categories(path)


def test_a_custom_config_without_its_data_names_the_file(tmp_path):
    config = load_config("custom_keypoints")
    config.data.root = str(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="nothing/annotations/train.json does not "
                                                "exist"):
        registry.get(config)


def test_num_joints_that_does_not_fit_the_file_is_an_error():
    config = point_at(load_config("custom_keypoints"), "onehand10k_mini")
    config.model.num_joints = 17
    with pytest.raises(ValueError, match="config.model.num_joints=17 but .*hand_keypoints"
                                         ".json has 21 joints"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            registry.get(config)


def test_fewer_queries_than_joints_is_an_error_naming_the_field():
    config = point_at(load_config("custom_keypoints"), "onehand10k_mini")
    config.model.num_queries = 20
    with pytest.raises(ValueError, match=r"config.model.num_queries=20 is fewer than the 21 "
                                         r"joints of .*hand_keypoints.json.*"
                                         r"--config.model.num_queries=21 or more"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            registry.get(config)


@pytest.mark.parametrize("name", ["custom_detector", "custom_e2e"])
def test_custom_detector_and_end_to_end_configs_take_the_set(name):
    config = custom_config("ap10k_mini", config_name=name, tiny=False)
    assert keypoint_sets.category_ids(config)[:3] == (1, 2, 3)
    assert len(keypoint_sets.category_ids(config)) == 54
    if name == "custom_e2e":
        assert config.model.num_joints == 17
    from prtr_tf.models.detector.records import load_split
    records = load_split(config, "val")
    assert sum(len(r["boxes"]) for r in records) == 2  # both animals, of two species


def test_config_fields_replace_the_files_and_are_checked():
    config = point_at(load_config("custom_keypoints"), "onehand10k_mini")
    config.data.keypoints.flip_pairs = (("thumb1", "pinky_finger1"),)  # names or indices
    config.data.keypoints.sigmas = tuple([0.03] * 21)
    keypoint_sets.resolve(config)  # no warning: pairs and sigmas given
    kset = keypoint_sets.of_config(config)
    assert kset["flip_pairs"] == ((1, 17),) and kset["sigma_source"] == "given"
    np.testing.assert_allclose(kset["sigmas"], 0.03)
    config = point_at(load_config("custom_keypoints"), "onehand10k_mini")
    config.data.keypoints.sigmas = (0.1, 0.2)
    with pytest.raises(ValueError, match=r"config.data.keypoints.sigmas has 2 values; the 21 "
                                         r"joints of .*hand_keypoints.json need one each"):
        keypoint_sets.resolve(config)
