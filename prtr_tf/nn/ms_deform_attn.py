"""Multi-scale deformable attention (Deformable DETR's ``MSDeformAttn``; spec
``deformable-spec.md`` §2), channels-last, built from plain gathers.

`ms_deform_attn_core` has the semantics of the official pure-PyTorch core
``ms_deform_attn_core_pytorch`` (``F.grid_sample``, bilinear, ``align_corners=False``,
``padding_mode="zeros"``), which is also what the official CUDA kernel computes:

    x = loc_x * W_l - 0.5,  y = loc_y * H_l - 0.5          (pixel centres at integers)
    bilinear over the 4 neighbours of (x, y); a neighbour outside the map counts 0

It is formulated as ONE ``tf.gather`` (axis 0, no ``batch_dims``) on a flattened value
table of rows ``(n * M + m) * S + start_l + y * W_l + x``, with the corner indices
clipped into range and each corner's validity folded into its bilinear weight as a
float. Ops: FULLY_CONNECTED, SOFTMAX, RESHAPE, TRANSPOSE, ADD/SUB/MUL, FLOOR, CAST,
MINIMUM/MAXIMUM, comparisons, GATHER, SUM: all TFLite builtins (no Flex op), the ONNX
graph needs opset >= 11, and XLA compiles it. New axes are made with ``tf.expand_dims``
/ ``tf.reshape``, never ``x[:, None]`` (a StridedSlice with ``new_axis_mask`` that the
TFLite converter can leave as a Flex op).

Spatial shapes are static Python ints (``[(H_0, W_0), ...]``, known when the graph is
built): every start index, scale and clip bound is then a constant. Layouts are the
official ones: value (N, S, M, D) head-major channels (``m * D + e``), sampling
locations (N, Lq, M, L, P, 2) as (x, y) normalised to [0, 1] of each (padded) level
map, attention weights (N, Lq, M, L, P); output (N, Lq, M * D).
"""
import math

import keras
import numpy as np
import tensorflow as tf

from prtr_tf.nn.layers import Composite, named


def static_shapes(spatial_shapes):
    """``[(H, W), ...]`` as Python ints from a list, tuple or (L, 2) array; raises for
    tensors whose values are not known at trace time."""
    if isinstance(spatial_shapes, tf.Tensor):
        value = tf.get_static_value(spatial_shapes)
        if value is None:
            raise ValueError("spatial_shapes must be static (Python ints or a constant): the "
                             "sampling core builds its index arithmetic from them")
        spatial_shapes = value
    shapes = [(int(h), int(w)) for h, w in np.asarray(spatial_shapes).reshape(-1, 2)]
    if not shapes or any(h < 1 or w < 1 for h, w in shapes):
        raise ValueError(f"invalid spatial_shapes {shapes}")
    return shapes


def level_start_index(spatial_shapes):
    """``[0, H_0 W_0, H_0 W_0 + H_1 W_1, ...]`` (the official ``level_start_index``)."""
    return _starts(static_shapes(spatial_shapes))


def _corner_terms(loc, attw, h, w, start):
    """Row offsets (within one (n, m) block of the value table) and weights of the 4
    bilinear corners of every sample of one level.

    loc: (N, Lq, M, P, 2) (x, y) in [0, 1] of the level; attw: (N, Lq, M, P).
    Returns rows (N, Lq, M, 4P) int32 and weights (N, Lq, M, 4P) (attention weight x
    bilinear weight x corner validity).
    """
    dtype = loc.dtype
    loc_x, loc_y = tf.unstack(loc, axis=-1)
    # Clipped first so that floor/cast stay finite; outside [-2, size + 1] every
    # corner is invalid either way (and grid_sample's gradient there is 0 too). A NaN
    # location (clipping keeps NaN) samples zeros, as the official op's bounds test
    # does: moved outside first (``x == x`` is False only for NaN; EQUAL and SELECT
    # are TFLite builtins, IsFinite is not), else its int cast gathers out of range.
    x = loc_x * float(w) - 0.5
    y = loc_y * float(h) - 0.5
    x = tf.clip_by_value(tf.where(tf.equal(x, x), x, -2.0), -2.0, float(w) + 1.0)
    y = tf.clip_by_value(tf.where(tf.equal(y, y), y, -2.0), -2.0, float(h) + 1.0)
    x0 = tf.floor(x)
    y0 = tf.floor(y)
    fx = x - x0
    fy = y - y0
    rows, weights = [], []
    for dy, dx, bw in ((0, 0, (1.0 - fy) * (1.0 - fx)), (0, 1, (1.0 - fy) * fx),
                       (1, 0, fy * (1.0 - fx)), (1, 1, fy * fx)):
        xi = x0 + float(dx)
        yi = y0 + float(dy)
        valid = tf.cast(tf.logical_and(
            tf.logical_and(xi >= 0.0, xi <= float(w - 1)),
            tf.logical_and(yi >= 0.0, yi <= float(h - 1))), dtype)
        # Clipped only to keep the gather legal; the validity zeroes the weight.
        xc = tf.cast(tf.clip_by_value(xi, 0.0, float(w - 1)), tf.int32)
        yc = tf.cast(tf.clip_by_value(yi, 0.0, float(h - 1)), tf.int32)
        rows.append(start + yc * w + xc)
        weights.append(bw * valid * attw)
    return tf.concat(rows, axis=-1), tf.concat(weights, axis=-1)


