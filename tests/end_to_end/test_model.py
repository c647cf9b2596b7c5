"""End-to-end PRTR: STN crop (values, gradients), model shapes, coordinate mapping,
readout and the training loss (tiny sizes)."""
import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.config import load_config
from prtr_tf.models.end_to_end.config import e2e_model_config, end_to_end
from prtr_tf.models.end_to_end import stn
from prtr_tf.models.end_to_end.model import (EndToEndPRTR, crop_to_image_coords, keypoint_outputs, select_persons, valid_fraction)
from prtr_tf.models.end_to_end.loss import loss, sample_matched_queries
from prtr_tf.models.keypoint.readout import readout


# ---------------------------------------------------------------- sampling grid / sampler

def test_box_sampling_grid_formula():
    box = np.array([[0.5, 0.4, 0.2, 0.3]])
    grid = stn.box_sampling_grid(tf.constant(box, tf.float64), (3, 5)).numpy()
    assert grid.shape == (1, 3, 5, 2)
    t5 = np.array([-1.25, -0.625, 0.0, 0.625, 1.25])
    t3 = np.array([-1.25, 0.0, 1.25])
    np.testing.assert_allclose(grid[0, :, :, 0], np.tile(0.0 + 0.2 * t5, (3, 1)), atol=1e-12)
    np.testing.assert_allclose(grid[0, :, :, 1], np.tile((-0.2 + 0.3 * t3)[:, None], (1, 5)),
                               atol=1e-12)


def _ramp(height, width, coeffs):
    """(B, H, W, C) maps f = a * ix + b * iy + c at pixel indices, coeffs (B, C, 3)."""
    iy, ix = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    c = np.asarray(coeffs, np.float64)
    return (c[:, None, None, :, 0] * ix[None, ..., None] + c[:, None, None, :, 1]
            * iy[None, ..., None] + c[:, None, None, :, 2])


def test_grid_sample_linear_ramp_is_exact_with_border_clamp():
    h, w = 5, 7
    coeffs = [[[1.0, 10.0, 0.5], [-2.0, 3.0, 1.0]], [[0.3, -1.0, 2.0], [4.0, 0.25, -3.0]]]
    features = tf.constant(_ramp(h, w, coeffs))
    gx = np.array([-0.9, -0.3, 0.1, 0.77, -1.0, 1.0, -1.6, 2.5])
    gy = np.array([-0.8, 0.45, -0.05, 0.6, 1.3, -2.0, 0.2, 0.9])
    grid = np.stack([gx, gy], -1).reshape(1, 2, 4, 2).repeat(2, axis=0)
    batch_index = np.array([1, 0])
    out = stn.grid_sample_bilinear(features, tf.constant(grid), batch_index).numpy()
    # align_corners=False: index = ((g + 1) * size - 1) / 2; border: clamp to [0, size-1].
    ix = np.clip(((gx + 1) * w - 1) / 2, 0, w - 1).reshape(2, 4)
    iy = np.clip(((gy + 1) * h - 1) / 2, 0, h - 1).reshape(2, 4)
    c = np.asarray(coeffs)
    for n, b in enumerate(batch_index):
        expected = (c[b, :, 0] * ix[..., None] + c[b, :, 1] * iy[..., None] + c[b, :, 2])
        np.testing.assert_allclose(out[n], expected, atol=1e-12)
    # Some points really were outside the map (the clamp is exercised).
    assert (np.abs(gx) > 1).any() and (np.abs(gy) > 1).any()


def test_grid_sample_hand_values_2x2():
    features = tf.constant([[[[0.0], [1.0]], [[2.0], [3.0]]]], tf.float64)      # (1, 2, 2, 1)
    grid = tf.constant([[[[0.0, 0.0], [-1.0, -1.0], [1.0, -1.0], [0.5, 0.0], [3.0, 3.0]]]],
                       tf.float64)
    out = stn.grid_sample_bilinear(features, grid, [0]).numpy()[0, 0, :, 0]
    # (0,0): centre of the 4 pixels; (-1,-1): outer corner -> border pixel 0;
    # (1,-1): clamped to pixel (0,1); (0.5,0): ix=1 (clamp edge), iy=0.5; far: pixel (1,1).
    np.testing.assert_allclose(out, [1.5, 0.0, 1.0, 2.0, 3.0], atol=1e-12)


