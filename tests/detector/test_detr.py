"""The DETR person detector: official parity, person-head reduction, convert CLI, masking."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.checkpoints.torch_import import load_state_dict
from prtr_tf.config import load_config
from prtr_tf.models.detector.config import detector_model_config
from prtr_tf.models.detector.convert import reduce_to_person
from prtr_tf.models.detector.model import build_detector, downsample_mask
from prtr_tf.nn.layers import count_parameters
from tools import parity

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = "detr_r50_coco.json"


@pytest.fixture(scope="module")
def detr_fixture():
    from tests.conftest import require_shared
    return parity.load_fixture(str(require_shared("golden", FIXTURE)))


@pytest.fixture(scope="module")
def full_model(detr_fixture):
    manifest, state_dict, _, _ = detr_fixture
    model = build_detector(parity.model_config_from_manifest(manifest["model"]))
    load_state_dict(model, state_dict)
    return model


@pytest.fixture(scope="module")
def small_batch(detr_fixture):
    """Two crops of the fixture images, padded: (B, H, W, 3) and the mask."""
    _, _, inputs, _ = detr_fixture
    padded, mask = parity.pad_images([inputs["image0"][:, :128, :160],
                                      inputs["image1"][:, :160, :96]])
    return tf.constant(np.transpose(padded, (0, 2, 3, 1))), tf.constant(mask)


def test_detr_fixture_parity(golden_dir):
    out = io.StringIO()
    assert parity.check(str(golden_dir / FIXTURE), out=out), out.getvalue()
    report = out.getvalue()
    assert "not compared" not in report, report
    assert all(f"ok   folded {a}" in report for a in parity.FOLDED["detr"]), report
    for name in ("padded_images", "mask", "backbone_features", "backbone_mask", "pos_embed",
                 "pred_logits", "pred_boxes", "aux_pred_logits", "aux_pred_boxes"):
        assert any(line.split()[:2] == ["ok", name] for line in report.splitlines()), report


def test_parameter_count(full_model):
    # sum(p.numel()) of the official DETR R50 (frozen-BN buffers excluded); DETR's own
    # log prints 41,302,368, the count without the frozen stem and layer1 (222,400).
    assert count_parameters(full_model) == 41_524_768


def test_reduce_to_person_keeps_person_and_no_object(detr_fixture, full_model, small_batch):
    _, state_dict, _, _ = detr_fixture
    reduced = reduce_to_person(state_dict)
    assert reduced["class_embed.weight"].shape == (2, 256)
    np.testing.assert_array_equal(reduced["class_embed.weight"],
                                  state_dict["class_embed.weight"][[1, 91]])
    np.testing.assert_array_equal(reduced["class_embed.bias"],
                                  state_dict["class_embed.bias"][[1, 91]])
    assert set(reduced) == set(state_dict)

    person = build_detector(detector_model_config("resnet50", num_classes=1))
    load_state_dict(person, reduced)
    images, mask = small_batch
    full = full_model(images, mask=mask)
    mine = person(images, mask=mask)
    np.testing.assert_allclose(mine["pred_logits"],
                               tf.gather(full["pred_logits"], [1, 91], axis=-1), atol=1e-5)
    np.testing.assert_allclose(mine["aux_pred_logits"],
                               tf.gather(full["aux_pred_logits"], [1, 91], axis=-1), atol=1e-5)
    np.testing.assert_allclose(mine["pred_boxes"], full["pred_boxes"], atol=1e-6)


@pytest.mark.slow  # ~43 s on 2 CPU cores (the R50 DETR in a fresh process)
@pytest.mark.cli  # stays here: uses the module fixture detr_fixture
def test_convert_cli_reduces_a_detr_checkpoint(detr_fixture, tmp_path):
    _, state_dict, _, _ = detr_fixture
    checkpoint = tmp_path / "detr_r50.npz"
    np.savez(checkpoint, **state_dict)
    output = tmp_path / "person.weights.h5"
    result = subprocess.run(
        [sys.executable, "-m", "prtr_tf.cli.convert", "--config=configs/detr_r50_person.py",
         f"--checkpoint={checkpoint}", f"--output={output}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reduced the 91-class DETR head" in result.stderr
    checkpoint.unlink()

    model = build_detector(load_config("detr_r50_person").model)
    model.load_weights(str(output))
    kernel = model.class_embed.kernel.numpy()
    np.testing.assert_array_equal(kernel, state_dict["class_embed.weight"][[1, 91]].T)
    np.testing.assert_array_equal(model.query_embed.embeddings.numpy(),
                                  state_dict["query_embed.weight"])


def test_detector_configs():
    person = load_config("detr_r50_person")
    coco = load_config("detr_r50_coco")
    assert person.model.kind == coco.model.kind == "detr"
    assert (person.model.num_classes, coco.model.num_classes) == (1, 91)
    assert (person.train.lr, person.train.lr_backbone, person.train.epochs) == (5e-6, 1e-7, 10)
    assert (coco.train.lr, coco.train.lr_backbone) == (1e-4, 1e-5)
    assert person.model.dropout == 0.1 and person.model.num_queries == 100
    loss = person.loss
    assert (loss.cost_class, loss.cost_bbox, loss.cost_giou) == (1, 5, 2)
    assert (loss.ce_loss_coef, loss.bbox_loss_coef, loss.giou_loss_coef, loss.eos_coef) == (
        1, 5, 2, 0.1)
    assert person.data.scales == tuple(range(480, 801, 32)) and person.data.max_size == 1333


@pytest.mark.parametrize("size_in,size_out", [((400, 480), (13, 15)), ((320, 352), (10, 11)),
                                              ((37, 50), (5, 7)), ((8, 8), (16, 4))])
def test_downsample_mask_is_torch_nearest(size_in, size_out):
    rng = np.random.default_rng(0)
    mask = rng.random((2, *size_in)) < 0.5
    got = downsample_mask(tf.constant(mask), size_out).numpy()

    def index(out_size, in_size):  # torch: min(floorf(dst * (float)in / out), in - 1)
        scale = np.float32(in_size) / np.float32(out_size)
        return np.minimum(np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(int),
                          in_size - 1)

    expected = mask[:, index(size_out[0], size_in[0])][:, :, index(size_out[1], size_in[1])]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_padded_tokens_are_ignored(dropout):
    """With the mask, padded feature positions change nothing, and the valid part gives
    what the unpadded features give alone (masked sine PE, zero attention weight)."""
    config = detector_model_config("resnet_tiny", num_classes=1, hidden_dim=32, nheads=4,
                                   enc_layers=2, dec_layers=2, dim_feedforward=64,
                                   num_queries=10, dropout=dropout)
    model = build_detector(config)
    channels = model.backbone.out_channels
    rng = np.random.default_rng(1)
    valid = rng.standard_normal((1, 5, 6, channels)).astype("float32")
    padded = rng.standard_normal((1, 8, 9, channels)).astype("float32") * 10
    padded[:, :5, :6] = valid
    mask = np.ones((1, 8, 9), bool)
    mask[:, :5, :6] = False
    alone = model.decode(tf.constant(valid), None)
    batched = model.decode(tf.constant(padded), tf.constant(mask))
    for key in ("pred_logits", "pred_boxes", "aux_pred_logits", "aux_pred_boxes"):
        np.testing.assert_allclose(batched[key], alone[key], atol=1e-5, err_msg=key)


def test_forward_with_a_padded_batch_runs_end_to_end():
    config = detector_model_config("resnet_tiny", num_classes=1, hidden_dim=32, nheads=4,
                                   enc_layers=2, dec_layers=3, dim_feedforward=64,
                                   num_queries=10)
    model = build_detector(config)
    images = tf.random.normal((2, 96, 128, 3))
    mask = np.zeros((2, 96, 128), "float32")
    mask[1, 64:] = 1.0
    mask[1, :, 80:] = 1.0
    out = model(images, mask=tf.constant(mask))
    assert out["pred_logits"].shape == (2, 10, 2)
    assert out["pred_boxes"].shape == (2, 10, 4)
    assert out["aux_pred_logits"].shape == (2, 2, 10, 2)
    assert out["aux_pred_boxes"].shape == (2, 2, 10, 4)
    boxes = out["pred_boxes"].numpy()
    assert np.all((boxes > 0) & (boxes < 1))
    train = model(images, mask=tf.constant(mask), training=True)  # dropout 0.1 active
    assert not np.allclose(train["pred_logits"], out["pred_logits"])
