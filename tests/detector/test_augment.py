"""DETR's augmentation and resizing (`prtr_tf.models.detector.augment`, `...resize`), by
hand and against DETR's own size rule; keypoints follow the image."""

import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.models.detector.augment import DetectionAugmenter, crop, hflip
from prtr_tf.models.detector.resize import resize, resize_size
from prtr_tf.models.detector.config import detector

def small_config(**data):
    """DETR's augmentation at CPU-test scale (the real config: scales 480..800, 1333...)."""
    fields = dict(scales=(96, 112, 128), max_size=200, crop_min_size=64, crop_max_size=100,
                  crop_resize_scales=(100, 125, 150), max_boxes=8, test_size=128,
                  num_parallel_calls=2)
    return detector("resnet_tiny", **{**fields, **data})


# ---------------------------------------------------------------------------------------
# Transforms, by hand
# ---------------------------------------------------------------------------------------

def test_hflip_by_hand():
    image = tf.reshape(tf.range(2 * 10 * 3, dtype=tf.float32), (2, 10, 3))
    flipped, boxes = hflip(image, tf.constant([[1.0, 2.0, 4.0, 6.0], [0.0, 0.0, 10.0, 1.0]]))
    np.testing.assert_allclose(boxes, [[6, 2, 9, 6], [0, 0, 10, 1]])
    np.testing.assert_array_equal(flipped[:, 0], image[:, 9])


@pytest.mark.parametrize("hw,size,max_size,expected", [
    ((425, 640), 800, 1333, (800, 1204)),   # int(800 * 640 / 425) = int(1204.7)
    ((480, 640), 800, 1333, (800, 1066)),
    ((640, 480), 800, 1333, (1066, 800)),   # portrait
    ((200, 800), 800, 1333, (333, 1332)),   # max binds: round(333.25) = 333, int(1332.0)
    ((392, 640), 128, 200, (122, 199)),     # round(122.5) = 122 (half to even, as Python)
    ((100, 50), 20, None, (40, 20)),
    ((600, 800), 600, None, (600, 800)),    # already the size
])
def test_resize_size_is_detr_get_size_with_aspect_ratio(hw, size, max_size, expected):
    out = resize_size(hw[0], hw[1], size, max_size)
    assert (int(out[0]), int(out[1])) == expected == detr_size(hw, size, max_size)


def detr_size(hw, size, max_size=None):
    """DETR datasets/transforms.py get_size_with_aspect_ratio, verbatim but for (h, w) in."""
    h, w = hw
    if max_size is not None:
        min_original_size = float(min((w, h)))
        max_original_size = float(max((w, h)))
        if max_original_size / min_original_size * size > max_size:
            size = int(round(max_size * min_original_size / max_original_size))
    if (w <= h and w == size) or (h <= w and h == size):
        return (h, w)
    if w < h:
        ow = size
        oh = int(size * h / w)
    else:
        oh = size
        ow = int(size * w / h)
    return (oh, ow)


def test_resize_size_matches_detr_on_random_sizes():
    rng = np.random.default_rng(0)
    hw = rng.integers(50, 2000, (500, 2))
    sizes = rng.choice([480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800], 500)
    for max_size in (1333, None):
        out_h, out_w = resize_size(hw[:, 0], hw[:, 1], sizes, max_size)
        ref = np.array([detr_size(tuple(int(v) for v in x), int(s), max_size)
                        for x, s in zip(hw, sizes)])
        np.testing.assert_array_equal(np.stack([out_h, out_w], -1), ref)


def test_resize_boxes_by_hand():
    image = tf.zeros((425, 640, 3))
    boxes = tf.constant([[280.79, 44.73, 499.49, 391.41]])
    out, resized = resize(image, boxes, 200, 1333)
    assert out.shape == (200, 301, 3)  # int(200 * 640 / 425) = 301
    rw, rh = 301 / 640, 200 / 425
    np.testing.assert_allclose(resized, [[280.79 * rw, 44.73 * rh, 499.49 * rw, 391.41 * rh]],
                               rtol=1e-6)


def test_crop_by_hand():
    image = tf.reshape(tf.range(10 * 12 * 3, dtype=tf.float32), (10, 12, 3))
    boxes = tf.constant([[0.0, 0.0, 4.0, 4.0],     # -> [-3, -2, 1, 2] -> [0, 0, 1, 2]
                         [5.0, 3.0, 20.0, 20.0],   # -> [2, 1, 17, 18] -> [2, 1, 6, 5]
                         [0.0, 0.0, 2.0, 9.0],     # -> x1 = -1 -> zero width: dropped
                         [10.0, 8.0, 11.0, 9.0]])  # below/right of the crop: dropped
    out, kept, keep = crop(image, boxes, (2, 3, 5, 6))  # top, left, height, width
    np.testing.assert_array_equal(out, image[2:7, 3:9])
    np.testing.assert_allclose(kept, [[0, 0, 1, 2], [2, 1, 6, 5]])
    assert keep.numpy().tolist() == [True, True, False, False]


def _rect_image(height, width, box):
    x0, y0, x1, y1 = box
    image = np.zeros((height, width, 3), np.float32)
    image[y0:y1, x0:x1] = 255.0
    return image


