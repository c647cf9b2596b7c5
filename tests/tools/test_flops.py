"""MAC counting (fvcore conventions) against hand counts and the official figures (spec §9;
the deformable models: deformable-spec.md §0, the official README's 29.1 GFLOPs)."""
import pathlib

import keras
import pytest
import tensorflow as tf

from prtr_tf.models.keypoint.config import model_config
from prtr_tf.nn.layers import FrozenBatchNorm, Composite, conv
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
        "sampling": 0,
        "total": 5184 + 960 + 384,
        "total_with_sampling": 5184 + 960 + 384,
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
    assert lines[0].startswith("| config | input (H×W) | params | GMACs")
    config = load_config("tiny")
    params = count_parameters(build_model(config.model))
    macs = count_macs(build_model(config.model), config.model.image_size)["total"] / 1e9
    assert lines[-1].startswith(f"| tiny | 128×96 | {params:,} | {macs:.2f}")


# ------------------------------------------------------- multi-scale deformable attention

# A small encoder layer: d model channels, M heads of D = d / M, L levels, P points.
D_MODEL, FFN, HEADS, POINTS = 16, 24, 2, 3
SHAPES = [(4, 3), (2, 2)]  # (H_l, W_l): S = 12 + 4 = 16 tokens


class _EncoderOnTokens(Composite):
    """(B, 1, S, d) "image" -> the S tokens of `SHAPES` -> one deformable encoder layer."""

    def __init__(self, **kw):
        from prtr_tf.nn.deformable_transformer import DeformableEncoderLayer
        super().__init__(**kw)
        self.layer = DeformableEncoderLayer(D_MODEL, FFN, 0.0, len(SHAPES), HEADS, POINTS)

    def call(self, x, training=False):
        from prtr_tf.nn.deformable_transformer import encoder_reference_points
        tokens = x[:, 0]
        return self.layer(tokens, tf.zeros_like(tokens), encoder_reference_points(SHAPES),
                          spatial_shapes=SHAPES, training=training)


