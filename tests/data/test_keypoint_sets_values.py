"""Keypoint-set facts pinned to the published tables and to hand-derived values
(issue 27): sigma lookup by NAME (so order and spelling matter), `default_sigma`,
flip-pair derivation corner cases, the checks of given pairs and sigmas."""
import json
import warnings

import ml_collections
import numpy as np
import pytest

from prtr_tf.data import keypoint_sets as ks
from prtr_tf.data.keypoint_file import KeypointSetWarning

# pycocotools COCOeval.Params.kpt_oks_sigmas, by joint (typed in from the paper's
# table, not read from the module).
COCO_BY_NAME = {"nose": .026, "eye": .025, "ear": .035, "shoulder": .079, "elbow": .072,
                "wrist": .062, "hip": .107, "knee": .087, "ankle": .089}


def _part(name):
    return name.split("_")[-1]


def test_coco_sigmas_belong_to_their_joints():
    # Rules out a shifted or swapped table (e.g. hips .087 and knees .107).
    expected = [COCO_BY_NAME[_part(n)] for n in ks.COCO_JOINTS]
    np.testing.assert_allclose(ks.COCO_SIGMAS, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ks.DATASETS["coco"]["sigmas"], expected, atol=1e-12)
    assert ks.DATASETS["coco"]["sigma_source"] == "published (coco)"
    assert ks.DATASETS["mpii"]["sigmas"] is None  # PCKh: no OKS
    assert ks.DATASETS["mpii"]["sigma_source"] == "none"


def test_known_sigmas_follow_the_order_and_spelling_of_the_names():
    # COCO joints reversed and spelled L_/R_ CamelCase: the sigmas come back in THAT
    # order. Rules out returning the table's order, or matching spellings literally.
    spelled = [("L_" if n.startswith("left") else "R_" if n.startswith("right") else "")
               + _part(n).capitalize() for n in ks.COCO_JOINTS][::-1]
    sigmas, table = ks.known_sigmas(spelled)
    assert table == "coco"
    expected = [COCO_BY_NAME[_part(n)] for n in ks.COCO_JOINTS][::-1]
    np.testing.assert_allclose(sigmas, expected, atol=1e-12)
    assert isinstance(sigmas, tuple) and all(isinstance(s, float) for s in sigmas)


def test_known_sigmas_of_the_hand_with_unequal_values():
    # The hand's sigmas all differ a little: rotate the names by one and the sigmas
    # must rotate with them. wrist .029, thumb1 .022, pinky_finger4 .031 (mmpose).
    names, table_sigmas = ks.KNOWN_SETS["hand21"]
    rotated = names[1:] + names[:1]
    sigmas, table = ks.known_sigmas(rotated)
    assert table == "hand21"
    assert sigmas[0] == pytest.approx(.022) and sigmas[-1] == pytest.approx(.029)
    assert sigmas[-2] == pytest.approx(.031)
    # a subset or a superset of a table's names is not that table
    assert ks.known_sigmas(names[:-1]) == (None, None)
    assert ks.known_sigmas(tuple(names) + ("tail",)) == (None, None)


def test_crowdpose_and_ap10k_tables_are_matched_by_name():
    cp = ("head", "neck") + ks.KNOWN_SETS["crowdpose"][0][:12]
    sigmas, table = ks.known_sigmas(cp)
    assert table == "crowdpose"
    assert sigmas[:2] == pytest.approx((.079, .079))
    assert sigmas[8] == pytest.approx(.107)  # left_hip (index 6 of the table)
    ap = ks.KNOWN_SETS["ap10k"][0]
    sigmas, table = ks.known_sigmas(ap)
    assert table == "ap10k"
    assert sigmas[:5] == pytest.approx((.025, .025, .026, .035, .035))


