"""Box utilities in TensorFlow (DETR ``util/box_ops.py``), numerically safe.

Boxes are ``(..., 4)`` tensors, either ``cxcywh`` (centre x, centre y, width, height;
DETR's prediction and target format, normalised by the unpadded image size) or
``xyxy`` (x0, y0, x1, y1). All functions broadcast over leading dimensions and
compute in the input dtype (cast to float32 first for mixed precision).

DETR divides by the union and by the enclosing area without a guard, so degenerate
boxes (zero width or height on both sides) give NaN there. Here both denominators
are clamped to ``EPS``: for boxes of positive area the result is DETR's to within
float rounding, and for degenerate ones IoU and GIoU are finite (0 for two
coinciding points) with finite gradients. As in DETR, x1 >= x0 and y1 >= y0 are
assumed, not checked (a sigmoid box head guarantees it for predictions).
"""
import tensorflow as tf

EPS = 1e-7


def box_cxcywh_to_xyxy(boxes):
    """(cx, cy, w, h) -> (x0, y0, x1, y1)."""
    cx, cy, w, h = tf.unstack(boxes, 4, axis=-1)
    return tf.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def box_xyxy_to_cxcywh(boxes):
    """(x0, y0, x1, y1) -> (cx, cy, w, h)."""
    x0, y0, x1, y1 = tf.unstack(boxes, 4, axis=-1)
    return tf.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], axis=-1)


def box_xywh_to_xyxy(boxes):
    """COCO (x, y, w, h) -> (x0, y0, x1, y1)."""
    x, y, w, h = tf.unstack(boxes, 4, axis=-1)
    return tf.stack([x, y, x + w, y + h], axis=-1)


def box_area(boxes):
    """Area of xyxy boxes, (..., 4) -> (...). Negative extents are not clamped (DETR)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _safe_div(num, den):
    return num / tf.maximum(den, tf.cast(EPS, den.dtype))


def _pair(boxes1, boxes2, pairwise):
    """Broadcasts (..., N, 4), (..., M, 4) to (..., N, M, 4) each when pairwise."""
    if pairwise:
        return boxes1[..., :, None, :], boxes2[..., None, :, :]
    return boxes1, boxes2


def _iou_union(b1, b2):
    area1, area2 = box_area(b1), box_area(b2)
    lt = tf.maximum(b1[..., :2], b2[..., :2])
    rb = tf.minimum(b1[..., 2:], b2[..., 2:])
    wh = tf.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1 + area2 - inter
    return _safe_div(inter, union), union


def _giou(b1, b2):
    iou, union = _iou_union(b1, b2)
    lt = tf.minimum(b1[..., :2], b2[..., :2])
    rb = tf.maximum(b1[..., 2:], b2[..., 2:])
    wh = tf.maximum(rb - lt, 0.0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - _safe_div(enclosing - union, enclosing)


def box_iou(boxes1, boxes2):
    """Pairwise IoU of xyxy boxes (DETR ``box_iou``).

    (..., N, 4), (..., M, 4) -> (iou (..., N, M), union (..., N, M)).
    """
    return _iou_union(*_pair(boxes1, boxes2, True))


def generalized_box_iou(boxes1, boxes2):
    """Pairwise generalized IoU of xyxy boxes (DETR ``generalized_box_iou``).

    (..., N, 4), (..., M, 4) -> (..., N, M), values in [-1, 1].
    """
    return _giou(*_pair(boxes1, boxes2, True))


def elementwise_box_iou(boxes1, boxes2):
    """IoU of corresponding xyxy boxes: (..., 4), (..., 4) -> (...)."""
    return _iou_union(boxes1, boxes2)[0]


def elementwise_generalized_box_iou(boxes1, boxes2):
    """GIoU of corresponding xyxy boxes, (..., 4), (..., 4) -> (...): the diagonal of
    `generalized_box_iou` (DETR's ``torch.diag(generalized_box_iou(a, b))``)."""
    return _giou(boxes1, boxes2)
