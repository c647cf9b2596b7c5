"""The tf.data pipeline (spec §5.2-5.5): crops, targets, augmentation, flips, bad files."""
import logging

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from prtr_tf.data.keypoint_sets import COCO_FLIP_PAIRS
from prtr_tf.config import load_config
from prtr_tf.data import SkipCounter
from prtr_tf.models.keypoint.data import build_dataset, build_eval_dataset
from prtr_tf.data.coco import load_coco_keypoints
from prtr_tf.data.transforms import (affine_transform_points, get_affine_transform, warp_affine_numpy)

ELEMENT_SPEC = {
    "image": ((384, 288, 3), tf.float32), "target": ((17, 2), tf.float32),
    "target_weight": ((17,), tf.float32), "center": ((2,), tf.float32),
    "scale": ((2,), tf.float32), "rotation": ((), tf.float32), "image_id": ((), tf.int64),
    "box_score": ((), tf.float32), "flipped": ((), tf.float32), "index": ((), tf.int64),
}


@pytest.fixture
def coco_config():
    return load_config("coco_res50_384x288")  # BGR input, 384x288 crops


@pytest.fixture
def coco_records(coco_mini):
    return load_coco_keypoints(coco_mini / "person_keypoints.json", coco_mini / "images",
                               (384, 288))


def _reference_crop(path, center, scale, rot, flipped, config):
    """The crop the HRNet way: cv2-like warp of the (mirrored) BGR image, uint8 rounding,
    then (x/255 - mean) / std."""
    image = np.asarray(Image.open(path).convert("RGB"), np.float64)[..., ::-1]  # BGR
    if flipped:
        image = image[:, ::-1]
    h, w = config.model.image_size
    m = get_affine_transform(center, scale, rot, (h, w))
    crop = np.round(warp_affine_numpy(image, m, (h, w)))
    return (crop / 255.0 - np.array(config.data.mean)) / np.array(config.data.std)


def _unproject(element, image_width, config):
    """Targets back to original image pixels (inverse affine, then undo the flip)."""
    h, w = config.model.image_size
    inv = get_affine_transform(element["center"], element["scale"], element["rotation"],
                               (h, w), inv=True)
    joints = affine_transform_points(element["target"] * [w, h], inv)
    weight = element["target_weight"].copy()
    if element["flipped"]:
        joints[:, 0] = image_width - 1 - joints[:, 0]
        perm = np.arange(len(joints))
        for a, b in COCO_FLIP_PAIRS:
            perm[a], perm[b] = b, a
        joints, weight = joints[perm], weight[perm]
    return joints, weight


def test_element_spec(coco_records, coco_config):
    ds = build_dataset(coco_records, coco_config, training=True)
    spec = {k: (tuple(v.shape), v.dtype) for k, v in ds.element_spec.items()}
    assert spec == ELEMENT_SPEC  # no bool or string tensors (MirroredStrategy-safe)
    assert isinstance(ds.skip_counter, SkipCounter)
    # No tf.data autotuning model: deleting an iterator waits for its optimisation
    # thread, which sleeps up to 60 s between rounds (measured: 39 s at the end of a
    # 100-s epoch; every epoch end of the demo's trainings lost up to a minute).
    assert ds.options().autotune.enabled is False
    assert build_eval_dataset(coco_records, coco_config).options().autotune.enabled is False


def test_eval_crops_match_annotations_and_reference_warp(coco_records, coco_config):
    elements = list(build_eval_dataset(coco_records, coco_config).as_numpy_iterator())
    assert [int(e["index"]) for e in elements] == list(range(12))  # ordered, no skips
    for e in elements[:6]:
        rec = coco_records[int(e["index"])]
        assert e["rotation"] == 0 and e["flipped"] == 0 and e["box_score"] == 1
        np.testing.assert_allclose(e["center"], rec["center"])
        width = Image.open(rec["image_path"]).size[0]
        joints, weight = _unproject(e, width, coco_config)
        np.testing.assert_array_equal(weight, rec["joints"][:, 2])
        visible = weight > 0
        np.testing.assert_allclose(joints[visible], rec["joints"][visible, :2], atol=1e-3)
        ref = _reference_crop(rec["image_path"], rec["center"], rec["scale"], 0, False,
                              coco_config)
        diff = np.abs(e["image"] - ref)
        assert diff.max() < 0.02  # at most one uint8 level (rounding at .5)
        assert (diff > 1e-4).mean() < 0.01


