"""Geometry of the top-down crops (spec §5.1, §5.2): box -> center/scale, affine warps.

NumPy versions (`box_to_center_scale`, `get_affine_transform`, `affine_transform_points`)
follow HRNet's ``utils/transforms.py`` and cv2 exactly; the TensorFlow versions
(`affine_matrix_tf`, `warp_affine_tf`, `transform_joints_tf`) are what the input pipeline
runs in-graph.

Conventions:
  * Points are (x, y) in pixel-index coordinates: pixel (i, j) of an image is the point
    x = j, y = i (its centre), as in cv2 and in COCO keypoints as HRNet uses them.
  * A 2x3 matrix M maps a source point p to M[:, :2] @ p + M[:, 2].
  * Sizes of crops are (H, W), as in ``config.model.image_size``.
"""
import numpy as np
import tensorflow as tf

PIXEL_STD = 200.0
BOX_PADDING = 1.25


# ---------------------------------------------------------------------------------------
# Box -> center / scale
# ---------------------------------------------------------------------------------------

def box_to_center_scale(box, aspect_ratio, pixel_std=PIXEL_STD, padding=BOX_PADDING):
    """HRNet ``_xywh2cs``: an [x, y, w, h] box -> (center (2,), scale (2,)), float32.

    ``aspect_ratio`` is W / H of the crop (0.75 for 288x384). The box is widened or
    heightened to that ratio around its centre, then divided by ``pixel_std`` and
    padded by ``padding`` (1.25).
    """
    x, y, w, h = (float(v) for v in box)
    center = np.array([x + w * 0.5, y + h * 0.5], np.float32)
    if w > aspect_ratio * h:
        h = w * 1.0 / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w * 1.0 / pixel_std, h * 1.0 / pixel_std], np.float32)
    if center[0] != -1:
        scale = scale * padding
    return center, scale.astype(np.float32)