def test_default_sigma_applies_to_every_joint_of_an_unknown_set():
    # Rules out ignoring default_sigma, using DEFAULT_SIGMA instead of the one given,
    # or a default when none is given (then: no sigmas, no OKS).
    assert ks.DEFAULT_SIGMA == 0.05
    assert ks.keypoints_config().default_sigma == 0.05
    with pytest.warns(KeypointSetWarning, match="default_sigma=0.07"):
        kset = ks.make_keypoint_set(["head", "left_fin", "right_fin"], default_sigma=0.07)
    np.testing.assert_array_equal(kset["sigmas"], [0.07, 0.07, 0.07])
    assert kset["sigmas"].dtype == np.float64
    assert kset["sigma_source"] == "default (0.07 for every joint)"
    assert kset["flip_pairs"] == ((1, 2),)
    for none in (None, 0, 0.0):
        kset = ks.make_keypoint_set(["head", "left_fin", "right_fin"], default_sigma=none)
        assert kset["sigmas"] is None and kset["sigma_source"] == "none"


def test_given_sigmas_win_over_a_table_and_are_checked():
    given = np.linspace(0.01, 0.17, 17)
    kset = ks.make_keypoint_set(ks.COCO_JOINTS, sigmas=given, default_sigma=0.05)
    np.testing.assert_array_equal(kset["sigmas"], given)
    assert kset["sigma_source"] == "given"
    for bad in (given[:16], np.r_[given[:16], 0.0], np.r_[given[:16], -0.1],
                np.r_[given[:16], np.nan], np.r_[given[:16], np.inf]):
        with pytest.raises(ValueError, match="17 positive numbers"):
            ks.make_keypoint_set(ks.COCO_JOINTS, sigmas=bad)
    # an empty tuple means "not given": the table's
    kset = ks.make_keypoint_set(ks.COCO_JOINTS, sigmas=())
    assert kset["sigma_source"] == "published (coco)"


def test_builtin_flip_pairs_from_the_names():
    # Worked out from the joint lists: COCO (1,2)..(15,16); MPII right joints first.
    assert ks.COCO_FLIP_PAIRS == ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12),
                                  (13, 14), (15, 16))
    assert ks.MPII_FLIP_PAIRS == ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))


def test_flip_pair_corner_cases():
    # A right joint before its left one: the pair is still (lower, higher).
    assert ks.make_keypoint_set(["right_paw", "tail", "left_paw"])["flip_pairs"] == ((0, 2),)
    # Two left eyes and one right eye: ambiguous, no pair (and a warning).
    with pytest.warns(KeypointSetWarning, match="no left/right pairs"):
        kset = ks.make_keypoint_set(["left_eye", "left_eye", "right_eye"])
    assert kset["flip_pairs"] == ()
    # A partner-less sided joint: warned about, the others still paired.
    with pytest.warns(KeypointSetWarning, match=r"\['left_tail'\]"):
        kset = ks.make_keypoint_set(["l_ear", "r_ear", "left_tail"])
    assert kset["flip_pairs"] == ((0, 1),)
    # given pairs by name or index, in either order inside the pair
    kset = ks.make_keypoint_set(["a", "b", "c", "d"], flip_pairs=[("d", "b"), (0, 2)])
    assert kset["flip_pairs"] == ((3, 1), (0, 2))


@pytest.mark.parametrize("pairs, match", [
    ([(0, 0)], "use a joint twice"),
    ([(0, 1), (1, 2)], "use a joint twice"),
    ([(0, 3)], "names no joint"),          # index == number of joints
    ([(0, -1)], "names no joint"),
    ([(True, 2)], "names no joint"),       # bools are not indices
    ([(0, "nose")], "names no joint"),
    ([(0, 1, 2)], "is not a pair"),
    ([0], "is not a pair"),
])
def test_given_flip_pairs_are_checked(pairs, match):
    with pytest.raises(ValueError, match=match):
        ks.make_keypoint_set(["a", "b", "c"], flip_pairs=pairs)


def test_last_index_is_a_valid_joint():
    # Rules out an off-by-one in the range check (< num_joints - 1 or <= num_joints).
    kset = ks.make_keypoint_set(["a", "b", "c"], skeleton=[(0, 2), (np.int64(1), 2)],
                                flip_pairs=[(1, 2)])
    assert kset["skeleton"] == ((0, 2), (1, 2)) and kset["flip_pairs"] == ((1, 2),)
    assert all(type(v) is int for e in kset["skeleton"] for v in e)


