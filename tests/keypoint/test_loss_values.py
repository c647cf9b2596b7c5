"""The keypoint set criterion pinned to a hand computation (issue 27): the visibility
mask weighs ONLY the L1 term (an unlabelled joint's query still gets its class),
background weighs eos_coef in the cross-entropy's weighted mean, L1 / (2B), and the
num_crops rescaling."""
import math

import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.models.keypoint import loss as kloss

# One crop, Q=3 queries, J=2 joints (classes 0, 1; background 2).
LOGITS = [[2.0, 0.0, 0.0],   # q0: matched to joint 1
          [0.0, 0.0, 0.0],   # q1: background
          [0.0, 0.0, 1.0]]   # q2: matched to joint 0
COORDS = [[0.0, 0.0], [0.9, 0.9], [0.5, 0.5]]
TARGET = [[0.2, 0.9], [0.1, 0.3]]
INDICES = [2, 0]
# weighted mean: (nll_q0 * 1 + nll_q1 * 0.1 + nll_q2 * 1) / 2.1
CE = (math.log(math.e ** 2 + 2) + 0.1 * math.log(3) + math.log(2 + math.e)) / 2.1


def _crop(weight):
    return (np.array(LOGITS), np.array(COORDS), np.array(TARGET), np.array(weight))


def _batch(weights):
    crops = [_crop(w) for w in weights]
    logits, coords, target, tw = (np.stack(x) for x in zip(*crops))
    indices = np.array([[INDICES] * len(weights)])
    return (tf.constant(logits[None], tf.float32), tf.constant(coords[None], tf.float32),
            tf.constant(target, tf.float32), tf.constant(tw, tf.float32), indices)


def test_mask_applies_to_the_l1_term_only():
    # joint 1 unlabelled: its L1 (0.1 + 0.3) is left out, its class term is not.
    # L1 of joint 0: |0.5-0.2| + |0.5-0.9| = 0.7 -> 0.7 / (2 * 1) = 0.35.
    logits, coords, target, tw, indices = _batch([[1.0, 0.0]])
    ce, kpt = kloss.layer_losses(logits, coords, target, tw, indices)
    assert ce.numpy()[0] == pytest.approx(CE, rel=1e-5)
    assert kpt.numpy()[0] == pytest.approx(0.35, rel=1e-5)
    # all labelled: (0.7 + 0.4) / 2; the class term is the same
    ce1, kpt1 = kloss.layer_losses(logits, coords, target, tf.ones((1, 2)), indices)
    assert ce1.numpy()[0] == pytest.approx(CE, rel=1e-5)
    assert kpt1.numpy()[0] == pytest.approx(0.55, rel=1e-5)
    # (B, J, 1) weights are the same weights
    _, kpt3 = kloss.layer_losses(logits, coords, target, tw[..., None], indices)
    assert kpt3.numpy()[0] == pytest.approx(0.35, rel=1e-5)


def test_batch_normalisers_and_num_crops():
    # Two crops, weights [1, 0] and [1, 1]: L1 sum 0.7 + 1.1 = 1.8 over 2B = 4 -> 0.45;
    # the class term is the weighted mean over both crops (the same CE).
    logits, coords, target, tw, indices = _batch([[1.0, 0.0], [1.0, 1.0]])
    ce, kpt = kloss.layer_losses(logits, coords, target, tw, indices, eos_coef=0.1)
    assert ce.numpy()[0] == pytest.approx(CE, rel=1e-5)
    assert kpt.numpy()[0] == pytest.approx(0.45, rel=1e-5)
    # num_crops=4 (a global count): local sums / 4 = local means * B / 4
    ce4, kpt4 = kloss.layer_losses(logits, coords, target, tw, indices, num_crops=4)
    assert ce4.numpy()[0] == pytest.approx(CE / 2, rel=1e-5)
    assert kpt4.numpy()[0] == pytest.approx(0.45 / 2, rel=1e-5)
    # another eos_coef: (n0 + 0.5 * n1 + n2) / 2.5
    ce5, _ = kloss.layer_losses(logits, coords, target, tw, indices, eos_coef=0.5)
    expected = (math.log(math.e ** 2 + 2) + 0.5 * math.log(3) + math.log(2 + math.e)) / 2.5
    assert ce5.numpy()[0] == pytest.approx(expected, rel=1e-5)


def test_set_loss_weights_and_layers():
    # aux layer identical to the final one: loss = 2 * (1 * CE + 5 * 0.35).
    logits, coords, target, tw, indices = _batch([[1.0, 0.0]])
    outputs = {"pred_logits": logits[0], "pred_coords": coords[0],
               "aux_pred_logits": logits, "aux_pred_coords": coords}
    losses = kloss.set_loss(outputs, target, tw, indices=np.concatenate([indices, indices]))
    assert losses["loss"].numpy() == pytest.approx(2 * (CE + 5 * 0.35), rel=1e-5)
    assert losses["loss_ce"].numpy() == pytest.approx(CE, rel=1e-5)
    assert losses["loss_kpt_0"].numpy() == pytest.approx(0.35, rel=1e-5)
    losses = kloss.set_loss(outputs, target, tw, indices=np.concatenate([indices, indices]),
                            ce_coef=2.0, kpt_coef=1.0)
    assert losses["loss"].numpy() == pytest.approx(2 * (2 * CE + 0.35), rel=1e-5)
    with pytest.raises(ValueError, match="num_joints=3"):
        kloss.set_loss(outputs, target, tw, indices=indices, num_joints=3)
