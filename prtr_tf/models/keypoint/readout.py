"""In-graph Hungarian assignment and the inference readout (spec §3.2).

At inference PRTR turns its Q query predictions into exactly one prediction per
joint type: with prob = softmax over the J joint logits (the background logit,
last, is dropped *before* the softmax), a minimum-cost assignment on the J x Q
cost -prob^T gives each joint a distinct query, whose coordinates and
probability become that joint's estimate.

Unlike the training matcher (`prtr_tf.models.keypoint.matcher`, scipy through numpy_function),
everything here is plain TensorFlow so that the readout can live inside an
exported model: TFLite with builtin ops only, ONNX through tf2onnx, and XLA.
The solver therefore uses only while_loop, comparisons, elementwise arithmetic,
where, reduce_min/argmin and reduce_sum: indexing is done with one-hot masks
(no scatter, no gather, no tf.one_hot, no py_function). Checked: TFLite
conversion with TFLITE_BUILTINS only, tf2onnx (opset 17) + onnxruntime, and
jit_compile=True, all with an unknown batch size.

Algorithm: the shortest-augmenting-path Hungarian method with potentials
(Jonker-Volgenant style; the O(R^2 C) "e-maxx" formulation), vectorised over the
batch. Rows are added one at a time; for each row a Dijkstra search over reduced
costs grows a tree of columns until it reaches a free column, the potentials are
updated, and the assignment is flipped along the path. Batch elements run in
lockstep; an element whose search has finished simply idles (masked updates)
until the slowest one of the batch is done.

Precision: the solver runs in float64 when given float64 and in float32
otherwise (float64 is poorly supported by TFLite). The result is always a valid
assignment (distinct columns). In float32 it is optimal up to rounding: only
assignments whose total costs differ by less than a few float32 ulps of the
accumulated potentials (~1e-6 relative to the cost magnitude) can be confused,
i.e. near-ties, where either answer is optimal to that tolerance. With exact ties
the solver may pick a different (equally optimal) assignment than scipy.
"""
import tensorflow as tf

# Non-finite costs (a diverged model) are replaced by +-this so that the solver
# still returns a valid assignment, as `prtr_tf.models.keypoint.matcher` does. Finite costs are
# used as they are and should stay far below _FAR in magnitude.
_BIG_COST = 1e6
# "Not reached yet" distance. Finite on purpose: tf2onnx lowers tf.where to
# cond * x + (1 - cond) * y, where an inf would turn into NaN (0 * inf).
_FAR = 1e30


def _one_hot(index, depth):
    """Boolean one-hot (..., depth) of int32 `index` by comparison with a range.

    Used instead of tf.one_hot, whose conversion inside loops tf2onnx gets wrong.
    """
    return tf.equal(index[..., None], tf.range(depth))


def _take(values, index, depth):
    """values[b, index[b]] for values (B, depth), via a one-hot mask (no gather)."""
    mask = _one_hot(index, depth)
    return tf.reduce_sum(tf.where(mask, values, tf.zeros_like(values)), axis=1)


def _dim(x, axis):
    """Static size of `x` along `axis` if known, else the dynamic one."""
    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