def test_flip_permutation_swaps_both_ways():
    # Rules out swapping one way only (perm[a] = b without perm[b] = a).
    assert ks.flip_permutation(5, ((1, 3),)) == [0, 3, 2, 1, 4]
    assert ks.flip_permutation(5, ((3, 1), (0, 4))) == [4, 3, 2, 1, 0]
    assert ks.flip_permutation(3, ()) == [0, 1, 2]


def test_normalized_names():
    assert ks.normalized_names(["L_Shoulder", "REye", "nose", "eye_r", "__"]) == (
        "left_shoulder", "right_eye", "nose", "eye_right", "__")


def _custom_config(**kp):
    fields = dict(joints=("head", "left_fin", "right_fin"), skeleton=((0, 1), (0, 2)),
                  flip_pairs=((1, 2),), sigmas=(0.1, 0.2, 0.3), resolved_from="x.json",
                  sigma_source="given")
    fields.update(kp)
    return ml_collections.ConfigDict(dict(
        data=dict(dataset="custom", keypoints=ks.keypoints_config(**fields)),
        model=dict(num_joints=3)))


def test_metadata_of_a_custom_and_a_builtin_config():
    meta = ks.metadata(_custom_config())
    assert meta == dict(dataset="custom", keypoint_names=["head", "left_fin", "right_fin"],
                        skeleton=[[0, 1], [0, 2]], flip_pairs=[[1, 2]],
                        sigmas=[0.1, 0.2, 0.3])
    assert ks.oks_sigmas(_custom_config()).tolist() == [0.1, 0.2, 0.3]
    assert ks.flip_pairs_of(_custom_config()) == ((1, 2),)
    assert ks.flip_pairs_of(_custom_config(), enabled=False) is None
    assert ks.flip_pairs_of(_custom_config(flip_pairs=())) is None
    mpii = ml_collections.ConfigDict(dict(data=dict(dataset="mpii")))
    meta = ks.metadata(mpii)
    assert meta["sigmas"] is None and meta["keypoint_names"][0] == "right_ankle"
    assert meta["flip_pairs"][0] == [0, 5]
    assert ks.oks_sigmas(mpii) is None
    assert ks.category_ids(mpii) == (1,)
    assert ks.category_ids(_custom_config(category_ids=(3, 7))) == (3, 7)


def test_set_from_metadata_fills_sigmas_of_builtin_sets_only():
    coco = ks.metadata(ml_collections.ConfigDict(dict(data=dict(dataset="coco"))))
    old = dict(coco, sigmas=None)  # exported before sigmas were recorded
    kset = ks.set_from_metadata(old)
    np.testing.assert_allclose(kset["sigmas"], ks.COCO_SIGMAS)
    assert kset["flip_pairs"] == ks.COCO_FLIP_PAIRS and kset["name"] == "coco"
    custom = dict(ks.metadata(_custom_config()), sigmas=None)
    assert ks.set_from_metadata(custom)["sigmas"] is None
    with pytest.raises(ValueError, match="m.tflite: skeleton"):
        ks.set_from_metadata(dict(custom, skeleton=[[0, 3]]), where="m.tflite")
    back = ks.keypoints_config_of(ks.set_from_metadata(ks.metadata(_custom_config())), "f")
    assert back.sigmas == (0.1, 0.2, 0.3) and back.flip_pairs == ((1, 2),)
    assert back.resolved_from == "f" and back.skeleton == ((0, 1), (0, 2))


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="unknown dataset 'cocoa'.*'custom'"):
        ks.keypoint_set("cocoa")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ks.keypoint_set("coco") is ks.DATASETS["coco"]


def _unresolved(tmp_path, **kp):
    return ml_collections.ConfigDict(dict(
        data=dict(dataset="custom", root=str(tmp_path), train_ann="none.json",
                  val_ann="none.json", keypoints=ks.keypoints_config(**kp)),
        model=dict(num_joints=0, num_queries=4)))


