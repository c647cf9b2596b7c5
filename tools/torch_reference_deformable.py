"""Plain-PyTorch reference of the official deformable PRTR keypoint model.

    python -m tools.torch_reference_deformable [--fixture=FIXTURE.json] [--batch=1,8] [--threads=2]

mlpc-ucsd/PRTR two_stage/lib/models (deformable_pose_transformer.py,
deformable_transformer.py, ops/modules/ms_deform_attn.py; backbone and sine encoding as
`tools.torch_reference`: the ResNet body returning layer2..4, ``deformable-spec.md`` §1)
without torchvision and with the official module names, so an official state_dict loads
with load_state_dict(strict=True). The compiled ``MSDeformAttnFunction`` (CUDA only: its
CPU forward is ``AT_ERROR("Not implement on cpu")``) is replaced by the official
pure-PyTorch core ``ms_deform_attn_core_pytorch`` (ops/functions/ms_deform_attn_func.py:
F.grid_sample, bilinear, zero padding, align_corners=False), as the golden fixture was
made. The crops are never padded: the official masks are all False, so every valid ratio
is 1 and the value masking is a no-op; both are left out. The benchmark's pytorch row for
a deformable config; checked against ../shared/golden in tests/tools/test_torch_reference.py.
"""
import sys

import torch
import torch.nn.functional as F
from torch import nn

from tools.torch_reference import RESNET_BLOCKS, ResNetBody, sine_position_encoding


def ms_deform_attn_core_pytorch(value, value_spatial_shapes, sampling_locations,
                                attention_weights):
    """The official pure-PyTorch sampling core (verbatim but for the names' style):
    value (N, S, M, D), shapes [(H_l, W_l)], locations (N, Lq, M, L, P, 2) (x, y) in
    [0, 1], weights (N, Lq, M, L, P) -> (N, Lq, M*D)."""
    n, _, m, d = value.shape
    _, lq, m, levels, points, _ = sampling_locations.shape
    value_list = value.split([h * w for h, w in value_spatial_shapes], dim=1)
    sampling_grids = 2 * sampling_locations - 1
    sampled = []
    for lid, (h, w) in enumerate(value_spatial_shapes):
        # N, H*W, M, D -> N, H*W, M*D -> N, M*D, H*W -> N*M, D, H, W
        value_l = value_list[lid].flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        # N, Lq, M, P, 2 -> N, M, Lq, P, 2 -> N*M, Lq, P, 2
        grid_l = sampling_grids[:, :, :, lid].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))  # N*M, D, Lq, P
    attention_weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, levels * points)
    output = (torch.stack(sampled, dim=-2).flatten(-2) * attention_weights).sum(-1)
    return output.view(n, m * d, lq).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """The official multi-scale deformable attention (2-d reference points). With
    ``record`` set, the last call's sampling locations and weights are kept in
    ``sampled`` (the fixture's dec0_* / enc0_* arrays)."""

    def __init__(self, d_model=256, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.n_levels, self.n_heads, self.n_points = n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.record, self.sampled = False, None

    def forward(self, query, reference_points, input_flatten, spatial_shapes):
        n, lq, _ = query.shape
        m, levels, points = self.n_heads, self.n_levels, self.n_points
        value = self.value_proj(input_flatten).view(n, input_flatten.shape[1], m, -1)
        offsets = self.sampling_offsets(query).view(n, lq, m, levels, points, 2)
        weights = F.softmax(self.attention_weights(query).view(n, lq, m, levels * points), -1)
        weights = weights.view(n, lq, m, levels, points)
        normalizer = torch.tensor([[w, h] for h, w in spatial_shapes], dtype=query.dtype)
        locations = (reference_points[:, :, None, :, None, :]
                     + offsets / normalizer[None, None, None, :, None, :])
        if self.record:
            self.sampled = (locations, weights)
        return self.output_proj(
            ms_deform_attn_core_pytorch(value, spatial_shapes, locations, weights))


class EncoderLayer(nn.Module):
    """DeformableTransformerEncoderLayer (post-norm; dropout is the identity in eval)."""

    def __init__(self, d, ffn, levels, nheads, points):
        super().__init__()
        self.self_attn = MSDeformAttn(d, levels, nheads, points)
        self.norm1 = nn.LayerNorm(d)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm2 = nn.LayerNorm(d)

    def forward(self, src, pos, reference_points, spatial_shapes):
        src = self.norm1(src + self.self_attn(src + pos, reference_points, src, spatial_shapes))
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class DecoderLayer(nn.Module):
    """DeformableTransformerDecoderLayer: self-attention (norm2), deformable
    cross-attention (norm1), FFN (norm3), in the official registration order."""

    def __init__(self, d, ffn, levels, nheads, points):
        super().__init__()
        self.cross_attn = MSDeformAttn(d, levels, nheads, points)
        self.norm1 = nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, nheads, dropout=0.0)
        self.norm2 = nn.LayerNorm(d)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm3 = nn.LayerNorm(d)

    def forward(self, tgt, query_pos, reference_points, memory, spatial_shapes):
        q = (tgt + query_pos).transpose(0, 1)
        tgt = self.norm2(tgt + self.self_attn(q, q, tgt.transpose(0, 1))[0].transpose(0, 1))
        tgt = self.norm1(tgt + self.cross_attn(tgt + query_pos, reference_points, memory,
                                               spatial_shapes))
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class DeformableTransformer(nn.Module):
    """The official DeformableTransformer (return_intermediate_dec=True, 2-d references,
    no refinement): level_embed, encoder.layers, decoder.layers, reference_points."""

    def __init__(self, d, nheads, enc_layers, dec_layers, ffn, levels, enc_points, dec_points):
        super().__init__()
        self.encoder = nn.ModuleDict({"layers": nn.ModuleList(
            EncoderLayer(d, ffn, levels, nheads, enc_points) for _ in range(enc_layers))})
        self.decoder = nn.ModuleDict({"layers": nn.ModuleList(
            DecoderLayer(d, ffn, levels, nheads, dec_points) for _ in range(dec_layers))})
        self.level_embed = nn.Parameter(torch.zeros(levels, d))
        self.reference_points = nn.Linear(d, 2)

    @staticmethod
    def encoder_reference_points(spatial_shapes):
        """get_reference_points with valid ratios 1: every token's pixel centre (x, y),
        (1, S, L, 2)."""
        refs = []
        for h, w in spatial_shapes:
            ref_y, ref_x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h),
                                          torch.linspace(0.5, w - 0.5, w), indexing="ij")
            refs.append(torch.stack((ref_x.reshape(-1)[None] / w, ref_y.reshape(-1)[None] / h),
                                    -1))
        return torch.cat(refs, 1)[:, :, None].expand(-1, -1, len(spatial_shapes), -1)

    def forward(self, srcs, pos_embeds, query_embed):
        spatial_shapes = [tuple(s.shape[2:]) for s in srcs]
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        lvl_pos = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
                             for lvl, p in enumerate(pos_embeds)], 1)
        reference = self.encoder_reference_points(spatial_shapes)
        memory = src
        for layer in self.encoder.layers:
            memory = layer(memory, lvl_pos, reference, spatial_shapes)
        b, _, d = memory.shape
        query_pos, tgt = torch.split(query_embed, d, dim=1)
        query_pos = query_pos.unsqueeze(0).expand(b, -1, -1)
        tgt = tgt.unsqueeze(0).expand(b, -1, -1)
        reference_points = self.reference_points(query_pos).sigmoid()
        reference_input = reference_points[:, :, None].expand(-1, -1, len(srcs), -1)
        hs = []
        for layer in self.decoder.layers:
            tgt = layer(tgt, query_pos, reference_input, memory, spatial_shapes)
            hs.append(tgt)
        return torch.stack(hs), reference_points, memory