def _solve(cost):
    """Batched min-cost assignment: cost (B, R, C), R <= C -> int32 (B, R)."""
    batch = _dim(cost, 0)
    num_rows = _dim(cost, 1)
    num_cols = _dim(cost, 2) + 1              # column 0 is the search root (virtual)
    dtype = cost.dtype
    far = tf.constant(_FAR, dtype)
    # A zero column in front, so that cost[:, :, j] lines up with the 1-based columns.
    cost = tf.pad(cost, [[0, 0], [0, 0], [1, 0]])
    col_ids = tf.range(num_cols)[None, :]      # (1, C+1)

    def search_step(u, v, p, way, minv, used, row_used, j0, active):
        """One Dijkstra step: add column j0 (and its row) to the tree, relax, pick next.

        Elements that already reached a free column (not `active`) are frozen:
        no relaxation, delta = 0, j0 kept (their `used` flags no longer matter).
        """
        used_new = used | tf.equal(col_ids, j0[:, None])
        row = _take(p, j0, num_cols) - 1                              # (B,) 0-based row
        row_mask = _one_hot(row, num_rows)                            # (B, R)
        row_used_new = row_used | row_mask
        row_cost = tf.reduce_sum(tf.where(row_mask[:, :, None], cost, tf.zeros_like(cost)),
                                 axis=1)                              # (B, C+1)
        u_row = _take(u, row, num_rows)
        reduced = row_cost - u_row[:, None] - v                       # reduced costs
        relax = active[:, None] & ~used_new & (reduced < minv)
        minv = tf.where(relax, reduced, minv)
        way = tf.where(relax, j0[:, None], way)
        open_minv = tf.where(used_new, far, minv)
        delta = tf.reduce_min(open_minv, axis=1)
        j1 = tf.argmin(open_minv, axis=1, output_type=tf.int32)
        delta = tf.where(active, delta, tf.zeros_like(delta))[:, None]
        zero = tf.zeros_like(minv)
        # Potentials: rows and columns of the tree move by delta, others keep theirs;
        # the tentative distances of the open columns shrink by delta.
        u = u + tf.where(row_used_new, delta, tf.zeros_like(u))
        v = v - tf.where(used_new, delta, zero)
        minv = minv - tf.where(used_new, zero, delta)
        j0 = tf.where(active, j1, j0)
        active = active & tf.not_equal(_take(p, j0, num_cols), 0)   # stop at a free column
        return u, v, p, way, minv, used_new, row_used_new, j0, active

    def augment_step(p, way, j0):
        """Walks one edge back along the search path, shifting the assignment."""
        active = tf.not_equal(j0, 0)
        j1 = _take(way, j0, num_cols)
        on_path = active[:, None] & tf.equal(col_ids, j0[:, None])
        p = tf.where(on_path, _take(p, j1, num_cols)[:, None], p)
        return p, way, tf.where(active, j1, j0)

    def add_row(i, u, v, p, way):
        """Inserts row i (0-based) into the assignment of rows 0..i-1."""
        p = tf.where(tf.equal(col_ids, 0), i + 1, p)    # the root column holds row i
        minv = tf.fill([batch, num_cols], far)
        used = tf.zeros([batch, num_cols], tf.bool)
        row_used = tf.zeros([batch, num_rows], tf.bool)
        j0 = tf.zeros([batch], tf.int32)
        active = tf.ones([batch], tf.bool)
        # Both loops take at most C+1 steps; the bound only matters if R > C
        # slips through at run time (garbage out, but no endless loop).
        u, v, p, way, _, _, _, j0, _ = tf.while_loop(
            lambda *s: tf.reduce_any(s[-1]), search_step,
            (u, v, p, way, minv, used, row_used, j0, active), maximum_iterations=num_cols)
        p, way, _ = tf.while_loop(lambda p, way, j0: tf.reduce_any(tf.not_equal(j0, 0)),
                                  augment_step, (p, way, j0), maximum_iterations=num_cols)
        return i + 1, u, v, p, way

    u = tf.zeros([batch, num_rows], dtype)       # row potentials
    v = tf.zeros([batch, num_cols], dtype)       # column potentials
    p = tf.zeros([batch, num_cols], tf.int32)    # p[j] = 1 + row of column j, 0 = free
    way = tf.zeros([batch, num_cols], tf.int32)  # previous column on the search path
    _, _, _, p, _ = tf.while_loop(lambda i, *_: i < num_rows, add_row,
                                  (tf.constant(0, tf.int32), u, v, p, way))

    # Invert p (column -> row) into row -> column without a scatter.
    rows = tf.range(1, num_rows + 1)[None, :, None]                   # (1, R, 1)
    hit = tf.cast(tf.equal(p[:, None, 1:], rows), tf.int32)           # (B, R, C)
    return tf.argmax(hit, axis=2, output_type=tf.int32)