def test_resolve_from_config_fields_only(tmp_path):
    # No annotation file: the joints from the config; default sigma 0.05 for unknown
    # names, category 1, num_joints filled in, the source recorded.
    config = _unresolved(tmp_path, joints=("head", "left_fin", "right_fin"),
                         skeleton=((0, 1),))
    with pytest.warns(KeypointSetWarning, match="default_sigma=0.05"):
        ks.resolve(config)
    kp = config.data.keypoints
    assert kp.joints == ("head", "left_fin", "right_fin") and kp.skeleton == ((0, 1),)
    assert kp.flip_pairs == ((1, 2),) and kp.sigmas == (0.05, 0.05, 0.05)
    assert kp.category_ids == (1,) and kp.resolved_from == "config.data.keypoints"
    assert kp.sigma_source == "default (0.05 for every joint)"
    assert config.model.num_joints == 3
    with pytest.raises(ValueError, match="num_queries=2 is fewer than the 3 joints"):
        ks.resolve(_with(tmp_path, num_queries=2))
    with pytest.raises(ValueError, match="num_joints=2 but config.data.keypoints has 3"):
        ks.resolve(_with(tmp_path, num_joints=2))
    with pytest.raises(ValueError, match="sigmas has 2 values; the 3 joints of "
                                         "config.data.keypoints need one each"):
        ks.resolve(_with(tmp_path, sigmas=(0.1, 0.2)))
    with pytest.raises(FileNotFoundError, match="none.json does not exist"):
        ks.resolve(_unresolved(tmp_path))


def _with(tmp_path, num_queries=4, num_joints=0, **kp):
    config = _unresolved(tmp_path, joints=("a", "left_b", "right_b"), **kp)
    config.model.num_queries = num_queries
    config.model.num_joints = num_joints
    return config


def test_resolve_without_sigmas_scores_without_oks(tmp_path):
    config = _unresolved(tmp_path, joints=("head", "left_fin", "right_fin"),
                         default_sigma=0.0)
    ks.resolve(config)
    assert ks.oks_sigmas(config) is None


def test_set_from_metadata_and_back_field_by_field():
    # Every field of the set an export's metadata gives, its defaults for the fields an
    # old export lacks, and the config fields keypoints_config_of makes of it.
    meta = {"keypoint_names": [1, "b"], "sigmas": [1, 2]}
    kset = ks.set_from_metadata(meta)
    assert kset["joints"] == ("1", "b") and kset["name"] == "custom"
    assert kset["skeleton"] == () and kset["flip_pairs"] == ()
    assert kset["sigmas"].dtype == np.float64 and kset["sigmas"].tolist() == [1.0, 2.0]
    assert kset["sigma_source"] == "the metadata of the export"
    with pytest.raises(ValueError, match=r"^the export: flip_pairs: \[0, 5\] names no"):
        ks.set_from_metadata(dict(meta, flip_pairs=[[0, 5]]))
    kp = ks.keypoints_config_of(kset, "m.tflite")
    assert kp.joints == ("1", "b") and kp.sigmas == (1.0, 2.0)
    assert kp.sigma_source == "the metadata of the export" and kp.resolved_from == "m.tflite"
    kp = ks.keypoints_config_of({k: v for k, v in kset.items() if k != "sigma_source"}, "x")
    assert kp.sigma_source == ""
    kp = ks.keypoints_config_of(dict(kset, sigmas=None), "x")
    assert kp.sigmas == ()
    # of_config of a resolved custom config: every field, sigmas as float64
    got = ks.of_config(_custom_config(sigmas=(1, 2, 3)))
    assert got["name"] == "custom" and got["sigma_source"] == "given"
    assert got["sigmas"].dtype == np.float64
    assert ks.oks_sigmas(_custom_config(sigmas=(1, 2, 3))).dtype == np.float64
    # normalized names keep an unsided name's own words
    assert ks.normalized_names(["Head Top"]) == ("head_top",)


# ------------------------------------------------- adopt / has_own_set (issue 30 helpers)

