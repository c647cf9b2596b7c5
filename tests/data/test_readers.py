"""Dataset readers (spec §5.1, §5.7) on coco_mini / mpii_mini and on bad input.

Counts and numbers were read off the JSON files by hand.
"""
import copy
import json
import logging

import numpy as np
import pytest

from prtr_tf.data import SkipCounter
from prtr_tf.data.coco import load_coco_detections, load_coco_keypoints
from prtr_tf.data.mpii import load_mpii

SIZE = (384, 288)  # aspect ratio 0.75


def test_coco_training_filter(coco_mini):
    records = load_coco_keypoints(coco_mini / "person_keypoints.json", coco_mini / "images",
                                  SIZE)
    # 14 annotations, none crowd, all area > 0 with valid boxes; 1202706 (image 40083)
    # and 508900 (image 196141) have num_keypoints 0 -> 12 survive, in file order.
    assert len(records) == 12
    assert [r["ann_id"] for r in records] == [
        442619, 198196, 230195, 460541, 488308, 1717641, 1724673, 437295, 467657, 531914,
        533949, 543117]
    r = records[0]
    assert r["image_id"] == 785 and r["box_score"] == 1.0
    assert str(r["image_path"]).endswith("images/000000000785.jpg")
    # bbox [280.79, 44.73, 218.7, 346.68] in 640x425: sanitised w = 217.7, h = 345.68;
    # c = (280.79 + 108.85, 44.73 + 172.84); w < 0.75 h -> w = 259.26;
    # s = (259.26, 345.68) / 200 * 1.25.
    np.testing.assert_allclose(r["center"], [389.64, 217.57], atol=1e-4)
    np.testing.assert_allclose(r["scale"], [1.620375, 2.1605], atol=1e-5)
    assert r["joints"].shape == (17, 3) and r["joints"].dtype == np.float32
    assert set(np.unique(r["joints"][:, 2])) <= {0.0, 1.0}  # v = 2 -> 1
    assert (r["joints"][:, 2] == 1).sum() == 17


def _bad_annotations(coco_mini):
    data = json.loads((coco_mini / "person_keypoints.json").read_text())
    data = copy.deepcopy(data)
    anns = data["annotations"]
    del anns[0]["bbox"]                      # 442619: missing field
    anns[1]["keypoints"] = anns[1]["keypoints"][:-3]   # 198196: 48 values
    anns[2]["image_id"] = 999                # 230195: unknown image
    anns[4]["keypoints"][0] = float("nan")   # 460541: non-finite
    return data


def test_coco_malformed_annotations_are_counted_skips(coco_mini, caplog):
    counter = SkipCounter()
    with caplog.at_level(logging.WARNING, logger="prtr_tf.data"):
        records = load_coco_keypoints(_bad_annotations(coco_mini), coco_mini / "images", SIZE,
                                      skip_counter=counter)
    assert len(records) == 12 - 4
    assert counter.count == 4
    text = "\n".join(counter.messages)
    for expected in ("annotation id 442619: missing field 'bbox'",
                     "annotation id 198196: field 'keypoints' has 48 values",
                     "annotation id 230195: field 'image_id' = 999",
                     "annotation id 460541: field 'keypoints'"):
        assert expected in text
    assert "442619" in caplog.text


def test_coco_malformed_annotation_is_fatal_without_skipping(coco_mini):
    with pytest.raises(ValueError, match="annotation id 442619: missing field 'bbox'"):
        load_coco_keypoints(_bad_annotations(coco_mini), coco_mini / "images", SIZE,
                            skip_bad=False)


