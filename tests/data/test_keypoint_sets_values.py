"""Keypoint-set facts pinned to the published tables and to hand-derived values
(issue 27): sigma lookup by NAME (so order and spelling matter), `default_sigma`,
flip-pair derivation corner cases, the checks of given pairs and sigmas."""
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