def _bare(tmp_path=None, num_joints=0, detector=False, **kp):
    """An unresolved custom config whose data fields point at nothing (``none.json``)."""
    model = {} if detector else dict(num_joints=num_joints)
    return ml_collections.ConfigDict(dict(
        data=dict(dataset="custom", root=str(tmp_path or "/nonexistent-prtr"),
                  train_ann="none.json", val_ann="none.json",
                  keypoints=ks.keypoints_config(**kp)),
        model=model))


# An export's metadata: three joints whose sigmas all differ (a field copied from the
# wrong place, or left at its default, shows).
_META = dict(dataset="custom", keypoint_names=["head", "left_fin", "right_fin"],
             skeleton=[[0, 1], [0, 2]], flip_pairs=[[1, 2]], sigmas=[0.1, 0.2, 0.3],
             category_ids=["3", 7])


def test_unresolved_custom_and_has_own_set():
    """Rules out: treating COCO/MPII configs, resolved custom configs, configs without
    a data section, or objects that are no config as "unresolved custom"; and
    has_own_set saying yes for a bare custom config (no joints, no file)."""
    assert ks._unresolved_custom(_bare()) is True
    assert ks.has_own_set(_bare()) is False
    resolved = _bare(resolved_from="x.json")
    assert ks._unresolved_custom(resolved) is False and ks.has_own_set(resolved) is True
    coco = ml_collections.ConfigDict(dict(data=dict(dataset="coco")))
    assert ks._unresolved_custom(coco) is False and ks.has_own_set(coco) is True
    no_data = ml_collections.ConfigDict(dict(model=dict(num_joints=3)))
    assert ks._unresolved_custom(no_data) is False and ks.has_own_set(no_data) is True
    for thing in (object(), "custom", None):  # no .get: not a config
        assert ks._unresolved_custom(thing) is False
    # joints given in the config: its own set, without a file
    assert ks.has_own_set(_bare(joints=("a", "b"))) is True


def test_has_own_set_finds_the_train_or_the_val_file(tmp_path):
    """An annotation file where train_ann or val_ann points is the config's own set.
    Rules out checking one split only, or reading the result the wrong way round."""
    config = _bare(tmp_path)
    assert ks.has_own_set(config) is False
    (tmp_path / "val.json").write_text("{}")
    config.data.val_ann = "val.json"
    assert ks.has_own_set(config) is True
    assert ks._annotation_file(config) == str(tmp_path / "val.json")
    (tmp_path / "train.json").write_text("{}")
    config.data.train_ann = "train.json"
    assert ks._annotation_file(config) == str(tmp_path / "train.json")  # train first


def test_adopt_an_exports_metadata_field_by_field():
    """Every field of the set is copied from the metadata (joints, skeleton, pairs, the
    three different sigmas, its category ids as ints), num_joints 0 becomes 3, and the
    set records where it came from. Rules out a field left empty or taken from another
    field, ids left as strings, and the source named wrongly."""
    config = _bare()
    assert ks.adopt(config, dict(_META), "m.tflite") is True
    kp = config.data.keypoints
    assert tuple(kp.joints) == ("head", "left_fin", "right_fin")
    assert tuple(kp.skeleton) == ((0, 1), (0, 2))
    assert tuple(kp.flip_pairs) == ((1, 2),)
    assert tuple(kp.sigmas) == (0.1, 0.2, 0.3)
    assert tuple(kp.category_ids) == (3, 7)
    assert all(type(c) is int for c in kp.category_ids)
    assert kp.sigma_source == "the metadata of m.tflite"
    assert kp.resolved_from == "m.tflite"  # not "m.tflite (m.tflite)"
    assert config.model.num_joints == 3
    # adopted: resolved now, a second source changes nothing
    assert ks.adopt(config, dict(_META, keypoint_names=["x", "y"]), "other") is False
    assert tuple(config.data.keypoints.joints) == ("head", "left_fin", "right_fin")
    # of_config reads the adopted set (no file needed)
    np.testing.assert_array_equal(ks.oks_sigmas(config), [0.1, 0.2, 0.3])