def test_multi_level_crop_of_normalised_ramps():
    """Levels of different resolution holding the same linear function of the
    normalised image position give the analytic value at every interior sample."""
    a, b, c = 0.7, -1.3, 0.2
    levels = []
    for h, w in [(16, 20), (8, 10), (4, 5)]:
        iy, ix = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        f = a * ix + b * iy + c
        levels.append(tf.constant(np.stack([f, 2 * f], -1)[None].repeat(2, 0)))
    boxes = np.array([[0.5, 0.5, 0.3, 0.4], [0.45, 0.55, 0.2, 0.3]])
    crops = stn.multi_level_crop(levels, tf.constant(boxes), [0, 1], (4, 3)).numpy()
    assert crops.shape == (2, 4, 3, 6)
    t3, t4 = np.linspace(-1.25, 1.25, 3), np.linspace(-1.25, 1.25, 4)
    for n, (cx, cy, bw, bh) in enumerate(boxes):
        xn = cx + t3[None, :] * bw / 2
        yn = cy + t4[:, None] * bh / 2
        f = a * xn + b * yn + c
        # Every sample lies between the centres of the coarsest level's border pixels.
        assert xn.min() > 0.1 and xn.max() < 0.9 and yn.min() > 0.125 and yn.max() < 0.875
        for level in range(3):
            np.testing.assert_allclose(crops[n, ..., 2 * level], f, atol=1e-12)
            np.testing.assert_allclose(crops[n, ..., 2 * level + 1], 2 * f, atol=1e-12)


def test_crop_gradient_wrt_boxes_matches_finite_differences():
    rng = np.random.default_rng(0)
    levels = [tf.constant(rng.normal(size=(2, 6, 7, 3))),
              tf.constant(rng.normal(size=(2, 3, 4, 2)))]
    boxes0 = np.array([[0.43, 0.52, 0.31, 0.37], [0.61, 0.38, 0.22, 0.41],
                       [0.12, 0.9, 0.3, 0.25]])  # the last one crosses the border
    batch_index = [0, 1, 1]
    weights = tf.constant(rng.normal(size=(3, 5, 4, 5)))

    def objective(boxes):
        return tf.reduce_sum(stn.multi_level_crop(levels, boxes, batch_index, (5, 4)) * weights)

    boxes = tf.Variable(boxes0)
    with tf.GradientTape() as tape:
        value = objective(boxes)
    grad = tape.gradient(value, boxes).numpy()
    eps = 1e-6
    fd = np.zeros_like(boxes0)
    for i in range(boxes0.shape[0]):
        for j in range(4):
            plus, minus = boxes0.copy(), boxes0.copy()
            plus[i, j] += eps
            minus[i, j] -= eps
            fd[i, j] = (objective(tf.constant(plus)) - objective(tf.constant(minus))) / (2 * eps)
    assert np.abs(grad).min() > 1e-3  # every coordinate of every box matters
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)


def test_crop_gradient_wrt_features():
    rng = np.random.default_rng(1)
    features = tf.Variable(rng.normal(size=(2, 6, 7, 3)))
    boxes = tf.constant([[0.4, 0.5, 0.3, 0.4], [0.6, 0.4, 0.5, 0.2], [0.5, 0.5, 0.1, 0.1]],
                        tf.float64)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(stn.multi_level_crop([features], boxes, [0, 1, 1], (4, 5)))
    grad = tape.gradient(total, features).numpy()
    assert np.count_nonzero(grad) > 0
    # The 4 bilinear weights of every sample sum to 1: per channel and image the
    # gradient sums to the number of samples taken from that image.
    np.testing.assert_allclose(grad.sum(axis=(1, 2)), [[20.0] * 3, [40.0] * 3], atol=1e-9)
    assert np.count_nonzero(grad[0]) > 0 and np.count_nonzero(grad[1]) > 0


# ---------------------------------------------------------------- coordinates

