"""Box utilities pinned on asymmetric boxes (issue 27): width != height, offsets
different on x and y, so that a swapped axis or a wrong corner shows."""
import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.nn import boxes


def _np(t):
    return np.asarray(t.numpy() if hasattr(t, "numpy") else t)


def test_conversions():
    np.testing.assert_allclose(_np(boxes.box_cxcywh_to_xyxy(tf.constant([0.5, 0.4, 0.2, 0.6]))),
                               [0.4, 0.1, 0.6, 0.7], rtol=1e-6)
    np.testing.assert_allclose(_np(boxes.box_xyxy_to_cxcywh(tf.constant([[1.0, 2.0, 5.0, 10.0]]))),
                               [[3.0, 6.0, 4.0, 8.0]])
    np.testing.assert_allclose(_np(boxes.box_xywh_to_xyxy(tf.constant([1.0, 2.0, 3.0, 4.0]))),
                               [1.0, 2.0, 4.0, 6.0])
    np.testing.assert_allclose(_np(boxes.box_area(tf.constant([[1.0, 2.0, 5.0, 10.0],
                                                               [5.0, 0.0, 1.0, 2.0]]))),
                               [32.0, -8.0])  # negative extents are not clamped


def test_iou_and_giou_by_hand():
    # b1 (0,0)-(4,2) area 8; b2 (2,1)-(6,5) area 16; overlap (2,1)-(4,2) = 2; union 22;
    # enclosing (0,0)-(6,5) = 30: IoU 1/11, GIoU 1/11 - 8/30.
    b1 = tf.constant([[0.0, 0.0, 4.0, 2.0]])
    b2 = tf.constant([[2.0, 1.0, 6.0, 5.0], [10.0, 10.0, 11.0, 13.0]])
    iou, union = boxes.box_iou(b1, b2)
    assert iou.shape == (1, 2)
    np.testing.assert_allclose(_np(iou), [[2 / 22, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(_np(union), [[22.0, 11.0]], rtol=1e-6)
    # disjoint (10,10)-(11,13): no overlap (not a negative one), enclosing 11 x 13
    giou = boxes.generalized_box_iou(b1, b2)
    np.testing.assert_allclose(_np(giou), [[2 / 22 - 8 / 30, 0.0 - (143 - 11) / 143]],
                               rtol=1e-6)
    np.testing.assert_allclose(_np(boxes.elementwise_box_iou(b1, b2[:1])), [2 / 22], rtol=1e-6)
    np.testing.assert_allclose(_np(boxes.elementwise_generalized_box_iou(b1, b2[:1])),
                               [2 / 22 - 8 / 30], rtol=1e-6)
    # pairwise over a leading batch dimension: (B, N, M)
    out = boxes.generalized_box_iou(tf.stack([b1, b1]), tf.stack([b2, b2]))
    assert out.shape == (2, 1, 2)


def test_degenerate_boxes_are_finite():
    # Two coinciding points: union and enclosing 0 -> clamped to EPS: IoU 0, GIoU 0.
    p = tf.constant([[0.5, 0.5, 0.5, 0.5]])
    iou, _ = boxes.box_iou(p, p)
    assert _np(iou).tolist() == [[0.0]]
    assert _np(boxes.generalized_box_iou(p, p)).tolist() == [[0.0]]
    assert boxes.EPS == 1e-7
    # a tiny union: the clamp is EPS, not larger (a 1e-4 x 1e-4 box against itself)
    t = tf.constant([[0.0, 0.0, 1e-4, 1e-4]], tf.float64)
    iou, _ = boxes.box_iou(t, t)
    assert _np(iou)[0, 0] == pytest.approx(1e-8 / 1e-7)


def test_conversions_of_a_batch_along_the_last_axis():
    # (2, 3, 4) boxes, all different: each conversion works on the LAST axis and keeps
    # the leading ones (rules out unstacking / stacking along axis 0 or 1). Expected
    # values from the formulas in NumPy.
    rng = np.random.default_rng(3)
    b = rng.uniform(1.0, 5.0, (2, 3, 4))
    x0, y0, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    np.testing.assert_allclose(_np(boxes.box_cxcywh_to_xyxy(tf.constant(b))),
                               np.stack([x0 - w / 2, y0 - h / 2, x0 + w / 2, y0 + h / 2], -1))
    np.testing.assert_allclose(_np(boxes.box_xywh_to_xyxy(tf.constant(b))),
                               np.stack([x0, y0, x0 + w, y0 + h], -1))
    xyxy = np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], -1)
    np.testing.assert_allclose(_np(boxes.box_xyxy_to_cxcywh(tf.constant(xyxy))),
                               np.concatenate([b[..., :2] + b[..., 2:] / 2, b[..., 2:]], -1))


def test_conversions_in_a_graph_with_an_unknown_box_size():
    # Inside tf.function with shape [None, None] the 4 components are unstacked by count
    # (num=4): no static size to infer them from.
    for fn in (boxes.box_cxcywh_to_xyxy, boxes.box_xyxy_to_cxcywh, boxes.box_xywh_to_xyxy):
        graph = tf.function(fn, input_signature=[tf.TensorSpec([None, None], tf.float32)])
        np.testing.assert_allclose(_np(graph(tf.constant([[1.0, 2.0, 5.0, 10.0]]))),
                                   _np(fn(tf.constant([[1.0, 2.0, 5.0, 10.0]]))))


def test_iou_and_giou_use_both_corners_of_both_boxes():
    # b1 (0,0)-(8,2) is wide, b2 (2,1)-(6,3) is its x1 != y1: overlap (2,1)-(6,2) = 4,
    # union 16 + 8 - 4 = 20, IoU 0.2; enclosing (0,0)-(8,3) = 24: GIoU 0.2 - 4/24.
    # Rules out a corner taken from the wrong coordinate (e.g. b2's y1 as its x1).
    b1 = tf.constant([[0.0, 0.0, 8.0, 2.0]])
    b2 = tf.constant([[2.0, 1.0, 6.0, 3.0]])
    np.testing.assert_allclose(_np(boxes.elementwise_box_iou(b1, b2)), [0.2], rtol=1e-6)
    np.testing.assert_allclose(_np(boxes.elementwise_generalized_box_iou(b1, b2)),
                               [0.2 - 4 / 24], rtol=1e-6)
    np.testing.assert_allclose(_np(boxes.generalized_box_iou(b2, b1)), [[0.2 - 4 / 24]],
                               rtol=1e-6)