def test_adopt_metadata_without_category_ids_takes_the_person_category():
    """Metadata with no (or empty) category_ids: category 1 (rules out () or another
    default); a detector config (no num_joints) gets none added."""
    for meta in ({k: v for k, v in _META.items() if k != "category_ids"},
                 dict(_META, category_ids=[])):
        config = _bare(detector=True)
        assert ks.adopt(config, meta, "w") is True
        assert tuple(config.data.keypoints.category_ids) == (1,)
        assert "num_joints" not in config.model


def test_adopt_checks_num_joints_and_names_the_source():
    """num_joints equal to the set's joints or 0 is fine; any other number is an error
    naming the config field, the source and the set's count, and leaves the config
    unresolved. Rules out inverted or shifted checks (e.g. (1, num))."""
    config = _bare(num_joints=3)
    assert ks.adopt(config, dict(_META), "m.onnx") is True
    assert config.model.num_joints == 3
    for wrong in (1, 2, 4):
        config = _bare(num_joints=wrong)
        with pytest.raises(ValueError, match=rf"^config.model.num_joints={wrong} but m.onnx "
                                             r"has 3 joints \(0: take the number from "
                                             r"it\)$"):
            ks.adopt(config, dict(_META), "m.onnx")
        assert not config.data.keypoints.resolved_from and config.model.num_joints == wrong


def test_adopt_metadata_errors_name_the_source():
    # the metadata's pairs are checked, the message naming ``where``
    with pytest.raises(ValueError, match=r"^m.tflite: flip_pairs: \[1, 5\] names no joint"):
        ks.adopt(_bare(), dict(_META, flip_pairs=[[1, 5]]), "m.tflite")


def test_adopt_a_resolved_custom_config():
    """A pose config's set passes to the detector config: every field, the source as
    "where (the file it was read from)". A config that is not custom (COCO) gives
    nothing, and configs already resolved or not custom take nothing."""
    pose = _custom_config(category_ids=(4, 9), sigma_source="published (x)")
    detector = _bare(detector=True)
    assert ks.adopt(detector, pose, "--config") is True
    kp = detector.data.keypoints
    assert tuple(kp.joints) == ("head", "left_fin", "right_fin")
    assert tuple(kp.skeleton) == ((0, 1), (0, 2)) and tuple(kp.flip_pairs) == ((1, 2),)
    assert tuple(kp.sigmas) == (0.1, 0.2, 0.3) and tuple(kp.category_ids) == (4, 9)
    assert kp.sigma_source == "published (x)"
    assert kp.resolved_from == "--config (x.json)"
    # a source recorded under the same name is not repeated
    same = _bare()
    assert ks.adopt(same, _custom_config(resolved_from="--config"), "--config") is True
    assert same.data.keypoints.resolved_from == "--config"
    assert same.model.num_joints == 3
    # COCO's config: no custom set to take
    coco = ml_collections.ConfigDict(dict(data=dict(dataset="coco")))
    other = _bare()
    assert ks.adopt(other, coco, "--config") is False
    assert not other.data.keypoints.resolved_from and other.model.num_joints == 0
    # not custom, or resolved: left as they are
    mpii = ml_collections.ConfigDict(dict(data=dict(dataset="mpii"), model=dict(num_joints=16)))
    assert ks.adopt(mpii, pose, "--config") is False
    assert mpii.model.num_joints == 16 and "keypoints" not in mpii.data
    done = _custom_config(joints=("a", "left_b", "right_b"))
    assert ks.adopt(done, pose, "--config") is False
    assert tuple(done.data.keypoints.joints) == ("a", "left_b", "right_b")


# ---------------------------------------------- make_keypoint_set: defaults, messages

def test_make_keypoint_set_returns_every_field():
    """The whole dict of a small set: names as str (1 -> "1"), a skeleton given by
    joint NAMES, the default name "custom". Rules out a field dropped or renamed, the
    names not passed to the skeleton check, and another default name."""
    kset = ks.make_keypoint_set([1, "left_b", "right_b"], skeleton=[("1", "right_b"), (1, 2)],
                                sigmas=[1, 2, 3])
    sigmas = kset.pop("sigmas")
    assert kset == dict(name="custom", joints=("1", "left_b", "right_b"),
                        skeleton=((0, 2), (1, 2)), flip_pairs=((1, 2),), sigma_source="given")
    # integer sigmas are stored as float64 (OKS divides by them)
    assert sigmas.dtype == np.float64 and sigmas.tolist() == [1.0, 2.0, 3.0]