def test_crop_to_image_coords_by_hand():
    u = tf.constant([[[0.0, 0.0], [1.0, 1.0], [0.5, 0.5], [0.2, 0.8]]], tf.float64)
    box = tf.constant([[0.5, 0.4, 0.2, 0.4]], tf.float64)
    xy = crop_to_image_coords(u, box).numpy()[0]
    # x = cx + (1.25 u - 0.625) w, y = cy + (1.25 v - 0.625) h
    np.testing.assert_allclose(xy, [[0.375, 0.15], [0.625, 0.65], [0.5, 0.4], [0.425, 0.55]],
                               atol=1e-12)
    clamped = crop_to_image_coords(tf.constant([[[0.0, 1.0]]], tf.float64),
                                   tf.constant([[0.05, 0.95, 0.2, 0.2]], tf.float64)).numpy()
    np.testing.assert_allclose(clamped[0, 0], [0.0, 1.0])  # -0.075 -> 0, 1.075 -> 1


def test_coordinate_mapping_matches_the_sampling_grid():
    """u = 0 and u = 1 are the first and last sample of the crop."""
    box = tf.constant([[0.45, 0.5, 0.3, 0.4]], tf.float64)
    grid = stn.box_sampling_grid(box, (4, 6)).numpy()[0]
    u = np.stack(np.meshgrid(np.linspace(0, 1, 6), np.linspace(0, 1, 4)), -1).reshape(1, 24, 2)
    xy = crop_to_image_coords(tf.constant(u), box).numpy().reshape(4, 6, 2)
    np.testing.assert_allclose(xy, (grid + 1) / 2, atol=1e-12)


def test_valid_fraction():
    mask = np.zeros((2, 8, 10), bool)
    mask[0, :, 6:] = True   # image 0: 8 x 6 of 8 x 10
    mask[1, 5:, :] = True   # image 1: 5 x 10
    np.testing.assert_allclose(valid_fraction(mask).numpy(), [[0.6, 1.0], [1.0, 0.625]])


def test_select_persons():
    logits = np.log(np.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]],
                              [[0.1, 0.9], [0.3, 0.7], [0.35, 0.65], [0.05, 0.95]]]))
    b, q, s = select_persons(tf.constant(logits, tf.float32), 0.5, 2)
    np.testing.assert_array_equal(b.numpy(), [0, 0])
    np.testing.assert_array_equal(q.numpy(), [0, 3])
    np.testing.assert_allclose(s.numpy(), [0.9, 0.7], rtol=1e-5)


# ---------------------------------------------------------------- model

@pytest.fixture(scope="module")
def tiny():
    tf.keras.utils.set_random_seed(0)
    config = load_config("e2e_tiny")
    return config, EndToEndPRTR(config.model).initialize()


def test_config_options():
    with pytest.raises(ValueError):
        e2e_model_config(kpt_pos="learned")
    with pytest.raises(ValueError):
        e2e_model_config(kpt_hidden_dim=258)
    c = end_to_end()
    assert c.model.levels == ("C3", "C4", "C5") and c.model.crop_size == (10, 10)
    assert c.model.max_train_persons == 5 and c.model.detector.num_classes == 1


