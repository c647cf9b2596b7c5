"""Bad annotation files: a truncated JSON names the file and says it is truncated; a
box with a negative size is a counted skip with a warning, not a silent 1-pixel box."""
import json
import logging

import pytest

from prtr_tf.data.coco import load_coco_keypoints
from prtr_tf.data.skips import SkipCounter
from prtr_tf.evaluation.coco import evaluate_coco


@pytest.fixture
def truncated(coco_mini, tmp_path):
    text = (coco_mini / "person_keypoints.json").read_text()
    path = tmp_path / "person_keypoints.json"
    path.write_text(text[:len(text) // 2])
    return path


def test_a_truncated_annotation_file_names_the_file(truncated, coco_mini):
    with pytest.raises(ValueError, match="truncated") as e:
        load_coco_keypoints(truncated, coco_mini / "images", (128, 96))
    assert str(truncated) in str(e.value) and "annotation file" in str(e.value)
    with pytest.raises(ValueError, match=f"{truncated}.*truncated"):
        evaluate_coco(str(truncated), [])


def test_a_negative_box_size_is_a_counted_skip(coco_mini, caplog):
    data = json.loads((coco_mini / "person_keypoints.json").read_text())
    usable = load_coco_keypoints(data, coco_mini / "images", (128, 96))
    ann_id = usable[0]["ann_id"]  # a person that is used, until its box goes negative
    next(a for a in data["annotations"] if a["id"] == ann_id)["bbox"][2] = -5.0
    counter = SkipCounter()
    with caplog.at_level(logging.WARNING, logger="prtr_tf.data"):
        records = load_coco_keypoints(data, coco_mini / "images", (128, 96),
                                      skip_counter=counter)
    assert counter.count == 1 and len(records) == len(usable) - 1
    assert f"annotation id {ann_id}: field 'bbox'" in caplog.text
    assert "negative width or height" in caplog.text
