"""A COCO-format file's keypoint set pinned at the edges (issue 27): the 1-based
skeleton's bounds 1..J (J itself included), the 0-based reading only for 0..J-1,
what is not a pair, and the categories that share or disagree on a set."""
import json
import warnings

import pytest

from prtr_tf.data import keypoint_file as kf
from prtr_tf.data.keypoint_file import KeypointSetWarning


def _quiet(raw, j=3):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return kf.skeleton_from_file(raw, j, "f.json: categories[0]")


@pytest.mark.parametrize("raw, expected", [
    ([[1, 2], [2, 3]], ((0, 1), (1, 2))),     # J = 3 itself is a valid 1-based index
    ([[3, 1]], ((2, 0),)),
    ((), ()), ([], ()), (None, ()),
])
def test_one_based_skeletons(raw, expected):
    assert _quiet(raw) == expected


def test_zero_based_and_unfitting_skeletons_warn():
    with pytest.warns(KeypointSetWarning, match=r"f.json: categories\[0\].skeleton holds "
                                                "joint index 0: read as 0-based"):
        assert kf.skeleton_from_file([[0, 2], [1, 2]], 3, "f.json: categories[0]") == \
            ((0, 2), (1, 2))
    # 0 and 3 with J = 3: neither 1-based nor 0-based
    with pytest.warns(KeypointSetWarning, match=r"holds joint indices 0..3, but the "
                                                r"category has 3 keypoints \(1-based "
                                                r"indices 1..3\)"):
        assert kf.skeleton_from_file([[0, 3]], 3, "w") == ()
    with pytest.warns(KeypointSetWarning, match="indices 1..4"):
        assert kf.skeleton_from_file([[1, 4]], 3, "w") == ()
    with pytest.warns(KeypointSetWarning, match="indices -1..2"):
        assert kf.skeleton_from_file([[-1, 2]], 3, "w") == ()
    for bad in ([[1, 2, 3]], [[1]], [[1, "2"]], [[True, 2]], [[1.0, 2]], "1-2", [3]):
        with pytest.warns(KeypointSetWarning, match=r"^w.skeleton is not a list of "
                                                    r"\[joint, joint\] integer pairs: it is "
                                                    "not used"):
            assert kf.skeleton_from_file(bad, 3, "w") == ()
    assert kf._edges([(1, 2)]) == [(1, 2)] and kf._edges(5) is None


def _write(tmp_path, categories, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    return str(path)


def test_categories_sharing_a_set_and_their_ids(tmp_path):
    kps = ["nose", "left_eye", "right_eye"]
    path = _write(tmp_path, [
        {"id": 4, "name": "cat", "keypoints": kps, "skeleton": [[1, 2], [1, 3]]},
        {"id": 9, "name": "bg"},  # no keypoints: not one of the set's categories
        {"id": 7, "name": "dog", "keypoints": kps},
        {"name": "noid", "keypoints": kps}])
    info = kf.read_keypoint_categories(path)
    assert info == dict(joints=("nose", "left_eye", "right_eye"), skeleton=((0, 1), (0, 2)),
                        file=path, category_ids=(4, 7),
                        category_names=("cat", "dog", "noid"))


def test_category_errors_name_the_file_and_entries(tmp_path):
    path = _write(tmp_path, [{"id": 1, "name": "a", "keypoints": ["x", "y"]},
                             {"id": 2, "name": "b", "keypoints": ["y", "x"]}])
    with pytest.raises(ValueError, match=r"categories\[0\] \('a'\) and categories\[1\] "
                                         r"\('b'\) have different 'keypoints' lists"):
        kf.read_keypoint_categories(path)
    path = _write(tmp_path, [{"id": 1, "keypoints": ["x", "y", "x"]}], "dup.json")
    with pytest.raises(ValueError, match=r"categories\[0\].keypoints names \['x'\] twice"):
        kf.read_keypoint_categories(path)
    path = _write(tmp_path, [{"id": 1, "keypoints": []}, {"id": 2}], "none.json")
    with pytest.raises(ValueError, match="no entry of 'categories' has a 'keypoints' list"):
        kf.read_keypoint_categories(path)
    bad = tmp_path / "nocat.json"
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="nocat.json: no 'categories' list"):
        kf.read_keypoint_categories(str(bad))
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="no 'categories' list"):
        kf.read_keypoint_categories(str(bad))
    with pytest.raises(FileNotFoundError, match="^annotation file"):
        kf.read_keypoint_categories(str(tmp_path / "absent.json"))


@pytest.mark.parametrize("skeleton, match", [
    ([[1, "x"]], "is not a list of"), ([[0, 1]], "read as 0-based"),
    ([[1, 9]], "holds joint indices 1..9")])
def test_skeleton_warnings_point_at_the_code_that_read_the_file(tmp_path, skeleton, match,
                                                               monkeypatch):
    # stacklevel 3: the line that called read_keypoint_categories (here: this test),
    # not keypoint_file.py (1, 2) and not pytest (4). The stacklevel is read from the
    # warnings.warn call itself, as a wrapper around the functions (mutmut's
    # trampolines add two frames each) moves the file a warning is attributed to.
    path = _write(tmp_path, [{"id": 1, "keypoints": ["a", "b"], "skeleton": skeleton}])
    levels = []
    monkeypatch.setattr(warnings, "warn", lambda message, category=None, stacklevel=1,
                        source=None: levels.append((category, stacklevel)))
    kf.read_keypoint_categories(path)
    monkeypatch.undo()
    assert levels == [(KeypointSetWarning, 3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kf.read_keypoint_categories(path)
    assert len(caught) == 1 and match in str(caught[0].message)
    if not hasattr(kf.read_keypoint_categories, "__wrapped__"):
        assert caught[0].filename == __file__
    text = str(caught[0].message)
    assert text.startswith(f"{path}: categories[0].skeleton")
    if "0-based" in match:
        assert text.endswith("read as 0-based (COCO skeletons are 1-based)")
    else:
        assert text.endswith("it is not used (no skeleton is drawn); give 0-based edges "
                             "with --config.data.keypoints.skeleton='((0, 1), (1, 2))'")


def test_error_messages_say_what_to_do(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ValueError) as e:
        kf.read_keypoint_categories(str(bad))
    assert str(e.value).endswith("(a COCO keypoint file lists its categories with their "
                                 "'keypoints' names)")
    path = _write(tmp_path, [{"id": 1}])
    with pytest.raises(ValueError) as e:
        kf.read_keypoint_categories(path)
    assert str(e.value).endswith("list of joint names; give them with "
                                 "--config.data.keypoints.joints")
    path = _write(tmp_path, [{"id": 1, "keypoints": ["a"]}, {"id": 2, "keypoints": ["b"]}])
    with pytest.raises(ValueError) as e:
        kf.read_keypoint_categories(path)
    assert str(e.value).endswith("have different 'keypoints' lists; one keypoint set per "
                                 "file is supported (split the file per set)")
    # a category without a name: ""
    path = _write(tmp_path, [{"id": 1, "keypoints": ["a"]}])
    assert kf.read_keypoint_categories(path)["category_names"] == ("",)