def sanitize_box(box, image_width, image_height):
    """HRNet's box cleaning for GT boxes: clipped to the image, (x, y, w, h) or None.

    x1 = max(0, x), y1 = max(0, y), x2 = min(W-1, x1 + max(0, w-1)),
    y2 = min(H-1, y1 + max(0, h-1)); None when x2 < x1 or y2 < y1.
    """
    x, y, w, h = (float(v) for v in box)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(image_width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(image_height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1:
        return None
    return [x1, y1, x2 - x1, y2 - y1]


# ---------------------------------------------------------------------------------------
# NumPy affine transforms (HRNet / cv2 semantics)
# ---------------------------------------------------------------------------------------

def _rotate(point, rot_rad):
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    return [point[0] * cs - point[1] * sn, point[0] * sn + point[1] * cs]


def _third_point(a, b):
    direct = a - b
    return b + np.array([-direct[1], direct[0]], dtype=np.float32)


def _affine_from_points(src, dst):
    """cv2.getAffineTransform: the 2x3 float64 matrix mapping 3 src points to 3 dst points."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    a = np.zeros((6, 6))
    a[0::2, 0:2], a[0::2, 2] = src, 1.0
    a[1::2, 3:5], a[1::2, 5] = src, 1.0
    return np.linalg.solve(a, dst.reshape(6)).reshape(2, 3)


def get_affine_transform(center, scale, rot, output_size_hw, inv=False,
                         pixel_std=PIXEL_STD):
    """HRNet ``get_affine_transform`` as a 2x3 float64 NumPy matrix.

    Maps source point p to k * R(-rot) @ (p - center) + (W/2, H/2) with
    k = W / (pixel_std * scale[0]) (only the x scale is used) and ``rot`` in degrees;
    with ``inv=True``, the inverse map (crop -> source). Built, as in HRNet, from
    three float32 point pairs solved like ``cv2.getAffineTransform``.
    """
    scale = np.asarray(scale, np.float32)
    if scale.ndim == 0:
        scale = np.array([scale, scale], np.float32)
    center = np.asarray(center, np.float32)
    out_h, out_w = output_size_hw
    scale_tmp = scale * pixel_std
    src_w = scale_tmp[0]
    rot_rad = np.pi * rot / 180.0
    src_dir = _rotate([0.0, src_w * -0.5], rot_rad)
    dst_dir = np.array([0.0, out_w * -0.5], np.float32)
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = center + src_dir
    dst[0] = [out_w * 0.5, out_h * 0.5]
    dst[1] = np.array([out_w * 0.5, out_h * 0.5]) + dst_dir
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    return _affine_from_points(dst, src) if inv else _affine_from_points(src, dst)


def affine_transform_points(points, matrix):
    """Applies a 2x3 matrix to points (..., 2) (extra trailing columns are dropped)."""
    points = np.asarray(points, np.float64)[..., :2]
    matrix = np.asarray(matrix, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix):
    """The inverse of a 2x3 affine matrix."""
    matrix = np.asarray(matrix, np.float64)
    a_inv = np.linalg.inv(matrix[:, :2])
    return np.concatenate([a_inv, -a_inv @ matrix[:, 2:]], axis=1)


def warp_affine_numpy(image, matrix, output_size_hw, fill=0.0):
    """Reference bilinear warp (cv2.warpAffine semantics, zero border), float64.

    Output pixel q (x = column, y = row) samples the source at M^-1 q; each of the 4
    bilinear neighbours outside the image contributes ``fill``. Slow; for tests.
    """
    image = np.asarray(image, np.float64)
    if image.ndim == 2:
        image = image[..., None]
    out_h, out_w = output_size_hw
    ys, xs = np.meshgrid(np.arange(out_h), np.arange(out_w), indexing="ij")
    src = affine_transform_points(np.stack([xs, ys], -1), invert_affine(matrix))
    x, y = src[..., 0], src[..., 1]
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    out = np.zeros((out_h, out_w, image.shape[2]))
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            wgt = (1 - np.abs(x - xi)) * (1 - np.abs(y - yi))
            inside = (xi >= 0) & (xi < image.shape[1]) & (yi >= 0) & (yi < image.shape[0])
            vals = np.where(inside[..., None],
                            image[np.clip(yi, 0, image.shape[0] - 1),
                                  np.clip(xi, 0, image.shape[1] - 1)], fill)
            out += wgt[..., None] * vals
    return out


# ---------------------------------------------------------------------------------------
# TensorFlow (in-graph) versions
# ---------------------------------------------------------------------------------------

def affine_matrix_tf(center, scale, rot, output_size_hw, inv=False, pixel_std=PIXEL_STD):
    """`get_affine_transform` in closed form, in-graph: a (2, 3) float64 tensor.

    forward:  A = k R(-rot), b = (W/2, H/2) - A c, k = W / (pixel_std * scale_x);
    inverse:  A = R(rot) / k,  b = c - A (W/2, H/2).
    Equal to the NumPy version up to its float32 rounding of the construction points.
    """
    out_h, out_w = output_size_hw
    center = tf.cast(center, tf.float64)
    scale_x = tf.cast(tf.reshape(scale, [-1])[0], tf.float64)
    rad = tf.cast(rot, tf.float64) * (np.pi / 180.0)
    cs, sn = tf.cos(rad), tf.sin(rad)
    k = out_w / (pixel_std * scale_x)
    half = tf.constant([out_w * 0.5, out_h * 0.5], tf.float64)
    if inv:
        a = tf.stack([tf.stack([cs, -sn]), tf.stack([sn, cs])]) / k
        b = center - tf.linalg.matvec(a, half)
    else:
        a = k * tf.stack([tf.stack([cs, sn]), tf.stack([-sn, cs])])
        b = half - tf.linalg.matvec(a, center)
    return tf.concat([a, b[:, None]], axis=1)


def transform_points_tf(points, matrix):
    """Applies a (2, 3) matrix to points (N, 2) in-graph (float64 math, input dtype out)."""
    dtype = points.dtype
    p = tf.cast(points, tf.float64)
    m = tf.cast(matrix, tf.float64)
    # Elementwise rather than matmul: float64 MatMul makes grappler log warnings.
    x = p[:, 0] * m[0, 0] + p[:, 1] * m[0, 1] + m[0, 2]
    y = p[:, 0] * m[1, 0] + p[:, 1] * m[1, 1] + m[1, 2]
    return tf.cast(tf.stack([x, y], axis=1), dtype)


def transform_joints_tf(joints, matrix):
    """Maps the visible joints (J, 3) [x, y, vis] with ``matrix``; invisible ones unchanged.

    HRNet transforms only joints with vis > 0 (spec §5.2).
    """
    moved = transform_points_tf(joints[:, :2], matrix)
    xy = tf.where(joints[:, 2:3] > 0, moved, joints[:, :2])
    return tf.concat([xy, joints[:, 2:3]], axis=1)


def warp_affine_tf(image, matrix, output_size_hw, flip=False):
    """Bilinear affine warp with zero border, like ``cv2.warpAffine(image, matrix, (W, H))``.

    ``image`` (h, w, C) float32; ``matrix`` the (2, 3) source -> crop map. If ``flip``
    (a bool or a boolean tensor), the source is first mirrored, x <- w - 1 - x, without
    materialising the flipped image (exact: the mirror maps pixel centres to pixel
    centres).

    ImageProjectiveTransformV3 takes the OUTPUT -> INPUT map [a0 a1 a2 b0 b1 b2 c0 c1]
    and, like cv2, evaluates it at the integer pixel indices of the output and samples
    the input at pixel-index coordinates (bilinear; each neighbour outside the image
    reads the fill value 0), so it is given M^-1 as is.
    """
    m = tf.cast(matrix, tf.float64)
    a_inv = tf.linalg.inv(m[:, :2])
    b_inv = -tf.linalg.matvec(a_inv, m[:, 2])
    # Mirror after M^-1: x <- (w - 1) - x, i.e. row 0 becomes (w - 1) - row 0.
    w1 = tf.cast(tf.shape(image)[1], tf.float64) - 1.0
    sign = tf.where(tf.cast(flip, tf.bool), tf.constant(-1.0, tf.float64), 1.0)
    offset = tf.where(tf.cast(flip, tf.bool), w1, tf.constant(0.0, tf.float64))
    params = tf.stack([sign * a_inv[0, 0], sign * a_inv[0, 1], offset + sign * b_inv[0],
                       a_inv[1, 0], a_inv[1, 1], b_inv[1],
                       tf.constant(0.0, tf.float64), tf.constant(0.0, tf.float64)])
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=tf.cast(params, tf.float32)[None],
        output_shape=tf.constant(output_size_hw, tf.int32),
        fill_value=tf.constant(0.0, tf.float32),
        interpolation="BILINEAR",
        fill_mode="CONSTANT")
    return out[0]


def box_to_center_scale_tf(boxes, aspect_ratio, pixel_std=200.0, padding=1.25):
    """Vectorised `prtr_tf.data.transforms.box_to_center_scale`: [x, y, w, h] boxes (N, 4)
    -> (center (N, 2), scale (N, 2)), float32; computed in the boxes' dtype (use float64
    to match the NumPy function to the last bit)."""
    boxes = tf.convert_to_tensor(boxes)
    x, y, w, h = tf.unstack(boxes, 4, axis=-1)
    center = tf.stack([x + w * 0.5, y + h * 0.5], axis=-1)
    wider = w > aspect_ratio * h
    taller = w < aspect_ratio * h
    h2 = tf.where(wider, w * 1.0 / aspect_ratio, h)
    w2 = tf.where(taller, h * aspect_ratio, w)
    scale = tf.stack([w2 / pixel_std, h2 / pixel_std], axis=-1)
    # NumPy: the center is rounded to float32 before the (never true) -1 test.
    center32 = tf.cast(center, tf.float32)
    pad = tf.where(center32[:, :1] != -1.0, tf.cast(padding, boxes.dtype),
                   tf.ones_like(scale[:, :1]))
    scale = tf.cast(tf.cast(scale, tf.float32), boxes.dtype) * pad  # float32 scale, as NumPy
    return center32, tf.cast(scale, tf.float32)