def test_make_keypoint_set_errors_name_the_source_and_the_valid_range():
    """The default source is "the config"; the range given is 0..J-1 (rules out J+1
    or J-2 in the message, and the field left out)."""
    with pytest.raises(ValueError, match=r"^the config: skeleton: \(0, 3\) names no joint "
                                         r"\(0-based indices 0\.\.2 or one of the joint "
                                         r"names\)$"):
        ks.make_keypoint_set(["a", "b", "c"], skeleton=[(0, 3)])
    with pytest.raises(ValueError, match=r"^f.json: flip_pairs: \(0, 'x'\) names no joint "
                                         r"\(0-based indices 0\.\.4 or one"):
        ks.make_keypoint_set(list("abcde"), flip_pairs=[(0, "x")], source="f.json")


def _caught(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn(*args, **kwargs)
    return caught


def _stacklevels(monkeypatch, fn, *args, **kwargs):
    """The (message, category, stacklevel) of each warnings.warn call of ``fn``. The
    stacklevel is read from the call itself: a wrapper around the function (mutmut's
    trampolines add two frames) would move the file a warning is attributed to."""
    calls = []

    def warn(message, category=None, stacklevel=1, source=None):
        calls.append((str(message), category, stacklevel))
    monkeypatch.setattr(warnings, "warn", warn)
    fn(*args, **kwargs)
    monkeypatch.undo()
    return calls


def test_make_keypoint_set_warnings_say_what_to_do_and_point_at_the_caller(monkeypatch):
    """The three warnings (no pairs, a partner-less side, the default sigma) in full,
    each attributed to the line that called make_keypoint_set (stacklevel 2: not
    keypoint_sets.py (1), nor the caller's caller (3)); and, without a wrapper, that
    line is in this file."""
    no_pairs = ("the config: no left/right pairs among the joint names ['a', 'b']: "
                "horizontal flip is disabled in training and in the flip test (give pairs "
                "with --config.data.keypoints.flip_pairs)")
    default = ("the config: no published OKS sigmas for these joints: every joint uses "
               "config.data.keypoints.default_sigma=0.25 (set --config.data.keypoints.sigmas "
               "for your own)")
    unpaired = ("s: joints ['left_tail'] have a side but no partner: they are not swapped "
                "when flipping")
    calls = _stacklevels(monkeypatch, ks.make_keypoint_set, ["a", "b"], default_sigma=0.25)
    calls += _stacklevels(monkeypatch, ks.make_keypoint_set, ["l_ear", "r_ear", "left_tail"],
                          source="s")
    assert calls == [(no_pairs, KeypointSetWarning, 2), (default, KeypointSetWarning, 2),
                     (unpaired, KeypointSetWarning, 2)]
    caught = _caught(ks.make_keypoint_set, ["a", "b"], default_sigma=0.25)
    assert [str(w.message) for w in caught] == [no_pairs, default]
    if not hasattr(ks.make_keypoint_set, "__wrapped__"):
        assert all(w.filename == __file__ for w in caught)


# ------------------------------------------------------ resolve with an annotation file

def _ann(tmp_path, joints=("nose", "left_fin", "right_fin"), skeleton=((1, 2), (1, 3)),
         ids=(4, 7)):
    cats = [dict(id=i, name=f"c{i}", keypoints=list(joints), skeleton=[list(e) for e in
                                                                       skeleton])
            for i in ids]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(dict(images=[], annotations=[], categories=cats)))
    config = _unresolved(tmp_path)
    config.data.train_ann = "train.json"
    return config, str(path)