def test_augmented_crops_match_annotations_and_reference_warp(coco_records, coco_config):
    elements = list(build_dataset(coco_records, coco_config, training=True,
                                  deterministic=True, seed=0).as_numpy_iterator())
    assert sorted(int(e["index"]) for e in elements) == list(range(12))
    assert any(e["flipped"] for e in elements) and not all(e["flipped"] for e in elements)
    assert any(e["rotation"] != 0 for e in elements)
    scales = [e["scale"][0] / coco_records[int(e["index"])]["scale"][0] for e in elements]
    assert all(0.7 - 1e-6 <= f <= 1.3 + 1e-6 for f in scales) and np.std(scales) > 0
    for e in elements[:5]:
        rec = coco_records[int(e["index"])]
        width = Image.open(rec["image_path"]).size[0]
        joints, weight = _unproject(e, width, coco_config)
        np.testing.assert_array_equal(weight, rec["joints"][:, 2])
        visible = weight > 0
        np.testing.assert_allclose(joints[visible], rec["joints"][visible, :2], atol=1e-3)
        ref = _reference_crop(rec["image_path"], e["center"], e["scale"], e["rotation"],
                              e["flipped"], coco_config)
        diff = np.abs(e["image"] - ref)
        assert diff.max() < 0.02 and (diff > 1e-4).mean() < 0.01


def test_box_shift_moves_only_the_centre_within_the_factor(coco_records, coco_config):
    """data.shift_factor (not in the official code): the box centre moves by at most
    f x the box size in x and y; scale, rotation and flip are those of shift 0 (same
    seed), and the targets still land on the annotated joints."""
    def run(shift):
        coco_config.data.shift_factor = shift
        return sorted(build_dataset(coco_records, coco_config, training=True,
                                    deterministic=True, seed=0).as_numpy_iterator(),
                      key=lambda e: int(e["index"]))
    plain, shifted = run(0.0), run(0.1)
    moves = []
    for a, b in zip(plain, shifted):
        for key in ("scale", "rotation", "flipped"):
            np.testing.assert_array_equal(a[key], b[key])
        rec = coco_records[int(a["index"])]
        move = np.abs(b["center"] - a["center"]) / (rec["scale"] * coco_config.data.pixel_std)
        assert (move <= 0.1 + 1e-6).all(), move
        moves.append(move)
        width = Image.open(rec["image_path"]).size[0]
        joints, weight = _unproject(b, width, coco_config)
        visible = (weight > 0) & (a["target_weight"] > 0)
        np.testing.assert_allclose(joints[visible], _unproject(a, width, coco_config)[0][
            visible], atol=1e-3)
    assert np.mean(moves) > 0.02  # U(-0.1, 0.1): mean |move| 0.05


def _hand_record(tmp_path):
    """100x80 image, bright pixel at the left shoulder; crop with k = 1 around (40, 40)."""
    image = np.zeros((80, 100, 3), np.uint8)
    image[35, 30] = 255  # (x, y) = (30, 35)
    path = tmp_path / "hand.png"
    Image.fromarray(image).save(path)
    joints = np.zeros((17, 3), np.float32)
    joints[0] = (40, 20, 1)   # nose
    joints[5] = (30, 35, 1)   # left shoulder
    joints[6] = (50, 36, 1)   # right shoulder
    joints[9] = (7, 9, 0)     # left wrist: unlabelled
    # tiny config: 128x96 crops; s_x = 96 / 200 -> k = 1, crop = p - c + (48, 64).
    return dict(image_path=str(path), image_id=1, center=np.array([40.0, 40.0], np.float32),
                scale=np.array([0.48, 0.64], np.float32), joints=joints, box_score=1.0,
                ann_id=7)


def test_flip_by_hand(tmp_path):
    config = load_config("tiny")
    config.data.scale_factor = 0.0   # factor clip(N * 0 + 1, 1, 1) = 1
    config.data.rotation_prob = 0.0  # no rotation
    config.data.color_rgb = True
    records = [_hand_record(tmp_path)] * 16
    elements = list(build_dataset(records, config, training=True, deterministic=True,
                                  seed=0).as_numpy_iterator())
    flipped = [e for e in elements if e["flipped"]]
    plain = [e for e in elements if not e["flipped"]]
    assert flipped and plain
    wh = np.array([96.0, 128.0])
    bright = (1 - np.array(config.data.mean)) / np.array(config.data.std)

    e = plain[0]
    np.testing.assert_allclose(e["center"], [40, 40])
    np.testing.assert_allclose(e["target"][[0, 5, 6]] * wh, [[48, 44], [38, 59], [58, 60]],
                               atol=1e-4)
    np.testing.assert_array_equal(e["target_weight"][[0, 5, 6, 9]], [1, 1, 1, 0])
    np.testing.assert_allclose(e["target"][9] * wh, [7, 9], atol=1e-4)  # unlabelled: raw
    np.testing.assert_allclose(e["image"][59, 38], bright, atol=1e-5)  # (row y, col x)

    e = flipped[0]
    # c_x <- 100 - 1 - 40 = 59; x <- 99 - x; then pairs swap: the left shoulder
    # (30, 35) -> (69, 35) becomes joint 6, the right shoulder (50, 36) -> (49, 36)
    # joint 5. Crop = p - (59, 40) + (48, 64).
    np.testing.assert_allclose(e["center"], [59, 40])
    np.testing.assert_allclose(e["target"][[0, 5, 6]] * wh, [[48, 44], [38, 60], [58, 59]],
                               atol=1e-4)
    np.testing.assert_array_equal(e["target_weight"][[0, 5, 6, 9, 10]], [1, 1, 1, 0, 0])
    # Unlabelled joint 9 became joint 10 and was multiplied by its visibility 0.
    np.testing.assert_allclose(e["target"][10], [0, 0])
    # The bright pixel (the old left shoulder) now sits under joint 6's target.
    np.testing.assert_allclose(e["image"][59, 58], bright, atol=1e-5)
    assert np.abs(e["image"][59, 38] - bright).max() > 1


