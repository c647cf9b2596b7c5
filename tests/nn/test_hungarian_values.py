"""The Hungarian scaffold (`prtr_tf.nn.hungarian.solve`) pinned on small matrices whose
optimal assignment is worked out by hand (issue 27): NaN / inf costs, the valid mask,
both orientations, and the batch index of every leading dimension."""
import numpy as np
import pytest

from prtr_tf.nn import hungarian


def test_nan_cost_is_expensive_not_free():
    # NaN -> BIG_COST: the best finite assignment is t0->q1 (1) + t1->q0 (2) = 3.
    # Rules out NaN -> 0 (then t0->q0, t1->q1 at cost 0) and NaN -> -BIG.
    cost = np.array([[np.nan, 1.0, 5.0], [2.0, np.nan, 4.0]])
    np.testing.assert_array_equal(hungarian.solve(cost), [1, 0])


def test_infinities_keep_their_sign():
    # +inf is expensive, -inf is cheap: t1 takes q0 (-inf), t0 the other one.
    # Rules out -inf -> +BIG (a tie, scipy's first choice t0->q0) and +inf -> -BIG.
    cost = np.array([[np.inf, 1.0], [-np.inf, 1.0]])
    np.testing.assert_array_equal(hungarian.solve(cost), [1, 0])
    # t0->q1 + t1->q0 = -BIG + BIG = 0 beats 1 + 1 (with -inf -> +BIG: 2 BIG > 2).
    cost = np.array([[1.0, -np.inf], [np.inf, 1.0]])
    np.testing.assert_array_equal(hungarian.solve(cost), [1, 0])
    assert hungarian.BIG_COST == 1e6


def test_targets_first_returns_the_query_of_each_target():
    # 2 targets x 3 queries; t0 is cheapest on q2, t1 on q0: (2, 0). Rules out
    # returning the row indices or the target of each query (an argsort).
    cost = np.array([[5.0, 4.0, 0.0], [0.0, 3.0, 9.0]])
    out = hungarian.solve(cost)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [2, 0])


def test_more_targets_than_queries_needs_valid_or_raises():
    cost = np.zeros((3, 2))
    with pytest.raises(ValueError, match="Q=2 < T=3"):
        hungarian.solve(cost)
    # with a mask every target is allowed: the one that is expensive everywhere (t1)
    # stays unmatched (-1).
    cost = np.array([[[0.0, 5.0], [9.0, 9.0], [5.0, 0.0]]])
    np.testing.assert_array_equal(hungarian.solve(cost, valid=[[1, 1, 1]]), [[0, -1, 1]])


def test_valid_mask_threshold_and_invalid_targets():
    # Target 1 is the cheapest everywhere but invalid (0.5 is not > 0.5): -1, and it
    # must not take a query. Target 2 (valid 0.6) gets q0, target 0 gets q1.
    # Rules out >= 0.5, ignoring the mask, or indexing the result by the compacted
    # (valid-only) target position.
    cost = np.array([[[9.0, 1.0, 9.0],      # t0 -> q1
                      [0.0, 0.0, 0.0],      # t1 invalid
                      [1.0, 9.0, 9.0]]])    # t2 -> q0
    out = hungarian.solve(cost, valid=[[1.0, 0.5, 0.6]])
    np.testing.assert_array_equal(out, [[1, -1, 0]])


def test_targets_last_orientation():
    # cost (B=1, Q=3, T=3): scipy sees queries x valid targets. Target 0 is cheapest
    # on q2, target 2 on q0; target 1 (invalid) would steal q1 / q0 if it counted.
    cost = np.array([[[9.0, 0.0, 1.0],
                      [9.0, 0.0, 9.0],
                      [1.0, 0.0, 9.0]]])
    out = hungarian.solve(cost, valid=[[1, 0, 1]], targets_last=True)
    np.testing.assert_array_equal(out, [[2, -1, 0]])
    # all valid: target 1 takes q1 (the only 0 column left for it)
    out = hungarian.solve(cost, valid=[[1, 1, 1]], targets_last=True)
    np.testing.assert_array_equal(out, [[2, 1, 0]])
    # no mask with targets last: every target real
    np.testing.assert_array_equal(hungarian.solve(cost, targets_last=True), [[2, 1, 0]])


def test_leading_layer_dimension_uses_the_batch_index_of_each_matrix():
    # cost (L=2, B=2, T=2, Q=2); valid (B, T): image 0 has only target 0, image 1 only
    # target 1. Matrices are flattened layer-major, so matrix n is image n % B.
    # Rules out n // B (layer 1's masks would be image 1's for both images).
    keep = np.array([[0.0, 9.0], [9.0, 0.0]])   # t0->q0, t1->q1
    cost = np.stack([np.stack([keep, keep]), np.stack([keep, keep])])
    valid = np.array([[1, 0], [0, 1]])
    out = hungarian.solve(cost, valid=valid)
    assert out.shape == (2, 2, 2)
    np.testing.assert_array_equal(out, [[[0, -1], [-1, 1]], [[0, -1], [-1, 1]]])
    with pytest.raises(ValueError, match="valid has shape"):
        hungarian.solve(cost, valid=np.ones((3, 2)))
    with pytest.raises(ValueError, match="valid has shape"):
        hungarian.solve(np.zeros((2, 2)), valid=np.ones((1, 2)))