def linear_sum_assignment(cost):
    """Exact minimum-cost assignment of rows to distinct columns, in-graph.

    The TensorFlow counterpart of ``scipy.optimize.linear_sum_assignment`` for the
    case rows <= columns, returning only the column of each row (the rows are
    0..R-1 in order).

    Params:
        cost: (R, C) or (B, R, C) float tensor with R <= C. The batch size may be
            unknown (None). float64 is solved in float64; any other float type in
            float32. NaN and +inf become 1e6, -inf -1e6 (as in the training
            matcher); finite entries are used as they are.

    Returns:
        int32 (R,) or (B, R): the column assigned to each row; the columns of one
        problem are distinct and their total cost is minimal.
    """
    cost = tf.convert_to_tensor(cost)
    if cost.dtype != tf.float64:
        cost = tf.cast(cost, tf.float32)
    if cost.shape.rank not in (2, 3):
        raise ValueError(f"cost must be (R, C) or (B, R, C), got shape {cost.shape}")
    rows, cols = cost.shape[-2], cost.shape[-1]
    if rows is not None and cols is not None and rows > cols:
        raise ValueError(f"need rows <= columns, got a {rows} x {cols} cost matrix")
    # As np.nan_to_num in the training matcher: NaN -> +big, +-inf -> +-big.
    big = tf.constant(_BIG_COST, cost.dtype)
    cost = tf.where(tf.math.is_nan(cost), big, cost)
    cost = tf.where(tf.math.is_inf(cost), tf.sign(cost) * big, cost)
    if cost.shape.rank == 2:
        return _solve(cost[None])[0]
    return _solve(cost)


def readout(pred_logits, pred_coords, image_size_hw=None):
    """One prediction per joint from the final decoder layer (spec §3.2).

    Params:
        pred_logits: (B, Q, J+1) class logits of the final layer, background last.
        pred_coords: (B, Q, 2) normalised (x, y) coordinates in [0, 1].
        image_size_hw: optional (H, W) of the crop (pair or tensor); adds pixel
            coordinates.

    Returns:
        A dict with
          "query":  int32 (B, J), the query assigned to joint j;
          "scores": (B, J), prob[query_j, j] with prob = softmax over the J joint
                    logits (background excluded before the softmax);
          "coords": (B, J, 2), pred_coords[query_j], normalised (x, y);
          "coords_px": (B, J, 2), coords * (W, H), only if image_size_hw is given.
    """
    pred_logits = tf.convert_to_tensor(pred_logits)
    pred_coords = tf.convert_to_tensor(pred_coords)
    num_joints = pred_logits.shape[-1] - 1
    # Dropping the background *before* the softmax matters: including it costs
    # 0.9-1.5 AP in the paper's ablation.
    prob = tf.nn.softmax(tf.cast(pred_logits[..., :num_joints], tf.float32), axis=-1)
    prob_t = tf.linalg.matrix_transpose(prob)                            # (B, J, Q)
    query = linear_sum_assignment(-prob_t)                               # (B, J)
    # Reads through one-hot masks rather than gathers with batch_dims, which not
    # every export path handles; tf.where keeps a NaN elsewhere from leaking in.
    pick = _one_hot(query, _dim(prob_t, 2))                              # (B, J, Q)
    scores = tf.reduce_sum(tf.where(pick, prob_t, tf.zeros_like(prob_t)), axis=-1)
    coords = tf.where(pick[..., None], pred_coords[:, None], tf.zeros_like(pred_coords[:, None]))
    out = {"query": query, "scores": scores, "coords": tf.reduce_sum(coords, axis=2)}
    if image_size_hw is not None:
        size_wh = tf.reverse(tf.cast(image_size_hw, pred_coords.dtype), axis=[0])
        out["coords_px"] = out["coords"] * size_wh
    return out
