"""Plain-PyTorch reference of the official PRTR two-stage keypoint model.

    python -m tools.torch_reference [FIXTURE.json] [--batch 1 8] [--threads 2]

mlpc-ucsd/PRTR two_stage/lib/models (pose_transformer.py; backbone.py: torchvision ResNet
body, FrozenBatchNorm2d, C5, no dilation; positional_encoding.py: sine, normalize=True;
transformer.py: DETR, post-norm) without torchvision and with the official module names,
so an official state_dict loads with load_state_dict(strict=True). The benchmark's pytorch
row; checked against ../shared/golden in tests/tools/test_torch_reference.py.
"""
import math
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

RESNET_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine terms (buffers), eps 1e-5."""

    def __init__(self, n):
        super().__init__()
        for name, init in (("weight", torch.ones), ("bias", torch.zeros),
                           ("running_mean", torch.zeros), ("running_var", torch.ones)):
            self.register_buffer(name, init(n))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)  # as the official one does
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        scale = self.weight * (self.running_var + 1e-5).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


def _conv(cin, cout, k, stride=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)


class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck (stride on the 3x3 conv)."""

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = 4 * width
        self.conv1, self.bn1 = _conv(cin, width, 1), FrozenBatchNorm2d(width)
        self.conv2, self.bn2 = _conv(width, width, 3, stride), FrozenBatchNorm2d(width)
        self.conv3, self.bn3 = _conv(width, cout, 1), FrozenBatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(_conv(cin, cout, 1, stride), FrozenBatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNetBody(nn.Module):
    """The torchvision ResNet up to ``layer4`` (IntermediateLayerGetter's ``body``)."""

    def __init__(self, blocks):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), FrozenBatchNorm2d(64)
        cin = 64
        for i, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
            setattr(self, f"layer{i + 1}", nn.Sequential(*(
                Bottleneck(cin if j == 0 else 4 * width, width, 2 if j == 0 and i > 0 else 1)
                for j in range(n))))
            cin = 4 * width

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def sine_position_encoding(x, num_pos_feats=128, temperature=10000.0):
    """PositionEmbeddingSine(normalize=True, scale=2*pi) for an unmasked (B, C, H, W)."""
    b, _, h, w = x.shape
    ones = torch.ones(b, h, w, dtype=torch.float32)
    y_embed, x_embed = ones.cumsum(1), ones.cumsum(2)
    y_embed = y_embed / (y_embed[:, -1:, :] + 1e-6) * (2 * math.pi)
    x_embed = x_embed / (x_embed[:, :, -1:] + 1e-6) * (2 * math.pi)
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)

    def interleave(e):
        e = e[:, :, :, None] / dim_t
        return torch.stack((e[..., 0::2].sin(), e[..., 1::2].cos()), dim=4).flatten(3)

    return torch.cat((interleave(y_embed), interleave(x_embed)), dim=3).permute(0, 3, 1, 2)


class TransformerLayer(nn.Module):
    """DETR's post-norm encoder layer, or decoder layer with ``cross`` attention."""

    def __init__(self, d, nheads, ffn, cross, dropout=0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d, nheads, dropout=dropout)
        if cross:
            self.multihead_attn = nn.MultiheadAttention(d, nheads, dropout=dropout)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        for i in range(3 if cross else 2):
            setattr(self, f"norm{i + 1}", nn.LayerNorm(d))

    def forward(self, x, pos, memory=None, memory_pos=None):
        q = x + pos  # encoder: pos = sine PE; decoder: pos = query_embed
        x = self.norm1(x + self.self_attn(q, q, value=x)[0])
        if memory is not None:
            x = self.norm2(x + self.multihead_attn(x + pos, memory + memory_pos, memory)[0])
        last = self.norm3 if memory is not None else self.norm2
        return last(x + self.linear2(F.relu(self.linear1(x))))


class PoseTransformer(nn.Module):
    """The official two-stage keypoint model (PRTR's PoseTransformer), eval forward."""

    def __init__(self, backbone, num_joints, image_size_hw, hidden_dim=256, nheads=8,
                 enc_layers=6, dec_layers=6, dim_feedforward=2048, num_queries=100):
        super().__init__()
        d, ffn = hidden_dim, dim_feedforward
        # Joiner(ResNetBackbone(.body), PositionEmbeddingSine): the latter has no weights.
        self.backbone = nn.Sequential(nn.ModuleDict({"body": ResNetBody(RESNET_BLOCKS[backbone])}),
                                      nn.Identity())
        self.transformer = nn.ModuleDict({
            "encoder": nn.ModuleDict({"layers": nn.ModuleList(
                TransformerLayer(d, nheads, ffn, False) for _ in range(enc_layers))}),
            "decoder": nn.ModuleDict({"layers": nn.ModuleList(
                TransformerLayer(d, nheads, ffn, True) for _ in range(dec_layers)),
                "norm": nn.LayerNorm(d)})})
        self.class_embed = nn.Linear(d, num_joints + 1)
        self.kpt_embed = nn.ModuleDict({"layers": nn.ModuleList(  # MLP(d, d, 2, 3)
            [nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, 2)])})
        self.query_embed = nn.Embedding(num_queries, d)
        self.input_proj = nn.Conv2d(2048, d, 1)
        self.image_size_hw = tuple(image_size_hw)

    def forward(self, images, return_features=False):
        features = self.backbone[0].body(images)
        pos = sine_position_encoding(features, self.input_proj.out_channels // 2)
        # Transformer.forward: NxCxHxW -> HWxNxC, queries Qx1xC -> QxNxC.
        memory = self.input_proj(features).flatten(2).permute(2, 0, 1)
        memory_pos = pos.flatten(2).permute(2, 0, 1)
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, images.shape[0], 1)
        for layer in self.transformer.encoder.layers:
            memory = layer(memory, memory_pos)
        x, stack = torch.zeros_like(query_pos), []
        for layer in self.transformer.decoder.layers:
            x = layer(x, query_pos, memory, memory_pos)
            stack.append(self.transformer.decoder.norm(x))  # return_intermediate_dec
        hs = torch.stack(stack).transpose(1, 2)  # (L, B, Q, d)
        k = self.kpt_embed.layers
        logits, coords = self.class_embed(hs), k[2](F.relu(k[1](F.relu(k[0](hs))))).sigmoid()
        out = {"pred_logits": logits[-1], "pred_coords": coords[-1],
               "aux_pred_logits": logits[:-1], "aux_pred_coords": coords[:-1]}
        if return_features:
            out.update(backbone_features=features, pos_embed=pos)
        return out


