"""Annotation files as converters write them: annotations without ``iscrowd``, ``area``
or ``num_keypoints`` are read with defaults (iscrowd 0, area = box w x h,
num_keypoints from the visibility flags) by every reader and by the ground truth
given to pycocotools, with one summary warning per file (issue 30).

Training and evaluating on such a file is covered by tests/training/test_finetune_sets.py
(its crowdpose run reads a copy of the file stripped of these fields).
"""
import json
import logging

import numpy as np
import pytest

from prtr_tf.data import coco
from prtr_tf.evaluation.coco import evaluate_coco, load_coco
from prtr_tf.models.detector.records import load_person_boxes

FIELDS = ("iscrowd", "area", "num_keypoints")


def stripped(data, fields=FIELDS):
    """A copy of a COCO dict whose annotations lack ``fields``."""
    return dict(data, annotations=[{k: v for k, v in a.items() if k not in fields}
                                   for a in data["annotations"]])


@pytest.fixture
def coco_files(coco_mini, tmp_path):
    """(the coco_mini annotation dict, the path of its copy without the three fields)."""
    with open(coco_mini / "person_keypoints.json", encoding="utf-8") as f:
        data = json.load(f)
    path = tmp_path / "converted.json"
    path.write_text(json.dumps(stripped(data)))
    return data, path


def _defaults_warnings(caplog, name):
    return [r for r in caplog.records if r.levelno == logging.WARNING
            and "given defaults" in r.getMessage() and str(name) in r.getMessage()]


def test_readers_keep_every_annotation_and_warn_once_per_file(coco_files, coco_mini, caplog):
    """Rules out: every annotation skipped for lacking 'iscrowd' (the old behaviour, one
    warning per annotation), a warning per annotation or per reader, and defaults that
    change which persons are kept."""
    data, path = coco_files
    images = str(coco_mini / "images")
    caplog.set_level(logging.WARNING, logger="prtr_tf.data")
    want = coco.load_coco_keypoints(data, images, (128, 96))
    got = coco.load_coco_keypoints(str(path), images, (128, 96))
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
        assert a["ann_id"] == b["ann_id"]
        np.testing.assert_array_equal(a["joints"], b["joints"])
    boxes_want = load_person_boxes(data, images)
    boxes_got = load_person_boxes(str(path), images, num_joints=17)
    assert [len(r["boxes"]) for r in boxes_got] == [len(r["boxes"]) for r in boxes_want]
    load_coco(str(path))  # the evaluation's ground truth: the same file, no new warning
    warned = _defaults_warnings(caplog, path)
    assert len(warned) == 1, [r.getMessage() for r in caplog.records]
    n = len(data["annotations"])
    message = warned[0].getMessage()
    for field in FIELDS:  # each field named with its count
        assert f"{n} without {field!r}" in message
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]


def test_defaults_are_zero_box_area_and_labelled_count(coco_files):
    """Rules out other defaults (e.g. area 0, which drops every person, or counting v = 0
    joints) and overwriting fields a file does have (a crowd annotation stays crowd)."""
    data, _ = coco_files
    raw = stripped(data)
    raw["annotations"][0]["iscrowd"] = 1
    raw["annotations"][1]["area"] = 123.0
    filled = coco.with_annotation_defaults(raw, "<test>")["annotations"]
    assert "iscrowd" not in raw["annotations"][2]  # the input is left as it was
    assert filled[0]["iscrowd"] == 1 and filled[2]["iscrowd"] == 0
    assert filled[1]["area"] == 123.0
    box = filled[2]["bbox"]
    assert filled[2]["area"] == pytest.approx(box[2] * box[3])
    for a, original in zip(filled, data["annotations"]):
        assert a["num_keypoints"] == original["num_keypoints"]  # COCO's own counts
    complete = coco.with_annotation_defaults(data, "<test>")
    assert complete is data  # nothing missing: nothing copied


def test_evaluation_fills_the_ground_truth_with_the_same_defaults(coco_files):
    """pycocotools reads 'iscrowd' and 'num_keypoints' of every ground-truth annotation
    (KeyError without them) and 'area' for OKS: the file without them scores exactly as
    the file whose areas are the boxes' (the documented OKS consequence), and not as the
    segmentation areas. Rules out a KeyError, and a default that differs between the
    readers and the evaluation."""
    data, path = coco_files
    rng = np.random.default_rng(0)
    results = []
    for a in data["annotations"]:
        if a["num_keypoints"] == 0 or a["iscrowd"]:
            continue
        kp = np.asarray(a["keypoints"], float).reshape(-1, 3)
        kp[:, :2] += rng.normal(0, 4.0, (len(kp), 2))  # OKS < 1: area matters
        kp[:, 2] = 0.9
        results.append(dict(image_id=a["image_id"], category_id=1,
                            keypoints=kp.reshape(-1).tolist(), score=0.9))
    box_area = dict(data, annotations=[dict(a, area=a["bbox"][2] * a["bbox"][3])
                                       for a in data["annotations"]])
    box_path = path.parent / "box_area.json"
    box_path.write_text(json.dumps(box_area))
    got = evaluate_coco(str(path), results)
    assert got == evaluate_coco(str(box_path), results)
    assert 0.0 < got["AP"] < 1.0
    original = path.parent / "original.json"  # COCO's segmentation areas
    original.write_text(json.dumps(data))
    assert evaluate_coco(str(original), results)["AP"] != got["AP"]  # the default matters