def test_end_to_end_shapes_and_consistency(tiny):
    config, model = tiny
    m = config.model
    images = tf.random.normal((2, 64, 96, 3), seed=1)
    mask = np.zeros((2, 64, 96), bool)
    mask[1, :, 64:] = True
    out = model(images, mask=mask)
    qd, qk, j = m.detector.num_queries, m.kpt_num_queries, m.num_joints
    n = 2 * m.max_persons  # threshold 0: max_persons per image
    assert out["pred_logits"].shape == (2, qd, 2)
    assert out["pred_boxes"].shape == (2, qd, 4)
    assert out["aux_pred_logits"].shape == (m.detector.dec_layers - 1, 2, qd, 2)
    assert out["kpt_pred_logits"].shape == (n, qk, j + 1)
    assert out["kpt_pred_coords"].shape == (n, qk, 2)
    assert out["kpt_aux_pred_logits"].shape == (m.kpt_dec_layers - 1, n, qk, j + 1)
    assert out["kpt_aux_pred_coords"].shape == (m.kpt_dec_layers - 1, n, qk, 2)
    np.testing.assert_array_equal(out["crop_batch_index"].numpy(),
                                  [0] * m.max_persons + [1] * m.max_persons)
    pairs = np.stack([out["crop_batch_index"], out["crop_query_index"]], -1)
    np.testing.assert_allclose(out["crop_boxes"].numpy(),
                               tf.gather_nd(out["pred_boxes"], pairs).numpy())
    np.testing.assert_allclose(
        out["kpt_pred_coords"].numpy(),
        crop_to_image_coords(out["kpt_pred_crop_coords"], out["crop_boxes"],
                             m.enlarge).numpy(), atol=1e-6)
    coords = out["kpt_pred_coords"].numpy()
    assert coords.min() >= 0.0 and coords.max() <= 1.0

    # Given queries (training): exactly those are cropped, in that order.
    given = model(images, mask=mask, crop_queries=([1, 0, 1], [4, 7, 0]), training=False)
    assert given["kpt_pred_logits"].shape == (3, qk, j + 1)
    np.testing.assert_allclose(given["crop_boxes"].numpy(),
                               tf.gather_nd(out["pred_boxes"], [[1, 4], [0, 7], [1, 0]]).numpy(),
                               atol=1e-6)


def test_readout_on_crops(tiny):
    _, model = tiny
    out = model(tf.random.normal((2, 64, 64, 3), seed=2))
    kpt = keypoint_outputs(out)
    result = readout(kpt["pred_logits"], kpt["pred_coords"], image_size_hw=(64, 64))
    n, j = kpt["pred_logits"].shape[0], kpt["pred_logits"].shape[-1] - 1
    query = result["query"].numpy()
    assert query.shape == (n, j)
    assert all(len(set(row)) == j for row in query)  # one distinct query per joint
    np.testing.assert_allclose(result["coords"].numpy(),
                               np.take_along_axis(kpt["pred_coords"].numpy(),
                                                  query[..., None], axis=1))
    np.testing.assert_allclose(result["coords_px"].numpy(), result["coords"].numpy() * 64)


def test_sample_matched_queries():
    indices = np.full((2, 9), -1)
    indices[0, :7] = [3, 8, 1, 0, 5, 9, 2]
    indices[1, [2, 6]] = [4, 7]
    valid = np.zeros((2, 9), bool)
    valid[0, :8] = True
    valid[1, :] = True
    b, q, g = (x.numpy() for x in sample_matched_queries(indices, valid, 5, seed=3))
    assert (b == 0).sum() == 5 and (b == 1).sum() == 2
    np.testing.assert_array_equal(indices[b, g], q)
    assert len(set(g[b == 0])) == 5 and set(g[b == 1]) == {2, 6}