def test_deformable_encoder_layer_hand_count():
    """One encoder layer (post-norm MSDeformAttn + FFN) counted from the shapes: the four
    projections and the FFN as linear, two LayerNorms, and the sampling (4 bilinear + 1
    attention-weight MACs per query, head, level, point and head channel) outside
    ``total`` (fvcore cannot see the official CUDA op: 0 there)."""
    batch, levels = 2, len(SHAPES)
    tokens = sum(h * w for h, w in SHAPES)
    counts = count_macs(_EncoderOnTokens(), (1, tokens), batch=batch, channels=D_MODEL)
    rows = batch * tokens  # every token is a query and a value
    linear = rows * D_MODEL * (
        D_MODEL                             # value_proj
        + HEADS * levels * POINTS * 2       # sampling_offsets (x, y)
        + HEADS * levels * POINTS           # attention_weights
        + D_MODEL)                          # output_proj
    linear += rows * D_MODEL * FFN * 2      # linear1, linear2
    sampling = rows * HEADS * levels * POINTS * (D_MODEL // HEADS) * (4 + 1)
    norm = 2 * 5 * rows * D_MODEL           # norm1, norm2
    assert counts == {"conv": 0, "linear": linear, "attention": 0, "norm": norm,
                      "upsample": 0, "sampling": sampling, "total": linear + norm,
                      "total_with_sampling": linear + norm + sampling}
    assert (linear, norm, sampling) == (59392, 5120, 15360)  # the arithmetic, spelled out


def test_input_projection_and_group_norm_hand_count():
    """The official ``input_proj`` on C3, C4, C5: 1x1 convs, the 3x3 stride-2 conv on the
    raw last map (torch padding 1) and GroupNorm at fvcore's 5 per element."""
    from prtr_tf.nn.deformable_transformer import InputProjection

    class _Levels(Composite):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.proj = InputProjection(4, 8, 3, groups=4)

        def call(self, x, training=False):  # (B, 8, 6, 5): C3 and its 2x, 4x pooled maps
            pooled = [x, tf.nn.avg_pool2d(x, 2, 2, "VALID"), tf.nn.avg_pool2d(x, 4, 4, "VALID")]
            return self.proj(pooled)

    counts = count_macs(_Levels(), (8, 6), channels=5)
    positions = [8 * 6, 4 * 3, 2 * 1, 1 * 1]  # level 3: ceil(2 / 2) x ceil(1 / 2)
    conv_macs = sum(p * 5 * 8 for p in positions[:3]) + positions[3] * 3 * 3 * 5 * 8
    assert counts["conv"] == conv_macs
    assert counts["norm"] == 5 * 8 * sum(positions)
    assert counts["total"] == conv_macs + 5 * 8 * sum(positions)


def test_deform_tiny_sampling_and_totals():
    """The whole tiny deformable model: the sampling of every encoder (S tokens) and
    decoder (Q queries) layer, outside ``total``; LayerNorm and GroupNorm in ``norm``."""
    from prtr_tf.config import load_config
    from prtr_tf.models import registry

    config = load_config("deform_tiny")
    m = config.model
    model = registry.get(config).build(m)
    counts = count_macs(model, tuple(m.image_size))
    h, w = m.image_size
    # resnet_tiny levels C2..C4 (strides 4, 8, 16) + the stride-2 conv level.
    shapes = [(-(-h // s), -(-w // s)) for s in (4, 8, 16)]
    shapes.append((-(-shapes[-1][0] // 2), -(-shapes[-1][1] // 2)))
    tokens = sum(a * b for a, b in shapes)
    per_query = m.nheads * len(shapes) * (m.hidden_dim // m.nheads) * 5
    assert counts["sampling"] == per_query * (tokens * m.enc_n_points * m.enc_layers
                                              + m.num_queries * m.dec_n_points * m.dec_layers)
    assert counts["total_with_sampling"] == counts["total"] + counts["sampling"]
    assert counts["total"] == sum(counts[k] for k in ("conv", "linear", "attention", "norm",
                                                      "upsample"))
    layer_norms = 5 * m.hidden_dim * (2 * tokens * m.enc_layers
                                      + 3 * m.num_queries * m.dec_layers)
    group_norms = 5 * m.hidden_dim * tokens  # input_proj: one GroupNorm per level
    backbone = count_macs(model.backbone, tuple(m.image_size))["norm"]  # resnet_tiny's BN
    assert counts["norm"] == backbone + layer_norms + group_norms


def test_cli_counts_deformable_models_and_detectors(capsys):
    """Keypoint configs on their crops; a detector on --image_size (by default a 640x480
    photo at its test resize); models of other roles and bad sizes are usage errors."""
    from prtr_tf.config import load_config
    from tools.flops import detector_image_size

    main(["--config", "deform_tiny", "--config", "deformable_detr_tiny",
          "--image_size", "64,96"])
    rows = capsys.readouterr().out.strip().splitlines()[2:]
    assert [r.split(" | ")[:2] for r in rows] == [["| deform_tiny", "128×96"],
                                                  ["| deformable_detr_tiny", "64×96"]]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        total, sampling, with_sampling = float(cells[3]), float(cells[11]), float(cells[12])
        assert sampling > 0 and with_sampling == pytest.approx(total + sampling, abs=2e-3)
    assert detector_image_size(load_config("deformable_detr_r50_coco")) == (800, 1066)
    assert detector_image_size(load_config("deformable_detr_tiny")) == (256, 341)
    for argv in (["--config", "e2e_tiny"], ["--config", "tiny", "--image_size", "64"]):
        with pytest.raises(SystemExit):
            main(argv)


@pytest.mark.slow
def test_official_deformable_gmacs():
    """deformable PRTR R50 384x288 (spec §0, S = 2298 tokens, 100 queries, 6 + 6 layers):
    ``total`` (what fvcore prints: the CUDA sampling op unseen) is the official README's
    29.1 GFLOPs; the sampling adds 0.29 G."""
    from prtr_tf.config import load_config
    from prtr_tf.models import registry

    config = load_config("coco_deform_res50_384x288")
    counts = count_macs(registry.get(config).build(config.model), (384, 288))
    assert round(counts["total"] / 1e9, 1) == 29.1
    assert counts["sampling"] == 6 * (2298 + 100) * 8 * 4 * 4 * 32 * 5
    assert counts["attention"] == 6 * 2 * 100 * 100 * 256  # the decoder's self-attention
