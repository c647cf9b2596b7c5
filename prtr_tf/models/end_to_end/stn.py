"""The STN multi-level crop of the end-to-end ("sequential") PRTR (spec §8).

Each person box (cx, cy, w, h), normalised by the feature maps' extent, becomes a
regular sampling grid covering ``enlarge`` (1.25) times the box, centred on it, in
the [-1, 1] coordinates of ``torch.nn.functional.grid_sample``:

    gx_i = (2 cx - 1) + w * t_i,  t = linspace(-enlarge, enlarge, x_res)
    gy_j = (2 cy - 1) + h * s_j,  s = linspace(-enlarge, enlarge, y_res)

(the notebook's linspace includes both ends; the paper's Eq. 4-5 grid excludes the
right edge, spec §10 item 9). Every selected backbone level is sampled bilinearly on
that grid with torch's ``padding_mode="border"``, ``align_corners=False`` semantics and
the results are concatenated along channels.

The sampler is written with gathers and elementwise arithmetic, so it is
differentiable with respect to the features (gather's gradient scatters into them)
and to the grid, hence to the boxes, through the bilinear weights. As in torch, the
border clamp has a zero gradient for sample points outside the map, and the gradient
is taken with the floor of the coordinate held fixed (it is piecewise linear).
"""
import tensorflow as tf


def box_sampling_grid(boxes, out_hw, enlarge=1.25):
    """Sampling grids of normalised (cx, cy, w, h) boxes.

    Params:
        boxes: (N, 4) boxes, cxcywh normalised to [0, 1] by the sampled maps' extent.
        out_hw: (y_res, x_res), the crop size in samples.
        enlarge: half-extent of t in units of w (1.25: 1.25 x the box, centred).

    Returns:
        (N, y_res, x_res, 2) grid of (x, y) in [-1, 1] coordinates (grid_sample's).
    """
    boxes = tf.convert_to_tensor(boxes)
    y_res, x_res = int(out_hw[0]), int(out_hw[1])
    e = tf.constant(float(enlarge), tf.float64)  # linspace in float64, then cast
    t_x = tf.cast(tf.linspace(-e, e, x_res), boxes.dtype)
    t_y = tf.cast(tf.linspace(-e, e, y_res), boxes.dtype)
    cx, cy, w, h = tf.unstack(boxes, axis=-1)
    gx = (2.0 * cx - 1.0)[:, None] + w[:, None] * t_x[None, :]            # (N, x_res)
    gy = (2.0 * cy - 1.0)[:, None] + h[:, None] * t_y[None, :]            # (N, y_res)
    gx = tf.broadcast_to(gx[:, None, :], [tf.shape(boxes)[0], y_res, x_res])
    gy = tf.broadcast_to(gy[:, :, None], [tf.shape(boxes)[0], y_res, x_res])
    return tf.stack([gx, gy], axis=-1)


def grid_sample_bilinear(features, grid, batch_index):
    """``torch.nn.functional.grid_sample(mode="bilinear", padding_mode="border",
    align_corners=False)``, channels-last, with a batch index per grid.

    Params:
        features: (B, H, W, C) maps.
        grid: (N, h, w, 2) sample points, (x, y) in [-1, 1]; -1/+1 are the outer
            edges of the first/last pixel (align_corners=False).
        batch_index: int (N,), the map each grid samples.

    Returns:
        (N, h, w, C) samples, in the features' dtype.
    """
    features = tf.convert_to_tensor(features)
    grid = tf.cast(grid, features.dtype)
    batch_index = tf.cast(batch_index, tf.int32)
    shape = tf.shape(features)
    height, width = shape[1], shape[2]
    h_f = tf.cast(height, features.dtype)
    w_f = tf.cast(width, features.dtype)
    # Unnormalise (align_corners=False), then clamp to the border as torch does
    # (clip_coordinates: the gradient is zero outside the map).
    ix = ((grid[..., 0] + 1.0) * w_f - 1.0) / 2.0
    iy = ((grid[..., 1] + 1.0) * h_f - 1.0) / 2.0
    ix = tf.clip_by_value(ix, tf.zeros_like(ix), w_f - 1.0)
    iy = tf.clip_by_value(iy, tf.zeros_like(iy), h_f - 1.0)
    x0f = tf.stop_gradient(tf.floor(ix))
    y0f = tf.stop_gradient(tf.floor(iy))
    wx1 = ix - x0f
    wy1 = iy - y0f
    wx0 = 1.0 - wx1
    wy0 = 1.0 - wy1
    x0 = tf.cast(x0f, tf.int32)
    y0 = tf.cast(y0f, tf.int32)
    # x0 + 1 reaches W only when ix == W - 1 exactly, where its weight is 0.
    x1 = tf.minimum(x0 + 1, width - 1)
    y1 = tf.minimum(y0 + 1, height - 1)
    b = tf.broadcast_to(batch_index[:, None, None], tf.shape(x0))

    def tap(yy, xx):
        return tf.gather_nd(features, tf.stack([b, yy, xx], axis=-1))       # (N, h, w, C)

    return ((wy0 * wx0)[..., None] * tap(y0, x0) + (wy0 * wx1)[..., None] * tap(y0, x1)
            + (wy1 * wx0)[..., None] * tap(y1, x0) + (wy1 * wx1)[..., None] * tap(y1, x1))


def multi_level_crop(levels, boxes, batch_index, out_hw, enlarge=1.25):
    """Crops every box from every level and concatenates the crops along channels.

    Params:
        levels: list of (B, H_l, W_l, C_l) maps covering the same image extent.
        boxes: (N, 4) cxcywh normalised by that extent.
        batch_index: int (N,), the image of each box.
        out_hw: (y_res, x_res).

    Returns:
        (N, y_res, x_res, sum C_l).
    """
    if not levels:
        raise ValueError("multi_level_crop needs at least one level")
    dtype = levels[0].dtype
    grid = box_sampling_grid(tf.cast(boxes, dtype), out_hw, enlarge)
    return tf.concat([grid_sample_bilinear(level, grid, batch_index) for level in levels],
                     axis=-1)