def weighted_gather(table, rows, weights):
    """``sum_k weights[..., k] * table[rows[..., k]]``: (..., K) int32 rows of a (R, D)
    table, (..., K) weights -> (..., D). Same values as the plain expression, with a
    memory-lean gradient: the backward pass re-gathers the (..., K, D) samples instead of
    keeping them from the forward pass, so training stores (..., K) rows and weights per
    layer rather than (..., K, D) floats (D = 32 times less; at 384x288 the encoder's
    samples are 2298 x 8 x 64 x 32 floats = 150 MB per crop and layer)."""

    @tf.custom_gradient
    def inner(table, weights):
        out = tf.reduce_sum(tf.gather(table, rows) * tf.expand_dims(weights, -1), axis=-2)

        def grad(g):
            g = tf.expand_dims(g, -2)                                 # (..., 1, D)
            d_weights = tf.reduce_sum(tf.gather(table, rows) * g, axis=-1)
            depth = tf.shape(table)[-1]
            contrib = tf.reshape(tf.expand_dims(weights, -1) * g, tf.stack([-1, depth]))
            d_table = tf.math.unsorted_segment_sum(contrib, tf.reshape(rows, [-1]),
                                                   tf.shape(table)[0])
            return d_table, d_weights

        return out, grad

    return inner(table, weights)


def ms_deform_attn_core(value, spatial_shapes, level_start_index=None,
                        sampling_locations=None, attention_weights=None,
                        lean_gradient=False):
    """The official ``ms_deform_attn_core_pytorch``, as gathers.

    Args:
      value: (N, S, M, D), S = sum_l H_l W_l, tokens of each level row-major.
      spatial_shapes: static ``[(H_l, W_l), ...]`` (ints, list/tuple/array).
      level_start_index: optional; checked against ``spatial_shapes`` if given as
        static values (the core derives the starts itself).
      sampling_locations: (N, Lq, M, L, P, 2), (x, y) normalised to each level map.
      attention_weights: (N, Lq, M, L, P).
      lean_gradient: sample and reduce with `weighted_gather` (its gradient recomputes
        the samples: for training) or with plain ops (autodiff keeps the samples; the
        default, and what exports should trace: a ``tf.custom_gradient`` in a frozen
        graph made the TFLite converter drop the signature).
    Returns:
      (N, Lq, M * D) in the dtype of ``value``.
    """
    shapes = static_shapes(spatial_shapes)
    starts = _starts(shapes)
    if level_start_index is not None:
        given = tf.get_static_value(tf.convert_to_tensor(level_start_index))
        if given is not None and [int(s) for s in np.reshape(given, -1)] != starts:
            raise ValueError(f"level_start_index {np.reshape(given, -1).tolist()} does not "
                             f"match spatial_shapes {shapes} (starts {starts})")
    value = tf.convert_to_tensor(value)
    dtype = value.dtype
    # Locations and bilinear weights stay at least float32 (float16 / bfloat16 values
    # under mixed precision would move samples by a sizeable fraction of a pixel).
    coord = coordinate_dtype(dtype)
    loc = tf.cast(sampling_locations, coord)
    attw = tf.cast(attention_weights, coord)
    num_levels = len(shapes)
    total = sum(h * w for h, w in shapes)
    if value.shape[1] is not None and value.shape[1] != total:
        raise ValueError(f"value has {value.shape[1]} tokens, spatial_shapes {shapes} "
                         f"give {total}")
    if loc.shape[3] is not None and loc.shape[3] != num_levels:
        raise ValueError(f"sampling_locations have {loc.shape[3]} levels, spatial_shapes "
                         f"{num_levels}")
    heads = value.shape[2]
    depth = value.shape[3]
    if heads is None or depth is None:
        raise ValueError("value must have static heads and channels (N, S, M, D)")
    vshape = tf.shape(value)
    batch = vshape[0]
    qshape = tf.shape(loc)
    queries = qshape[1]
    # One table of rows (n * M + m) * S + s.
    table = tf.reshape(tf.transpose(value, [0, 2, 1, 3]), [-1, depth])
    rows, weights = [], []
    for lvl, ((h, w), start) in enumerate(zip(shapes, starts)):
        loc_l = tf.gather(loc, lvl, axis=3)      # (N, Lq, M, P, 2)
        attw_l = tf.gather(attw, lvl, axis=3)    # (N, Lq, M, P)
        r, wt = _corner_terms(loc_l, attw_l, h, w, start)
        rows.append(r)
        weights.append(wt)
    rows = tf.concat(rows, axis=-1)              # (N, Lq, M, K), K = 4 L P
    weights = tf.concat(weights, axis=-1)
    base = tf.reshape(tf.range(batch, dtype=tf.int32) * (heads * total), [-1, 1, 1, 1]) + \
        tf.reshape(tf.range(heads, dtype=tf.int32) * total, [1, 1, heads, 1])
    rows = rows + base
    weights = tf.cast(weights, dtype)
    if lean_gradient:
        out = weighted_gather(table, rows, weights)                       # (N, Lq, M, D)
    else:
        sampled = tf.gather(table, rows)                                  # (N, Lq, M, K, D)
        out = tf.reduce_sum(sampled * tf.expand_dims(weights, -1), axis=3)
    return tf.reshape(out, tf.stack([batch, queries, heads * depth]))


