"""ImageNet classification checkpoints into the backbone (`config.train.init_backbone`,
``prtr-convert (python -m prtr_tf.cli.convert) --backbone_only``): names, head, errors.

The parity of the real layouts (torchvision ResNet-50, HRNet-W32) with the official
backbone outputs: tests/tools/test_parity.py (the imagenet-backbone fixtures).
"""
import io

import numpy as np
import pytest
import tensorflow as tf

from prtr_tf.nn.backbones import build_backbone
from prtr_tf.checkpoints.torch_import import (CheckpointMismatchError, backbone_mapping,
                                     load_imagenet_backbone, load_imagenet_file)


def _tiny_backbone():
    backbone = build_backbone("resnet_tiny")
    backbone(tf.zeros((1, 32, 32, 3)), training=False)
    return backbone


def _imagenet_state_dict(backbone, seed=0):
    """A torchvision-style classification state_dict for ``backbone``: its tensors in
    the ImageNet naming, a ``num_batches_tracked`` per BatchNorm and an ``fc`` head."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, _) in backbone_mapping(backbone).items():
        out[name] = rng.normal(size=shape).astype(np.float32)
        if name.endswith("running_var"):
            out[name] = np.abs(out[name]) + 0.5
            out[name[:-len("running_var")] + "num_batches_tracked"] = np.array(7, np.int64)
    channels = backbone.out_channels
    out["fc.weight"] = rng.normal(size=(1000, channels)).astype(np.float32)
    out["fc.bias"] = np.zeros(1000, np.float32)
    return out


def test_names_are_the_official_ones_without_the_model_prefix():
    backbone = _tiny_backbone()
    names = set(backbone_mapping(backbone))
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
            "layer2.0.downsample.0.weight", "layer3.0.bn3.running_var"} <= names
    assert not any(n.startswith("backbone.") for n in names)


def test_head_is_skipped_and_reported_and_buffers_are_ignored():
    backbone = _tiny_backbone()
    state = _imagenet_state_dict(backbone)
    report = load_imagenet_backbone(backbone, state)
    assert report.head == ["fc.bias", "fc.weight"]
    assert report.ignored and all(n.endswith(".num_batches_tracked") for n in report.ignored)
    assert set(report.loaded) == set(state) - set(report.head) - set(report.ignored)
    assert "fc.bias, fc.weight" in report.summary()
    # The values landed, with the conv layout change (OIHW -> HWIO).
    np.testing.assert_array_equal(backbone.conv1.kernel.numpy(),
                                  state["conv1.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(backbone.stages[0][0].bn1.moving_variance.numpy(),
                                  state["layer1.0.bn1.running_var"])
    # HRNet's head is `classifier`; a DataParallel `module.` prefix is accepted.
    state = {f"module.{k}": v for k, v in state.items() if not k.startswith("fc.")}
    state["module.classifier.weight"] = np.zeros((1000, 256), np.float32)
    assert load_imagenet_backbone(backbone, state).head == ["classifier.weight"]


@pytest.mark.parametrize("change, expected", [
    (lambda s: s.update({"layer9.0.conv1.weight": np.zeros(3, np.float32),
                         "avgpool.scale": np.zeros(1, np.float32)}),
     ["2 unknown tensor(s)", "avgpool.scale, layer9.0.conv1.weight"]),
    (lambda s: [s.pop("layer1.0.conv2.weight"), s.pop("bn1.running_mean")],
     ["2 missing tensor(s)", "bn1.running_mean, layer1.0.conv2.weight"]),
    (lambda s: s.update({"conv1.weight": np.zeros((16, 3, 3, 3), np.float32)}),
     ["1 mis-shaped tensor(s)", "conv1.weight: checkpoint (16, 3, 3, 3), model expects "
      "(16, 3, 7, 7)"]),
], ids=["unknown", "missing", "mis-shaped"])
def test_mismatches_are_errors_that_list_the_names(change, expected):
    backbone = _tiny_backbone()
    before = backbone.conv1.kernel.numpy()
    state = _imagenet_state_dict(backbone)
    change(state)
    with pytest.raises(CheckpointMismatchError) as e:
        load_imagenet_backbone(backbone, state, "config.train.init_backbone 'x.npz'",
                               description="the tiny backbone")
    message = str(e.value)
    for text in expected + ["config.train.init_backbone 'x.npz'", "the tiny backbone"]:
        assert text in message, message
    assert "fc.weight" not in message  # the head is never a mismatch
    np.testing.assert_array_equal(backbone.conv1.kernel.numpy(), before)  # nothing assigned


def test_file_errors_name_the_flag(tmp_path):
    backbone = _tiny_backbone()
    with pytest.raises(FileNotFoundError, match="init_backbone"):
        load_imagenet_file(backbone, str(tmp_path / "none.pth"), "config.train.init_backbone")
    h5 = tmp_path / "model.weights.h5"
    h5.write_bytes(b"")
    with pytest.raises(ValueError, match="init_weights"):
        load_imagenet_file(backbone, str(h5), "config.train.init_backbone")


def test_a_pth_file_is_read_through_torch(tmp_path):
    torch = pytest.importorskip("torch")
    backbone = _tiny_backbone()
    state = _imagenet_state_dict(backbone)
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "r.pth")
    report = load_imagenet_file(backbone, str(tmp_path / "r.pth"))
    assert report.head == ["fc.bias", "fc.weight"]
    np.testing.assert_array_equal(backbone.conv1.kernel.numpy(),
                                  state["conv1.weight"].transpose(2, 3, 1, 0))


def test_init_backbone_loads_into_the_trainers_model_and_convert_matches_it(tmp_path):
    """`config.train.init_backbone` fills the trainer's backbone; the file that
    ``convert --backbone_only`` writes, given as ``init_weights``, starts the same model."""
    from prtr_tf.config import load_config
    from prtr_tf.checkpoints.convert import convert_backbone
    from prtr_tf.training.trainer import Trainer

    config = load_config("synthetic_tiny")
    config.data.root = str(tmp_path / "data")
    config.data.synthetic = {"train": (4, 1), "val": (2, 2)}
    config.train.batch_size = 2
    probe = build_backbone(config.model.backbone)
    probe(tf.zeros((1, 32, 32, 3)), training=False)
    state = _imagenet_state_dict(probe, seed=3)
    np.savez(tmp_path / "imagenet.npz", **state)

    config.train.init_backbone = str(tmp_path / "imagenet.npz")
    stream = io.StringIO()
    trainer = Trainer(config, str(tmp_path / "run"), stream=stream)
    kernel = trainer.model.backbone.stages[1][0].conv2.kernel.numpy()
    np.testing.assert_array_equal(kernel, state["layer2.0.conv2.weight"].transpose(2, 3, 1, 0))
    assert "init_backbone" in stream.getvalue() and "fc.bias, fc.weight" in stream.getvalue()

    config.train.init_backbone = None
    out = tmp_path / "converted.weights.h5"
    _, report = convert_backbone(config, str(tmp_path / "imagenet.npz"), str(out))
    assert report.head == ["fc.bias", "fc.weight"]
    config.train.init_weights = str(out)
    again = Trainer(config, str(tmp_path / "run2"))
    for a, b in zip(trainer.model.weights, again.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