def test_resolve_takes_skeleton_and_categories_from_the_file(tmp_path):
    """From the file: the 1-based skeleton (as 0-based), the category ids of every
    category sharing the set, the file as source in the warning. Rules out the
    file's skeleton or categories being ignored (() / (1,)) and a wrong source."""
    config, path = _ann(tmp_path)
    caught = _caught(ks.resolve, config)
    kp = config.data.keypoints
    assert tuple(kp.joints) == ("nose", "left_fin", "right_fin")
    assert tuple(kp.skeleton) == ((0, 1), (0, 2))
    assert tuple(kp.category_ids) == (4, 7)
    assert kp.resolved_from == path and config.model.num_joints == 3
    assert [str(w.message).split(": no published")[0] for w in caught] == [path]


def test_resolve_config_joints_rename_the_files(tmp_path):
    """Joints given in the config with the file's count replace the file's names (the
    file's skeleton kept); another count is an error naming both counts, the file and
    its names. Rules out the check inverted or its message losing the file's names."""
    config, path = _ann(tmp_path)
    config.data.keypoints.joints = ("head", "l_fin", "r_fin")
    _caught(ks.resolve, config)
    assert tuple(config.data.keypoints.joints) == ("head", "l_fin", "r_fin")
    assert tuple(config.data.keypoints.flip_pairs) == ((1, 2),)
    assert tuple(config.data.keypoints.skeleton) == ((0, 1), (0, 2))
    config, path = _ann(tmp_path)
    config.data.keypoints.joints = ("a", "b")
    with pytest.raises(ValueError) as e:
        ks.resolve(config)
    assert str(e.value) == (f"config.data.keypoints.joints names 2 joints but {path} has 3 "
                            "(['nose', 'left_fin', 'right_fin'])")


def test_resolve_errors_name_the_file_as_source(tmp_path):
    """make_keypoint_set's own checks (a joint used twice) name the file the set came
    from; without file and joints, the error says what to do."""
    config, path = _ann(tmp_path)
    config.data.keypoints.flip_pairs = ((0, 1), (1, 2))
    with pytest.raises(ValueError, match=rf"^{path}: flip_pairs \(\(0, 1\), \(1, 2\)\) use "
                                         "a joint twice$"):
        ks.resolve(config)
    with pytest.raises(FileNotFoundError, match=r"point --config.data.root at your "
                                                r"COCO-format folder or give the joints "
                                                r"with --config.data.keypoints.joints$"):
        ks.resolve(_unresolved(tmp_path))


def test_resolve_checks_the_keypoint_queries(tmp_path):
    """kpt_num_queries (the end-to-end models' keypoint queries) fewer than the joints
    is an error, as num_queries is. Rules out checking num_queries only."""
    config = _with(tmp_path)
    config.model.kpt_num_queries = 2
    with pytest.raises(ValueError, match=r"config.model.kpt_num_queries=2 is fewer than the "
                                         r"3 joints .*--config.model.kpt_num_queries=3 or "
                                         "more"):
        _caught(ks.resolve, config)


def test_resolve_leaves_other_configs_as_they_are():
    """COCO, a config without data, an object that is no config: returned unchanged.
    Rules out resolving them (they have no keypoints section: AttributeError)."""
    coco = ml_collections.ConfigDict(dict(data=dict(dataset="coco"), model=dict()))
    assert ks.resolve(coco) is coco and coco.to_dict() == dict(data=dict(dataset="coco"),
                                                               model={})
    no_data = ml_collections.ConfigDict(dict(model=dict(num_joints=0)))
    assert ks.resolve(no_data) is no_data and no_data.model.num_joints == 0
    thing = object()
    assert ks.resolve(thing) is thing


def test_keypoints_config_fields_are_empty_until_resolved():
    """Every set field empty (``()`` / ``""``: "from the annotation file", and "not
    resolved yet" for resolved_from), the default sigma DEFAULT_SIGMA. Rules out a
    field missing (resolve writes sigma_source) or None (a tuple flag can not override
    a None field; JSON records would hold null)."""
    assert ks.keypoints_config().to_dict() == dict(
        joints=(), skeleton=(), flip_pairs=(), sigmas=(), default_sigma=0.05,
        category_ids=(), sigma_source="", resolved_from="")
    assert ks.keypoints_config(sigma_source="s").sigma_source == "s"