def coordinate_dtype(dtype):
    """float64 for float64 computations, else float32 (sampling coordinates)."""
    return tf.float64 if tf.as_dtype(dtype) == tf.float64 else tf.float32


def _starts(shapes):
    starts, total = [], 0
    for h, w in shapes:
        starts.append(total)
        total += h * w
    return starts


# ------------------------------------------------------------------------ the module


def offset_bias_grid(n_heads, n_levels, n_points):
    """The official ``sampling_offsets.bias`` init (§1.7 / §2): head m points along
    θ_m = m 2π/M, direction scaled so that max(|x|, |y|) = 1, point p at (p + 1) x it,
    identical per level; layout ``((m L + l) P + p) 2 + c`` (c: 0 = x, 1 = y). float32
    as torch computes it."""
    thetas = np.arange(n_heads, dtype=np.float32) * np.float32(2.0 * math.pi / n_heads)
    grid = np.stack([np.cos(thetas), np.sin(thetas)], -1).astype(np.float32)
    grid = grid / np.abs(grid).max(-1, keepdims=True)
    grid = np.tile(grid[:, None, None, :], (1, n_levels, n_points, 1))
    grid = grid * np.arange(1, n_points + 1, dtype=np.float32)[None, None, :, None]
    return grid.reshape(-1).astype(np.float32)


class OffsetGridInitializer(keras.initializers.Initializer):
    """`offset_bias_grid` as a Keras initializer (for ``sampling_offsets`` bias)."""

    def __init__(self, n_heads, n_levels, n_points):
        self.n_heads, self.n_levels, self.n_points = n_heads, n_levels, n_points

    def __call__(self, shape, dtype=None):
        grid = offset_bias_grid(self.n_heads, self.n_levels, self.n_points)
        if tuple(shape) != grid.shape:
            raise ValueError(f"sampling_offsets bias shape {tuple(shape)} != {grid.shape}")
        return tf.constant(grid, dtype=dtype or "float32")

    def get_config(self):
        return {"n_heads": self.n_heads, "n_levels": self.n_levels, "n_points": self.n_points}