def build_reference(manifest):
    """PoseTransformer (eval mode, default init) from a fixture manifest or its ``model``."""
    model = manifest.get("model", manifest)
    if (model.get("backbone") not in RESNET_BLOCKS or model.get("pre_norm")
            or model.get("dilation") or "num_classes" in model):
        raise ValueError(f"the PyTorch reference is the two-stage keypoint model with a "
                         f"{' or '.join(RESNET_BLOCKS)} backbone, post-norm, no dilation: "
                         f"not {model}")
    kw = {k: model[k] for k in ("hidden_dim", "nheads", "enc_layers", "dec_layers",
                                "dim_feedforward", "num_queries") if k in model}
    return PoseTransformer(model["backbone"], model["num_joints"], model["image_size_hw"],
                           **kw).eval()


def reference_state_dict(manifest_path):
    """The fixture's official state_dict as torch tensors, rebuilt by its synth_weights.py."""
    from tools.parity import load_fixture
    state = load_fixture(str(manifest_path))[1]
    return {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in state.items()}


def time_reference(model, batch, threads, repeats):
    """Seconds of each of ``repeats`` forward passes on random (batch, 3, H, W) crops,
    after one warm-up, with ``threads`` intra-op threads, under inference_mode."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        images = torch.randn(batch, 3, *model.image_size_hw,
                             generator=torch.Generator().manual_seed(0))
        model.eval()
        times = []
        with torch.inference_mode():
            model(images)
            for _ in range(repeats):
                start = time.perf_counter()
                model(images)
                times.append(time.perf_counter() - start)
        return times
    finally:
        torch.set_num_threads(previous)


def fixture_errors(manifest_path, build=None):
    """{array: max|Δ| / max|ref|} against a fixture's official outputs (strict load of its
    state_dict, its inputs as tools.parity generates them) of the model ``build``
    (default `build_reference`) makes from the manifest."""
    from tools.parity import load_fixture
    manifest, state, inputs, expected = load_fixture(str(manifest_path))
    model = (build or build_reference)(manifest)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    with torch.inference_mode():
        got = model(torch.from_numpy(inputs["images"]), return_features=True)
    return {k: float(np.abs(got[k].double().numpy() - ref).max() / np.abs(ref).max())
            for k, ref in expected.items() if k in got}


def main(argv=None, build=None, spec=None, program="python -m tools.torch_reference",
         doc=__doc__):
    """The command line (also `tools.torch_reference_deformable`'s, with its ``build``,
    default ``spec``, ``program`` and ``doc``)."""
    import json
    from pathlib import Path

    from absl import flags

    from tools.flags import parse, usage_error

    def define(values):
        flags.DEFINE_string("fixture", None, "Check parity with this manifest (NAME.json) "
                            "first, and time its model.", flag_values=values)
        flags.DEFINE_list("batch", ["1", "8"], "Batch sizes.", flag_values=values)
        flags.DEFINE_integer("threads", 2, "torch threads.", flag_values=values)
        flags.DEFINE_integer("repeats", 10, "Timed runs.", flag_values=values)

    args = parse(argv, define, doc.split("\n\n")[0], program)
    if args.positional:
        usage_error(f"unexpected arguments: {args.positional} (the fixture is --fixture)")
    try:
        batches = [int(b) for b in args.batch]
    except ValueError:
        usage_error(f"--batch: expected comma-separated integers, got {args.batch}")
    build = build or build_reference
    spec = spec or {"backbone": "resnet50", "num_joints": 17, "image_size_hw": [384, 288]}
    if args.fixture:
        for name, err in fixture_errors(args.fixture, build).items():
            print(f"{name:<26} max|Δ|/max|ref| {err:.2e}")
        spec = json.loads(Path(args.fixture).read_text())["model"]
    model = build(spec)  # default init: latency does not depend on values
    for batch in batches:
        t = time_reference(model, batch, args.threads, args.repeats)
        print(f"batch {batch}, {args.threads} threads: median {1e3 * statistics.median(t):.1f}"
              f" ms (min {1e3 * min(t):.1f}, {len(t)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