def test_coco_detections(coco_mini):
    ann = coco_mini / "person_keypoints.json"
    dets = coco_mini / "person_detections.json"
    # 118 results, all category 1 (22 + 26 + 33 + 37 per image), lowest score 0.0029:
    # the default threshold 0.0 keeps every box.
    records = load_coco_detections(dets, ann, coco_mini / "images", SIZE)
    assert len(records) == 118
    # 18 have score >= 0.5, 14 have score >= 0.9.
    assert len(load_coco_detections(dets, ann, coco_mini / "images", SIZE,
                                    image_thre=0.5)) == 18
    assert len(load_coco_detections(dets, ann, coco_mini / "images", SIZE,
                                    image_thre=0.9)) == 14
    r = records[0]
    # bbox [277.1183, 45.6997, 225.0913, 333.5603], not sanitised; w < 0.75 h.
    x, y, w, h = 277.1183158543966, 45.699667786163765, 225.09126579259754, 333.5602652943344
    np.testing.assert_allclose(r["center"], [x + w / 2, y + h / 2], atol=1e-4)
    np.testing.assert_allclose(r["scale"], [0.75 * h / 200 * 1.25, h / 200 * 1.25], rtol=1e-6)
    assert r["image_id"] == 785 and r["ann_id"] == 0
    assert r["box_score"] == pytest.approx(0.9999731779098511)
    assert not r["joints"].any()


def _bad_detections():
    good = dict(image_id=785, category_id=1, bbox=[10, 20, 30, 40], score=0.9)
    return [good,
            dict(good, image_id=12345),           # unknown image
            dict(good, bbox=[10, 20, 0, 40]),     # zero width
            dict(good, bbox=[10, 20, 30, -4]),    # negative height
            {k: v for k, v in good.items() if k != "score"},  # missing field
            dict(good, category_id=2)]            # not a person: filtered, not bad


def test_detections_bad_input_is_a_counted_skip(coco_mini):
    counter = SkipCounter()
    records = load_coco_detections(_bad_detections(), coco_mini / "person_keypoints.json",
                                   coco_mini / "images", SIZE, skip_counter=counter)
    assert len(records) == 1
    assert counter.count == 4
    assert "detection #1: field 'image_id' = 12345" in counter.messages[0]
    assert "detection #2: field 'bbox'" in counter.messages[1]
    assert "detection #3: field 'bbox'" in counter.messages[2]
    assert "detection #4: missing field 'score'" in counter.messages[3]


def test_detections_bad_input_is_fatal_without_skipping(coco_mini):
    with pytest.raises(ValueError, match="detection #1: field 'image_id' = 12345"):
        load_coco_detections(_bad_detections(), coco_mini / "person_keypoints.json",
                             coco_mini / "images", SIZE, skip_bad=False)


def test_mpii_reader(mpii_mini):
    records = load_mpii(mpii_mini / "annotations.json", mpii_mini / "images")
    assert len(records) == 5
    r = records[0]
    # 005808361.jpg: center [966, 340], scale 4.718488 -> c_y += 15 s, s *= 1.25, c -= 1.
    np.testing.assert_allclose(r["center"], [965.0, 340 + 15 * 4.718488 - 1], atol=1e-4)
    np.testing.assert_allclose(r["scale"], [4.718488 * 1.25] * 2, rtol=1e-6)
    np.testing.assert_allclose(r["joints"][0], [803.0, 710.0, 1.0])  # [804, 711] - 1
    assert r["image_id"] == 5808361
    # 051423444.jpg: joint 0 is unlabelled ([-1, -1], vis 0) -> [-2, -2, 0].
    np.testing.assert_allclose(records[2]["joints"][0], [-2.0, -2.0, 0.0])
    assert records[2]["joints"][:, 2].sum() == 14


def test_mpii_malformed_entry(mpii_mini):
    data = json.loads((mpii_mini / "annotations.json").read_text())
    data[1]["joints"] = data[1]["joints"][:15]
    counter = SkipCounter()
    assert len(load_mpii(data, mpii_mini / "images", skip_counter=counter)) == 4
    assert "annotation #1 (052475643.jpg): field 'joints'" in counter.messages[0]
    with pytest.raises(ValueError, match="annotation #1"):
        load_mpii(data, mpii_mini / "images", skip_bad=False)