class MLP(nn.Module):
    """PRTR's MLP (``layers``: Linear, ReLU between)."""

    def __init__(self, d, hidden, out, n):
        super().__init__()
        dims = [d] + [hidden] * (n - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [out]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


def inverse_sigmoid(x, eps=1e-5):
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class DeformablePoseTransformer(nn.Module):
    """The official deformable keypoint model (DeformablePoseTransformer), eval forward."""

    def __init__(self, backbone, num_joints, image_size_hw, hidden_dim=256, nheads=8,
                 enc_layers=6, dec_layers=6, dim_feedforward=2048, num_queries=100,
                 num_feature_levels=4, enc_n_points=4, dec_n_points=4):
        super().__init__()
        d = hidden_dim
        # Joiner(ResNetBackbone(.body: layer2..4), PositionEmbeddingSine): no weights in [1].
        self.backbone = nn.Sequential(nn.ModuleDict({"body": ResNetBody(RESNET_BLOCKS[backbone])}),
                                      nn.Identity())
        self.transformer = DeformableTransformer(d, nheads, enc_layers, dec_layers,
                                                 dim_feedforward, num_feature_levels,
                                                 enc_n_points, dec_n_points)
        class_embed, kpt_embed = nn.Linear(d, num_joints + 1), MLP(d, d, 2, 3)
        # One module per decoder layer, the same one repeated (state_dict: 6 copies).
        self.class_embed = nn.ModuleList([class_embed] * dec_layers)
        self.kpt_embed = nn.ModuleList([kpt_embed] * dec_layers)
        self.query_embed = nn.Embedding(num_queries, 2 * d)
        channels = [512, 1024, 2048][-min(3, num_feature_levels):]
        proj = [nn.Sequential(nn.Conv2d(c, d, 1), nn.GroupNorm(32, d)) for c in channels]
        for i in range(num_feature_levels - len(channels)):
            proj.append(nn.Sequential(nn.Conv2d(channels[-1] if i == 0 else d, d, 3, 2, 1),
                                      nn.GroupNorm(32, d)))
        self.input_proj = nn.ModuleList(proj)
        self.num_backbone_levels = len(channels)
        self.image_size_hw = tuple(image_size_hw)

    def backbone_levels(self, images):
        """The ResNet body's layer2..4 outputs (IntermediateLayerGetter), the last
        ``num_backbone_levels`` of them."""
        body = self.backbone[0].body
        x = F.max_pool2d(F.relu(body.bn1(body.conv1(images))), 3, 2, 1)
        levels = []
        for layer in (body.layer1, body.layer2, body.layer3, body.layer4):
            x = layer(x)
            levels.append(x)
        return levels[-self.num_backbone_levels:]

    def forward(self, images, return_features=False):
        features = self.backbone_levels(images)
        srcs = [proj(f) for proj, f in zip(self.input_proj, features)]
        for lvl in range(len(srcs), len(self.input_proj)):
            srcs.append(self.input_proj[lvl](features[-1] if lvl == len(features) else srcs[-1]))
        d = self.query_embed.embedding_dim // 2
        pos = [sine_position_encoding(s, d // 2) for s in srcs]  # only (H, W) matter
        tr = self.transformer
        tr.encoder.layers[0].self_attn.record = return_features
        tr.decoder.layers[0].cross_attn.record = return_features
        hs, reference_points, memory = tr(srcs, pos, self.query_embed.weight)
        reference = inverse_sigmoid(reference_points)  # the same for every layer
        logits = torch.stack([head(h) for head, h in zip(self.class_embed, hs)])
        coords = torch.stack([(head(h) + reference).sigmoid()
                              for head, h in zip(self.kpt_embed, hs)])
        out = {"pred_logits": logits[-1], "pred_coords": coords[-1],
               "aux_pred_logits": logits[:-1], "aux_pred_coords": coords[:-1]}
        if return_features:
            out.update(self._features(features, srcs, pos, memory, hs, reference_points))
        return out

    def _features(self, features, srcs, pos, memory, hs, reference_points):
        """The fixture's intermediate arrays (deform_prtr_*: every level's NCHW maps)."""
        out = {"backbone_features": features[-1], "reference_points": reference_points,
               "decoder_output": hs[-1]}
        start, means = 0, []
        for lvl, (src, p) in enumerate(zip(srcs, pos)):
            b, c, h, w = src.shape
            out[f"src_proj_l{lvl}"], out[f"pos_embed_l{lvl}"] = src, p
            out[f"memory_l{lvl}"] = memory[:, start:start + h * w].transpose(1, 2).reshape(
                b, c, h, w)
            means.append(out[f"memory_l{lvl}"].mean((2, 3)))
            start += h * w
        out["src_proj_mean"] = torch.stack([s.mean((2, 3)) for s in srcs], 1)
        out["memory_mean"] = torch.stack(means, 1)
        tr, last = self.transformer, len(srcs) - 1
        loc, attw = tr.decoder.layers[0].cross_attn.sampled
        out.update(dec0_sampling_locations=loc, dec0_attention_weights=attw)
        n = srcs[-1].shape[2] * srcs[-1].shape[3]  # the last level's tokens come last
        loc, attw = tr.encoder.layers[0].self_attn.sampled
        out.update({f"enc0_sampling_locations_l{last}": loc[:, -n:],
                    f"enc0_attention_weights_l{last}": attw[:, -n:]})
        return out


DEFORMABLE_FIELDS = ("num_feature_levels", "enc_n_points", "dec_n_points")


def build_reference(manifest):
    """DeformablePoseTransformer (eval mode, default init) from a fixture manifest or
    its ``model`` (a spec with ``num_feature_levels``)."""
    model = manifest.get("model", manifest)
    if (model.get("backbone") not in RESNET_BLOCKS or "num_classes" in model
            or "num_feature_levels" not in model):
        raise ValueError(f"the deformable PyTorch reference is the deformable keypoint "
                         f"model with a {' or '.join(RESNET_BLOCKS)} backbone: not {model}")
    kw = {k: model[k] for k in ("hidden_dim", "nheads", "enc_layers", "dec_layers",
                                "dim_feedforward", "num_queries") + DEFORMABLE_FIELDS
          if k in model}
    return DeformablePoseTransformer(model["backbone"], model["num_joints"],
                                     model["image_size_hw"], **kw).eval()


def main(argv=None):
    """`tools.torch_reference`'s command line (parity with --fixture, then latency),
    for this model."""
    from tools import torch_reference
    spec = {"backbone": "resnet50", "num_joints": 17, "image_size_hw": [384, 288],
            "num_feature_levels": 4}
    return torch_reference.main(argv, build_reference, spec,
                                "python -m tools.torch_reference_deformable", __doc__)


if __name__ == "__main__":
    sys.exit(main())