def test_an_image_without_valid_targets_matches_nothing():
    cost = np.zeros((2, 2, 3))
    out = hungarian.solve(cost, valid=[[0, 0], [1, 1]])
    np.testing.assert_array_equal(out[0], [-1, -1])
    assert sorted(out[1]) != [-1, -1] and min(out[1]) >= 0


def test_assign_in_tensorflow_keeps_the_static_shape():
    import tensorflow as tf
    cost = tf.constant([[[5.0, 4.0, 0.0], [0.0, 3.0, 9.0]]])
    out = hungarian.assign(cost)
    assert out.shape.as_list() == [1, 2] and out.dtype == tf.int32
    np.testing.assert_array_equal(out.numpy(), [[2, 0]])
    out = hungarian.assign(tf.transpose(cost, [0, 2, 1]), valid=tf.constant([[1, 1]]),
                           targets_last=True)
    assert out.shape.as_list() == [1, 2]
    np.testing.assert_array_equal(out.numpy(), [[2, 0]])


def test_minus_infinity_is_minus_big_cost_not_the_lowest_float():
    # t0->q0 + t1->q1 = -inf + inf -> -BIG + BIG = 0, t0->q1 + t1->q0 = -6: the second
    # wins. With -inf -> the lowest float (numpy's default), the first would.
    cost = np.array([[-np.inf, -3.0], [-3.0, np.inf]])
    np.testing.assert_array_equal(hungarian.solve(cost), [1, 0])


def test_valid_shape_error_names_the_batch_dimension():
    # lead (4, 3, 2): B is the LAST leading dimension (2), not lead[1] / lead[-2] (3).
    cost = np.zeros((4, 3, 2, 2, 2))
    with pytest.raises(ValueError, match=r"valid has shape \(5, 2\), expected \(2, 2\)$"):
        hungarian.solve(cost, valid=np.ones((5, 2)))
    with pytest.raises(ValueError, match=r"expected \(None, 2\)$"):
        hungarian.solve(np.zeros((2, 2)), valid=np.ones((1, 2)))


def test_assign_in_a_graph_with_an_unknown_batch():
    # Inside tf.function with batch None: the static shape [None, T] (T from the
    # orientation), a stateless py-func op named as asked, the mask and the
    # orientation passed through.
    import tensorflow as tf

    def first(cost):
        return hungarian.assign(cost, name="kpt_match")

    cf = tf.function(first).get_concrete_function(tf.TensorSpec([None, 2, 3], tf.float32))
    assert cf.structured_outputs.shape.as_list() == [None, 2]
    ops = [op for op in cf.graph.get_operations() if op.name.startswith("kpt_match")]
    assert [op.type for op in ops] == ["PyFuncStateless"]

    def last(cost, valid):
        return hungarian.assign(cost, valid=valid, targets_last=True)

    cf = tf.function(last).get_concrete_function(tf.TensorSpec([None, 4, 3], tf.float32),
                                                 tf.TensorSpec([None, 3], tf.float32))
    assert cf.structured_outputs.shape.as_list() == [None, 3]
    assert [op.type for op in cf.graph.get_operations()
            if op.name.startswith("hungarian_assignment")] == ["PyFuncStateless"]
    # eager values: targets last without a mask, and the mask used
    cost = tf.constant([[[9.0, 0.0, 1.0], [9.0, 0.0, 9.0], [1.0, 0.0, 9.0]]])
    np.testing.assert_array_equal(hungarian.assign(cost, targets_last=True).numpy(),
                                  [[2, 1, 0]])
    np.testing.assert_array_equal(
        hungarian.assign(cost, valid=tf.constant([[1, 0, 1]]), targets_last=True).numpy(),
        [[2, -1, 0]])


def test_assign_passes_the_orientation_without_a_mask():
    # cost (B=1, Q=3, T=2) with targets last and no mask: scipy must see Q x T. Target
    # 0 is free on q1, target 1 on q0: [[1, 0]]. Read targets first, the same tensor
    # would be 3 targets for 2 queries (an error), so the orientation must reach solve.
    import tensorflow as tf
    cost = tf.constant([[[5.0, 0.0], [0.0, 5.0], [1.0, 1.0]]])
    out = hungarian.assign(cost, targets_last=True)
    assert out.shape.as_list() == [1, 2]
    np.testing.assert_array_equal(out.numpy(), [[1, 0]])
