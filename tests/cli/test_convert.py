"""prtr-convert (python -m prtr_tf.cli.convert) (= prtr-convert) run as users run it.

(The DETR checkpoint reduction through this CLI stays in tests/detector/test_detr.py,
marked ``cli``: it uses that file's module fixture of the synthetic DETR R50 weights.)
"""
import subprocess
import sys

import numpy as np


def test_convert_cli_reports_mismatch(tmp_path):
    np.savez(tmp_path / "bad.npz", **{"foo.weight": np.zeros(2, np.float32)})
    proc = subprocess.run(
        [sys.executable, "-m", "prtr_tf.cli.convert", "--config=configs/tiny.py",
         f"--checkpoint={tmp_path / 'bad.npz'}", f"--output={tmp_path / 'o.weights.h5'}"],
        capture_output=True, text=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert proc.returncode == 1
    assert "unknown tensor(s)" in proc.stderr and "foo.weight" in proc.stderr
    assert not (tmp_path / "o.weights.h5").exists()


def test_convert_backbone_only_writes_weights_and_reports_the_head(tmp_path):
    """--backbone_only: an ImageNet classification checkpoint (torchvision layout, .npz)
    for the config's backbone; the head is skipped and said so; the output loads as
    the config's model with that backbone."""
    import tensorflow as tf

    from prtr_tf.config import load_config
    from prtr_tf.models.keypoint.model import build_model
    from prtr_tf.nn.backbones import build_backbone
    from prtr_tf.checkpoints.torch_import import backbone_mapping

    backbone = build_backbone("resnet_tiny")  # configs/tiny.py's
    backbone(tf.zeros((1, 32, 32, 3)))
    rng = np.random.default_rng(0)
    state = {name: np.abs(rng.normal(size=shape)).astype(np.float32) + 0.5
             for name, (shape, _) in backbone_mapping(backbone).items()}
    state["bn1.num_batches_tracked"] = np.array(3, np.int64)
    state["fc.weight"] = np.zeros((1000, backbone.out_channels), np.float32)
    state["fc.bias"] = np.zeros(1000, np.float32)
    np.savez(tmp_path / "imagenet.npz", **state)
    out = tmp_path / "tiny_imagenet.weights.h5"
    proc = subprocess.run(
        [sys.executable, "-m", "prtr_tf.cli.convert", "--backbone_only", "--config=tiny",
         f"--checkpoint={tmp_path / 'imagenet.npz'}", f"--output={out}"],
        capture_output=True, text=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert proc.returncode == 0, proc.stderr
    assert "skipped the classification head (2: fc.bias, fc.weight)" in proc.stdout
    assert f"wrote {out}" in proc.stdout
    model = build_model(load_config("tiny").model)
    model.load_weights(str(out))
    np.testing.assert_array_equal(model.backbone.conv1.kernel.numpy(),
                                  state["conv1.weight"].transpose(2, 3, 1, 0))