def _loss_batch():
    rng = np.random.default_rng(4)
    keypoints = rng.uniform(0.3, 0.7, size=(2, 3, 17, 2))
    return {
        "image": tf.constant(rng.normal(size=(2, 64, 64, 3)), tf.float32),
        "boxes": tf.constant([[[0.5, 0.5, 0.4, 0.6], [0.3, 0.3, 0.2, 0.2], [0.5, 0.5, 1, 1]],
                              [[0.4, 0.6, 0.3, 0.5], [0.5, 0.5, 1, 1], [0.5, 0.5, 1, 1]]],
                             tf.float32),
        "labels": tf.zeros((2, 3), tf.int32),
        "valid": tf.constant([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
        "keypoints": tf.constant(keypoints, tf.float32),
        "keypoint_weights": tf.ones((2, 3, 17)),
    }


@pytest.mark.parametrize("detach_boxes", [True, False])
def test_loss_gradient_reaches_backbone_through_crops(detach_boxes):
    tf.keras.utils.set_random_seed(0)
    config = load_config("e2e_tiny")
    config.model.detach_boxes = detach_boxes
    model = EndToEndPRTR(config.model).initialize()
    batch = _loss_batch()
    with tf.GradientTape(persistent=True) as tape:
        terms = loss(model, batch, config.loss, seed=0)
    assert terms["num_crops"].numpy() == 3
    for key in ("loss", "loss_det", "loss_kpt_set"):
        assert np.isfinite(terms[key].numpy()) and terms[key].numpy() > 0
    np.testing.assert_allclose(
        terms["loss"].numpy(), config.loss.det_loss_weight * terms["loss_det"].numpy()
        + config.loss.kpt_loss_weight * terms["loss_kpt_set"].numpy(), rtol=1e-6)

    def norm(grads):
        return sum(float(tf.norm(g)) for g in grads if g is not None)

    kpt_grad_backbone = tape.gradient(terms["loss_kpt_set"], model.backbone.trainable_variables)
    kpt_grad_box_head = tape.gradient(terms["loss_kpt_set"],
                                      model.detector.bbox_embed.trainable_variables)
    kpt_grad_class = tape.gradient(terms["loss_kpt_set"],
                                   model.detector.class_embed.trainable_variables)
    # With detached boxes the keypoint loss can reach the backbone ONLY through the
    # sampled crop features.
    assert norm(kpt_grad_backbone) > 0
    assert norm(kpt_grad_class) == 0
    if detach_boxes:
        assert norm(kpt_grad_box_head) == 0
    else:  # the STN passes the keypoint loss on to the box head
        assert norm(kpt_grad_box_head) > 0
    all_grads = tape.gradient(terms["loss"], model.trainable_variables)
    assert norm(all_grads) > 0 and all(
        np.isfinite(g.numpy()).all() for g in all_grads if g is not None)


def test_no_person_selected_gives_empty_crops(tiny):
    config, model = tiny
    model.config.person_threshold = 1.1  # no probability reaches it
    try:
        out = model(tf.random.normal((2, 64, 64, 3), seed=3))
    finally:
        model.config.person_threshold = config.model.person_threshold
    qk, j = config.model.kpt_num_queries, config.model.num_joints
    assert out["kpt_pred_logits"].shape == (0, qk, j + 1)
    assert out["kpt_pred_coords"].shape == (0, qk, 2)


def test_loss_without_matched_person_has_no_keypoint_term(tiny):
    config, model = tiny
    batch = dict(_loss_batch(), valid=tf.zeros((2, 3)))
    terms = loss(model, batch, config.loss, seed=0)
    assert terms["num_crops"].numpy() == 0 and terms["loss_kpt_set"].numpy() == 0
    np.testing.assert_allclose(terms["loss"].numpy(), terms["loss_det"].numpy())


def test_crop_uses_padded_box_coordinates(tiny):
    """Boxes are image-normalised; the maps cover the padded batch: a ramp over the
    padded extent is sampled at cx * valid_width, cy * valid_height."""
    _, model = tiny
    names = model.levels
    levels = {}
    for k, (h, w) in enumerate([(16, 24), (8, 12), (4, 6)]):
        iy, ix = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
        levels[names[k]] = tf.constant((0.5 * ix + 0.25 * iy)[None, ..., None], tf.float64)
    box = np.array([[0.5, 0.5, 0.25, 0.3]])
    valid = tf.constant([[0.6, 0.8]], tf.float64)
    crops = model.crop(levels, tf.constant(box), [0], valid).numpy()
    y_res, x_res = model.crop_size
    assert crops.shape == (1, y_res, x_res, 3)
    xn = 0.6 * (0.5 + np.linspace(-1.25, 1.25, x_res)[None] * 0.25 / 2)
    yn = 0.8 * (0.5 + np.linspace(-1.25, 1.25, y_res)[:, None] * 0.3 / 2)
    for k in range(3):
        np.testing.assert_allclose(crops[0, ..., k], 0.5 * xn + 0.25 * yn, atol=1e-12)


def test_keypoint_position_encoding(tiny):
    from prtr_tf.nn.position_encoding import sine_position_encoding
    config, model = tiny
    d, (y_res, x_res) = config.model.kpt_hidden_dim, model.crop_size
    pos = model.position_encoding().numpy()
    assert pos.shape == (1, y_res, x_res, d)
    np.testing.assert_allclose(pos[..., :d // 2],
                               sine_position_encoding((1, y_res, x_res), d // 4).numpy())
    col, row = model.kpt_col_embed.numpy(), model.kpt_row_embed.numpy()
    np.testing.assert_allclose(pos[0, 2, 3, d // 2:], np.concatenate([col[3], row[2]]))

    sine_only = EndToEndPRTR(e2e_model_config(
        "resnet_tiny", levels=("C4",), crop_size=(3, 4), kpt_hidden_dim=16, kpt_pos="sine",
        kpt_nheads=2, kpt_enc_layers=1, kpt_dec_layers=1, kpt_dim_feedforward=16,
        kpt_num_queries=5, detector_overrides=dict(hidden_dim=16, nheads=2, enc_layers=1,
                                                   dec_layers=1, dim_feedforward=16,
                                                   num_queries=4)))
    np.testing.assert_allclose(sine_only.position_encoding().numpy(),
                               sine_position_encoding((1, 3, 4), 8).numpy())


def test_default_config_crops_c3_c4_c5_of_resnet50():
    """The paper's levels: C3 + C4 + C5 = 512 + 1024 + 2048 = 3584 channels."""
    model = EndToEndPRTR(end_to_end().model).initialize()
    assert model.kpt_input_proj.kernel.shape == (1, 1, 3584, 256)
    assert model.position_encoding().shape == (1, 10, 10, 256)


@pytest.mark.parametrize("name,backbone,channels", [
    ("e2e_r50_coco", "resnet50", 512 + 1024 + 2048),
    ("e2e_r101_coco", "resnet101", 512 + 1024 + 2048),
    ("e2e_hrnet_w48_coco", "hrnet_w48", 96 + 192 + 384)])
def test_end_to_end_configs_build(name, backbone, channels):
    config = load_config(name)
    assert config.model.kind == "prtr_e2e" and config.model.detector.backbone == backbone
    assert config.model.levels == ("C3", "C4", "C5")
    assert config.data.scales[0] == 760 and config.data.scales[-1] == 1024
    assert config.data.max_size == 1400 and config.data.pad_multiple == 32
    model = EndToEndPRTR(config.model).initialize()
    assert model.kpt_input_proj.kernel.shape == (1, 1, channels, 256)
    # The detector reads the backbone's 2048-channel stride-32 map.
    assert model.detector.input_proj.kernel.shape == (1, 1, 2048, 256)


def test_hrnet_levels_are_its_last_stage_branches():
    from prtr_tf.nn.hrnet import HRNet
    net = HRNet(width=32)
    x = tf.random.normal((1, 64, 96, 3), seed=5)
    levels = net(x, return_levels=True)
    assert {k: tuple(v.shape) for k, v in levels.items()} == {
        "C2": (1, 16, 24, 32), "C3": (1, 8, 12, 64), "C4": (1, 4, 6, 128),
        "C5": (1, 2, 3, 256), "head": (1, 2, 3, 2048)}
    np.testing.assert_array_equal(levels[net.main_level].numpy(), net(x).numpy())


def test_init_detector_weights_load_into_the_detector(tmp_path):
    """A standalone DETR's weights (same detector config) initialise the end-to-end
    model's backbone and detector; a wrong file is a clear error."""
    from prtr_tf.models.detector.model import build_detector
    from prtr_tf.models.registry import make_task

    config = load_config("e2e_tiny")
    tf.keras.utils.set_random_seed(7)
    detr = build_detector(config.model.detector)
    path = str(tmp_path / "detr.weights.h5")
    detr.save_weights(path)
    config.train.init_detector_weights = path
    tf.keras.utils.set_random_seed(8)
    model = make_task(config).build_model()
    for a, b in zip(detr.weights, model.detector.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    config.train.init_detector_weights = str(tmp_path / "missing.weights.h5")
    with pytest.raises(FileNotFoundError, match="init_detector_weights"):
        make_task(config).build_model()
    other = load_config("e2e_tiny")
    other.model.detector.num_queries = 7
    other.train.init_detector_weights = path
    with pytest.raises(ValueError, match="does not fit"):
        make_task(other).build_model()