class MSDeformAttn(Composite):
    """The official ``MSDeformAttn`` (d_model, n_levels, n_heads, n_points).

    Sub-layers (Dense, kernel = torch weight transposed), tagged with the official
    module paths ``{torch_name}.sampling_offsets`` etc. when ``torch_name`` is given:
      value_proj (d, d), sampling_offsets (d -> M L P 2), attention_weights (d -> M L P),
      output_proj (d, d).
    Initialisation as ``MSDeformAttn._reset_parameters``: sampling_offsets weight 0 and
    bias `offset_bias_grid`; attention_weights weight and bias 0; value_proj and
    output_proj xavier-uniform, bias 0.

    ``call(query, reference_points, input_flatten, input_spatial_shapes,
    input_padding_mask=None)``:
      query (N, Lq, d); reference_points (N, Lq, L, 2) (x, y) in [0, 1] of each level
      (already rescaled by the valid ratios, as the official layers pass them) or
      (N, Lq, L, 4) boxes (cx, cy, w, h); input_flatten (N, S, d);
      input_spatial_shapes static [(H_l, W_l)]; input_padding_mask (N, S) True on padding;
      training: True selects the memory-lean gradient of the sampling (no dropout here).
    Returns (N, Lq, d).
    """

    def __init__(self, d_model=256, n_levels=4, n_heads=8, n_points=4, torch_name=None, **kw):
        super().__init__(**kw)
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model, self.n_levels = d_model, n_levels
        self.n_heads, self.n_points = n_heads, n_points
        self.head_dim = d_model // n_heads
        p = (torch_name + ".") if torch_name else None

        def tag(layer, sub):
            return named(layer, p + sub) if p else layer

        self.sampling_offsets = tag(keras.layers.Dense(
            n_heads * n_levels * n_points * 2, kernel_initializer="zeros",
            bias_initializer=OffsetGridInitializer(n_heads, n_levels, n_points),
            name="sampling_offsets"), "sampling_offsets")
        self.attention_weights = tag(keras.layers.Dense(
            n_heads * n_levels * n_points, kernel_initializer="zeros",
            bias_initializer="zeros", name="attention_weights"), "attention_weights")
        self.value_proj = tag(keras.layers.Dense(
            d_model, kernel_initializer="glorot_uniform", name="value_proj"), "value_proj")
        self.output_proj = tag(keras.layers.Dense(
            d_model, kernel_initializer="glorot_uniform", name="output_proj"), "output_proj")

    def sampling(self, query, reference_points, input_spatial_shapes):
        """(sampling_locations (N, Lq, M, L, P, 2), attention_weights (N, Lq, M, L, P))
        of the official forward, before the core (float32, or float64 for a float64
        query, whatever the compute dtype)."""
        shapes = static_shapes(input_spatial_shapes)
        M, L, P = self.n_heads, self.n_levels, self.n_points
        if len(shapes) != L:
            raise ValueError(f"{len(shapes)} spatial shapes for n_levels={L}")
        qshape = tf.shape(query)
        n, lq = qshape[0], qshape[1]
        coord = coordinate_dtype(query.dtype)
        attw = tf.reshape(tf.cast(self.attention_weights(query), coord),
                          tf.stack([n, lq, M, L * P]))
        attw = tf.reshape(tf.nn.softmax(attw, axis=-1), tf.stack([n, lq, M, L, P]))
        # Rank-5 arithmetic (TF's CPU kernels do not broadcast some rank-6 pairs): the
        # points and (x, y) share the last axis, index p * 2 + c as in the official layout.
        off = tf.reshape(tf.cast(self.sampling_offsets(query), coord),
                         tf.stack([n, lq, M, L, P * 2]))
        ref = tf.cast(reference_points, off.dtype)
        ref = tf.expand_dims(ref, 2)                                   # (N, Lq, 1, L, k)
        corners = ref.shape[-1]
        if corners == 2:
            # offsets are in pixels of level l: normalised by (W_l, H_l)
            norm = np.tile(np.array([[w, h] for h, w in shapes], np.float64), (1, P))
            loc = tf.tile(ref, [1, 1, 1, 1, P]) + off / tf.constant(norm, off.dtype)
        elif corners == 4:
            centre, size = tf.split(ref, 2, axis=-1)
            loc = tf.tile(centre, [1, 1, 1, 1, P]) + \
                off / float(P) * tf.tile(size, [1, 1, 1, 1, P]) * 0.5
        else:
            raise ValueError("last dim of reference_points must be 2 or 4, but got "
                             f"{corners} instead")
        loc = tf.reshape(loc, tf.stack([n, lq, M, L, P, 2]))
        return loc, attw

    def call(self, query, reference_points, input_flatten, input_spatial_shapes,
             input_padding_mask=None, training=None):
        shapes = static_shapes(input_spatial_shapes)
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            mask = tf.expand_dims(tf.cast(input_padding_mask, tf.bool), -1)
            value = tf.where(mask, tf.zeros_like(value), value)
        vshape = tf.shape(value)
        value = tf.reshape(value, tf.stack([vshape[0], vshape[1], self.n_heads,
                                            self.head_dim]))
        loc, attw = self.sampling(query, reference_points, shapes)
        # training: the memory-lean gradient (`weighted_gather`); inference and exports:
        # plain ops (same values).
        out = ms_deform_attn_core(value, shapes, None, loc, attw,
                                  lean_gradient=bool(training))
        return self.output_proj(out)
