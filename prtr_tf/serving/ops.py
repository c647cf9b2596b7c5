"""In-graph ops every family's serving shares: pose selection (`select_poses_tf`, the
twin of the evaluation's `prtr_tf.evaluation.coco.select_poses` on one image), and
ONNX-friendly twins of the detector resize and the person crops as matrix products
(no ScaleAndTranslate / MatrixInverse / ImageProjectiveTransformV3, which tf2onnx
cannot convert), with `detector_resize`, which picks either."""
import tensorflow as tf

from prtr_tf.evaluation.coco import rescore_tf
from prtr_tf.evaluation.nms import oks_nms_tf
from prtr_tf.models.detector.resize import resize, resize_size

RESIZE_MODES = ("tf", "matmul")


def _antialias_weights(in_size, out_size):
    """(out, in) float32 weights of TF's antialiased bilinear resize along one axis
    (ScaleAndTranslate with the triangle kernel, translation 0, as `tf.image.resize`)."""
    in_f, out_f = tf.cast(in_size, tf.float32), tf.cast(out_size, tf.float32)
    inv_scale = 1.0 / (out_f / in_f)           # TF's rounding: 1 / (out / in)
    inv_kernel_scale = 1.0 / tf.maximum(inv_scale, 1.0)
    sample = (tf.cast(tf.range(out_size), tf.float32) + 0.5) * inv_scale
    source = tf.cast(tf.range(in_size), tf.float32) + 0.5
    w = tf.maximum(0.0, 1.0 - tf.abs((source[None, :] - sample[:, None]) * inv_kernel_scale))
    return w / tf.reduce_sum(w, axis=1, keepdims=True)


def resize_matmul(image, size, max_size=None):
    """`prtr_tf.models.detector.augment.resize` (image only) as two matrix products: the same
    antialiased bilinear weights, without the ScaleAndTranslate op (which tf2onnx cannot
    convert). Before rounding it equals `tf.image.resize` to ~1e-4 (of 255); values
    within that of a .5 round the other way (a few pixels per image)."""
    shape = tf.shape(image)
    out_h, out_w = resize_size(shape[0], shape[1], size, max_size)
    rows = _antialias_weights(shape[0], out_h)
    cols = _antialias_weights(shape[1], out_w)
    x = tf.transpose(tf.cast(image, tf.float32), [2, 0, 1])              # (3, H, W)
    y = tf.matmul(tf.matmul(rows, x), cols, transpose_b=True)          # (3, h, w)
    return tf.clip_by_value(tf.round(tf.transpose(y, [1, 2, 0])), 0.0, 255.0)


def detector_resize(image, test_size, max_size, mode="tf"):
    """uint8 (H, W, 3) -> float32 image resized as the detector evaluates (shortest side
    ``test_size``, longest <= ``max_size``): `prtr_tf.models.detector.augment.resize` ("tf") or
    `resize_matmul` ("matmul": equal up to float rounding, convertible by tf2onnx)."""
    if mode == "matmul":
        return resize_matmul(image, test_size, max_size)
    x, _ = resize(tf.cast(image, tf.float32), tf.zeros((0, 4)), test_size, max_size)
    return x


def _sampling_weights(in_size, out_size, a, b):
    """(N, out, in) float32 weights of the bilinear, zero-border sampling of source
    coordinate a * i + b at output index i (a, b: (N,) float32): ImageProjectiveTransformV3
    along one axis (each neighbour outside the source contributes 0)."""
    i = tf.cast(tf.range(out_size), tf.float32)
    pos = a[:, None] * i[None, :] + b[:, None]                                # (N, out)
    floor = tf.floor(pos)
    frac = (pos - floor)[..., None]
    source = tf.cast(tf.range(in_size), tf.float32)[None, None, :]
    zeros = tf.zeros_like(source * frac)
    return (tf.where(source == floor[..., None], (floor[..., None] + 1.0) - pos[..., None],
                     zeros)
            + tf.where(source == floor[..., None] + 1.0, frac, zeros))


def crops_matmul(cropper, image, centers, scales):
    """`Cropper` (rotation 0, no flip) for N boxes at once as matrix products: the
    axis-aligned bilinear warp is separable. No MatrixInverse / ImageProjectiveTransform
    ops (which tf2onnx cannot convert); equal to `Cropper` up to float rounding (a value
    within ~1e-4 of a .5 may round the other way)."""
    height, width = cropper.size_hw
    centers = tf.cast(centers, tf.float64)
    k = width / (cropper.pixel_std * tf.cast(scales[:, 0], tf.float64))        # (N,)
    # crop = k (p - c) + (W/2, H/2); inverse p = q / k + (c - (W/2, H/2) / k)
    inv = 1.0 / k
    bx = centers[:, 0] - inv * (width * 0.5)
    by = centers[:, 1] - inv * (height * 0.5)
    shape = tf.shape(image)
    rows = _sampling_weights(shape[0], height, tf.cast(inv, tf.float32),
                             tf.cast(by, tf.float32))                           # (N, H, h)
    cols = _sampling_weights(shape[1], width, tf.cast(inv, tf.float32),
                             tf.cast(bx, tf.float32))                           # (N, W, w)
    x = tf.transpose(tf.cast(image, tf.float32), [2, 0, 1])[None]              # (1, 3, h, w)
    crops = tf.matmul(tf.matmul(rows[:, None], x), cols[:, None], transpose_b=True)
    crops = tf.transpose(crops, [0, 2, 3, 1])                                  # (N, H, W, 3)
    if not cropper.color_rgb:
        crops = tf.reverse(crops, axis=[-1])
    return tf.round(crops) * cropper.gain - cropper.offset


def select_poses_tf(xy, kpt_scores, box_scores, areas, in_vis_thre, oks_thre, sigmas):
    """The persons of one image to keep, best first (spec §5.7): rescoring
    (`rescore_tf`), then greedy OKS-NMS at ``oks_thre`` over ``areas`` (N,) with the set's
    ``sigmas`` (J,) (None: a set without OKS sigmas, no NMS). ``xy`` (N, J, 2) pixels,
    ``kpt_scores`` (N, J), ``box_scores`` (N,). Returns (kept indices, rescored scores
    (N,)); the NumPy path (`prtr_tf.evaluation.coco.select_poses`) keeps the same."""
    scores = rescore_tf(kpt_scores, box_scores, in_vis_thre)
    if sigmas is not None:
        kept = oks_nms_tf(xy, scores, areas, oks_thre, sigmas)
    else:  # no OKS sigmas for this joint set: no NMS, best first
        kept = tf.reverse(tf.argsort(scores, stable=True), axis=[0])
    return kept, scores