def test_color_order(coco_records, coco_config):
    bgr = next(iter(build_eval_dataset(coco_records[:1], coco_config)))["image"].numpy()
    coco_config.data.color_rgb = True
    rgb = next(iter(build_eval_dataset(coco_records[:1], coco_config)))["image"].numpy()
    mean, std = np.array(coco_config.data.mean), np.array(coco_config.data.std)
    # Same pixels, channels reversed, each normalised with the statistics of its position.
    np.testing.assert_allclose((bgr * std + mean)[..., ::-1], rgb * std + mean, atol=1e-5)


def test_deterministic_mode_repeats_exactly(coco_records, coco_config):
    def run(seed):
        ds = build_dataset(coco_records, coco_config, training=True, deterministic=True,
                           seed=seed, batch=4)
        epochs = [[b for b in ds.as_numpy_iterator()] for _ in range(2)]
        return epochs

    a, b = run(0), run(0)
    for epoch_a, epoch_b in zip(a, b):
        assert len(epoch_a) == len(epoch_b) == 3
        for x, y in zip(epoch_a, epoch_b):
            for k in x:
                np.testing.assert_array_equal(x[k], y[k])
    # Epochs differ from each other, and another seed differs.
    assert not np.array_equal(a[0][0]["index"], a[1][0]["index"]) or not np.array_equal(
        a[0][0]["image"], a[1][0]["image"])
    c = run(1)
    assert not np.array_equal(a[0][0]["image"], c[0][0]["image"])


def test_batching_drop_remainder(coco_records, coco_config):
    ds = build_eval_dataset(coco_records, coco_config, batch=5)
    assert [int(b["index"].shape[0]) for b in ds] == [5, 5, 2]
    ds = build_dataset(coco_records, coco_config, training=False, batch=5,
                       drop_remainder=True)
    assert ds.element_spec["image"].shape == (5, 384, 288, 3)
    assert len(list(ds)) == 2


def _bad_file_records(coco_records, tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(np.random.default_rng(0).bytes(2000))
    return coco_records[:2] + [
        dict(coco_records[0], image_path=str(garbage), ann_id=901),
        dict(coco_records[0], image_path=str(tmp_path / "missing.jpg"), ann_id=902),
    ] + coco_records[2:3]


@pytest.mark.parametrize("training", [False, True])
def test_bad_image_files_are_skipped_warned_and_counted(coco_records, tmp_path, caplog,
                                                        training):
    config = load_config("tiny")  # small crops: fast
    records = _bad_file_records(coco_records, tmp_path)
    counter = SkipCounter()
    with caplog.at_level(logging.WARNING, logger="prtr_tf.data"):
        ds = build_dataset(records, config, training=training, deterministic=True,
                           skip_counter=counter)
        indices = sorted(int(e["index"]) for e in ds)
    assert indices == [0, 1, 4]
    assert counter.count == 2 and ds.skip_counter is counter
    messages = sorted(counter.messages)
    assert "garbage.jpg (annotation id 901): cannot read or decode image file" in messages[0]
    assert "missing.jpg (annotation id 902): image file not found" in messages[1]
    assert "garbage.jpg" in caplog.text and "missing.jpg" in caplog.text


def test_bad_image_file_is_fatal_under_the_flag(coco_records, tmp_path):
    config = load_config("tiny")
    config.data.skip_bad_samples = False
    records = [dict(coco_records[0], image_path=str(tmp_path / "missing.jpg"), ann_id=902)]
    with pytest.raises(tf.errors.OpError, match=r"missing\.jpg \(annotation id 902\): image "
                                                "file not found"):
        list(build_dataset(records, config, training=False))


def test_empty_records_is_an_error(coco_config):
    with pytest.raises(ValueError, match="no records"):
        build_dataset([], coco_config, training=True)
