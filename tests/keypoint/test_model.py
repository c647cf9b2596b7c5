"""Structure of the keypoint model: outputs, frozen parts, positional encoding."""
import numpy as np
import tensorflow as tf

from prtr_tf.config import load_config
from prtr_tf.models.keypoint.config import model_config
from prtr_tf.models.keypoint.model import build_model
from prtr_tf.nn.position_encoding import sine_position_encoding


def test_tiny_model_outputs():
    config = load_config("tiny").model
    model = build_model(config)
    out = model(tf.random.normal((2, *config.image_size, 3)))
    j, q = config.num_joints, config.num_queries
    assert out["pred_logits"].shape == (2, q, j + 1)
    assert out["pred_coords"].shape == (2, q, 2)
    assert out["aux_pred_logits"].shape == (config.dec_layers - 1, 2, q, j + 1)
    coords = out["pred_coords"].numpy()
    assert np.all((coords > 0) & (coords < 1))


def test_resnet_frozen_parts_and_trainable_parts():
    model = build_model(model_config("resnet50", image_size=(64, 64)))
    trainable = {v.path for v in model.trainable_variables}
    backbone = [v for v in model.backbone.weights]
    # Stem and layer1 get no gradient; every BN is frozen (no trainable BN tensors).
    assert not any(p for p in trainable if "layer1_" in p or "frozen_batch_norm" in p)
    assert any("layer2_0" in p for p in trainable) and any("layer4_2" in p for p in trainable)
    stem = model.backbone.conv1.kernel
    assert stem.path not in trainable
    # R50 trainable parameters: 41,282,836 (spec §9).
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 41_282_836
    assert len(backbone) > 0


def test_sine_position_encoding_layout():
    h, w = 3, 4
    pos = sine_position_encoding((1, h, w), num_pos_feats=8).numpy()[0]
    scale = 2 * np.pi
    y = (np.arange(h) + 1) / (h + 1e-6) * scale
    x = (np.arange(w) + 1) / (w + 1e-6) * scale
    t = 10000 ** (2 * (np.arange(8) // 2) / 8)
    # Channel 0: sin(y/t0); channel 1: cos(y/t1); channel 8: sin(x/t0); channel 11: cos(x/t3).
    np.testing.assert_allclose(pos[:, 0, 0], np.sin(y / t[0]), atol=1e-6)
    np.testing.assert_allclose(pos[:, 0, 1], np.cos(y / t[1]), atol=1e-6)
    np.testing.assert_allclose(pos[0, :, 8], np.sin(x / t[0]), atol=1e-6)
    np.testing.assert_allclose(pos[0, :, 11], np.cos(x / t[3]), atol=1e-6)


def test_position_encoding_with_padding_mask_counts_valid_pixels_only():
    mask = np.zeros((1, 2, 4), bool)
    mask[:, :, 2:] = True  # right half is padding
    padded = sine_position_encoding(tf.constant(mask), num_pos_feats=8).numpy()
    valid = sine_position_encoding((1, 2, 2), num_pos_feats=8).numpy()
    np.testing.assert_allclose(padded[:, :, :2], valid, atol=1e-6)
