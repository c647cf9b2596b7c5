"""MAC counting (fvcore conventions) against hand counts and the official figures (spec §9)."""
import pathlib

import keras
import pytest

from prtr_tf.models.keypoint.config import model_config
from prtr_tf.nn.layers import FrozenBatchNorm, conv
from prtr_tf.models.keypoint.model import PoseTransformer
from tools.flops import count_macs, main

HRNET = pathlib.Path(__file__).resolve().parents[2] / "prtr_tf" / "nn" / "hrnet.py"


def test_conv_dense_hand_count():
    # (2, 8, 6, 3) -> 3x3 valid conv to 4 ch (6x4 map) -> BN -> frozen BN -> Dense 4 -> 5.
    model = keras.Sequential([keras.Input((8, 6, 3)), conv(4, 3, padding=0, use_bias=True),
                              keras.layers.BatchNormalization(), FrozenBatchNorm(),
                              keras.layers.Dense(5)])
    counts = count_macs(model, (8, 6), batch=2)
    assert counts == {
        "conv": 2 * (6 * 4) * (3 * 3 * 3) * 4,  # out positions x kh kw cin x cout = 5184
        "linear": 2 * (6 * 4) * 4 * 5,  # 960
        "attention": 0,
        "norm": 2 * 2 * (6 * 4 * 4),  # fvcore eval-mode BN: 2 per element; frozen BN: 0
        "upsample": 0,
        "total": 5184 + 960 + 384,
    }


class _TokenBlock(keras.layers.Layer):
    """(B, 1, L, d) image -> L tokens -> self-attention -> LayerNorm."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.attn = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
        self.norm = keras.layers.LayerNormalization()

    def call(self, x, training=False):
        tokens = x[:, 0]
        return self.norm(self.attn(tokens, tokens, training=training))


def test_attention_and_layer_norm_hand_count():
    counts = count_macs(_TokenBlock(), (1, 3), channels=8)
    assert counts["linear"] == 4 * 3 * 8 * 8  # q, k, v, output projections: 768
    assert counts["attention"] == 2 * 3 * 3 * (4 + 4)  # heads x Lq x Lk x (dk + dv): 144
    assert counts["norm"] == 5 * 3 * 8  # fvcore layer_norm: 5 per element
    assert counts["total"] == 768 + 144 + 120


@pytest.mark.parametrize("backbone,dataset,size,reference", [
    ("resnet50", "coco", (384, 288), 11.05),
    ("resnet50", "mpii", (256, 256), 6.94),
    ("hrnet_w32", "coco", (384, 288), 21.80),
])
def test_official_gmacs(backbone, dataset, size, reference):
    if backbone.startswith("hrnet") and not HRNET.exists():
        pytest.skip("prtr_tf/nn/hrnet.py is not written yet")
    config = model_config(backbone, dataset=dataset, image_size=size)
    counts = count_macs(PoseTransformer(config), size)  # built by its first call
    assert counts["total"] / 1e9 == pytest.approx(reference, rel=0.01)
    # The transformer and heads do not depend on the backbone: S tokens, Q=100, d=256, 6+6 layers.
    s = (size[0] // 32) * (size[1] // 32)
    attention = 6 * 2 * s * s * 256 + 6 * (2 * 100 * 100 * 256 + 2 * 100 * s * 256)
    assert counts["attention"] == attention


def test_cli_prints_a_table_row(capsys):
    from prtr_tf.config import load_config
    from prtr_tf.models.keypoint.model import build_model
    from prtr_tf.nn.layers import count_parameters

    main(["--config", "tiny"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| config | params | GMACs")
    config = load_config("tiny")
    params = count_parameters(build_model(config.model))
    macs = count_macs(build_model(config.model), config.model.image_size)["total"] / 1e9
    assert lines[-1].startswith(f"| tiny | {params:,} | {macs:.2f}")