@pytest.mark.parametrize("seed", range(12))
def test_augmentation_keeps_boxes_on_the_image_content(seed):
    """A white rectangle through flip/resize/crop/resize: its box stays on it."""
    box = (60, 40, 180, 120)  # x0, y0, x1, y1 (pixel edges)
    image = tf.constant(_rect_image(200, 300, box))
    config = small_config()
    aug = DetectionAugmenter(config.data)
    out, boxes = aug(image, tf.constant([box], tf.float32), tf.constant([seed, 7], tf.int64))
    out, boxes = out.numpy(), boxes.numpy()
    h, w = out.shape[:2]
    assert max(h, w) <= config.data.max_size and 0 < min(h, w)
    white = out[..., 0] > 127.5
    if len(boxes) == 0:  # cropped away: (almost) nothing of the rectangle left
        assert white.sum() <= max(h, w)
        return
    ys, xs = np.nonzero(white)
    found = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    np.testing.assert_allclose(boxes[0], found, atol=1.5)
    assert boxes.min() >= 0 and boxes[0, 2] <= w and boxes[0, 3] <= h


def test_augmentation_draws_every_branch():
    """Over seeds: flipped and not, plain resize (aspect kept) and crop (aspect changed)."""
    image = tf.constant(_rect_image(200, 300, (60, 40, 180, 120)))
    aug = DetectionAugmenter(small_config().data)
    centres, aspects = set(), set()
    for seed in range(40):
        out, boxes = aug(image, tf.constant([[60.0, 40.0, 180.0, 120.0]]),
                         tf.constant([seed, 0], tf.int64))
        h, w = out.shape[:2]
        if abs(w / h - 1.5) < 0.02:  # plain branch: centre x at 0.4, or 0.6 when flipped
            centres.add(round(float(boxes[0, 0] + boxes[0, 2]) / 2 / w, 1))
        else:
            aspects.add(round(w / h, 2))
    assert centres == {0.4, 0.6}
    assert len(aspects) > 3
    no_flip = DetectionAugmenter(small_config(flip_prob=0.0, crop_prob=0.0).data)
    for seed in range(5):
        out, boxes = no_flip(image, tf.constant([[60.0, 40.0, 180.0, 120.0]]),
                             tf.constant([seed, 0], tf.int64))
        assert out.shape[0] in (96, 112, 128)
        np.testing.assert_allclose(boxes[0, 0] / out.shape[1], 0.2, atol=1e-6)


DOT_COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # joints 0, 1 (a left/right pair), 2


def _dots_image(height, width, corners):
    """Black image with a 6x6 dot per joint (colour DOT_COLOURS[k], top-left corner
    ``corners[k]``); returns the image and the dots' continuous centres."""
    image = np.zeros((height, width, 3), np.float32)
    for (x, y), colour in zip(corners, DOT_COLOURS):
        image[y:y + 6, x:x + 6] = colour
    return image, np.array([[x + 3.0, y + 3.0] for x, y in corners], np.float32)


def _dot_centre(image, channel):
    ys, xs = np.nonzero(image[..., channel] > 96)
    if len(xs) == 0:
        return None
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


@pytest.mark.parametrize("seed", range(16))
def test_augmentation_moves_keypoints_with_the_image(seed):
    """Coloured dots through flip/resize/crop/resize: each labelled keypoint stays on
    its dot, a flip swaps the left/right pair (keypoint 0 is always the image's left
    one of the pair), and a dot cropped away leaves its keypoint unlabelled."""
    image, centres = _dots_image(200, 300, [(100, 60), (170, 64), (140, 110)])
    box = tf.constant([[90.0, 50.0, 190.0, 130.0]])
    kpts = tf.constant(np.concatenate([centres, np.full((3, 1), 2.0)], 1)[None])
    aug = DetectionAugmenter(small_config(flip_prob=0.5, crop_min_size=40).data,
                             flip_index=[1, 0, 2])
    out, boxes, moved = aug(tf.constant(image), box, tf.constant([seed, 3], tf.int64), kpts)
    out, moved = out.numpy(), moved.numpy()
    assert moved.shape == (len(boxes), 3, 3)
    if len(boxes) == 0:
        return
    red, green = _dot_centre(out, 0), _dot_centre(out, 1)
    both = red is not None and green is not None
    tol = 1.0 + out.shape[1] / 300.0  # dots blur by ~1 px, plus one source pixel
    for k in range(3):
        if both:  # mirrored iff red is right of green: then joint k is on joint flip(k)'s dot
            colours = [[1, 0, 2][k] if red[0] > green[0] else k]
        else:  # one of the pair cropped away: the flip cannot be told from the image
            colours = [k, [1, 0, 2][k]]
        dots = [d for d in (_dot_centre(out, c) for c in colours) if d is not None]
        if moved[0, k, 2] > 0:
            assert dots, f"joint {k} labelled but its dot is gone"
            assert min(np.abs(moved[0, k, :2] - d).max() for d in dots) <= tol, (moved, dots)
        else:  # outside the crop: its dot is (nearly) gone from the image
            x, y = moved[0, k, :2]
            assert not (0 <= x < out.shape[1] and 0 <= y < out.shape[0])
    if moved[0, 0, 2] > 0 and moved[0, 1, 2] > 0:
        assert moved[0, 0, 0] < moved[0, 1, 0]
