"""Reference-parity check against fixtures made with the official PyTorch code.

    python -m tools.parity FIXTURE.json [FIXTURE.json ...]

A fixture is a manifest ``NAME.json`` (architecture, official tensor names and
kinds, inputs), the official outputs ``NAME.npz`` beside it, and the
``synth_weights.py`` beside it that rebuilds the exact weights and inputs. The
tool builds the model the manifest describes, imports the weights through the
checkpoint importer, runs the forward pass and prints max |Δ| for every array it
can compare. Exit status 1 if any |Δ| exceeds the tolerance (1e-4; for backbone
features relative to their largest magnitude) or a readout query differs; 2 if the
fixture cannot be read.

An ``imagenet-backbone`` fixture (an ImageNet classification state_dict) goes through
the ImageNet importer (`prtr_tf.checkpoints.torch_import.load_imagenet_backbone`) into the bare
backbone named by ``model.backbone``: every array it lists must be computed and match
(relative to its largest magnitude), and the tool checks that every tensor was used
except the head (``head_tensors``, skipped) and the ``num_batches_tracked`` buffers.
"""
import importlib.util
import json
import os
import sys

import numpy as np

from tools.parity_deformable_detr import run_deformable_detr

TOLERANCE = 1e-4
# Intermediate feature maps are compared relative to their largest magnitude: with
# the fixtures' random weights HRNet features reach ~3e4, where one float32 step
# is already ~2e-3. Logits, coordinates, boxes and scores are compared absolutely,
# as the fixtures require (|Δ| <= 1e-4).
RELATIVE = ("backbone_features",)


class FixtureError(ValueError):
    pass


def load_fixture(manifest_path):
    """Returns (manifest, state_dict, inputs, expected arrays)."""
    manifest_path = os.path.abspath(manifest_path)
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise FixtureError(f"cannot read manifest {manifest_path}: {e}") from e
    folder = os.path.dirname(manifest_path)
    npz_path = os.path.splitext(manifest_path)[0] + ".npz"
    synth_path = os.path.join(folder, "synth_weights.py")
    for path in (npz_path, synth_path):
        if not os.path.exists(path):
            raise FixtureError(f"{path} is missing (expected beside {manifest_path})")
    for key in ("format", "model", "tensors", "inputs", "seed"):
        if key not in manifest:
            raise FixtureError(f"{manifest_path}: field {key!r} is missing")
    spec = importlib.util.spec_from_file_location("_fixture_synth_weights", synth_path)
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    with np.load(npz_path) as data:
        expected = {k: data[k] for k in data.files}
    return manifest, synth.state_dict(manifest), synth.inputs(manifest), expected


def model_config_from_manifest(model):
    kw = {k: model[k] for k in ("hidden_dim", "nheads", "enc_layers", "dec_layers",
                                "dim_feedforward", "num_queries") if k in model}
    if "num_classes" in model:  # a DETR detector
        from prtr_tf.models.detector.config import detector_model_config
        return detector_model_config(backbone=model["backbone"],
                                     num_classes=model["num_classes"], **kw)
    from prtr_tf.models.keypoint.config import model_config
    dataset = model.get("dataset", "coco")
    config = model_config(backbone=model["backbone"], dataset=dataset,
                          image_size=tuple(model["image_size_hw"]), **kw)
    if config.num_joints != model["num_joints"]:
        config.num_joints = model["num_joints"]
    return config


def run_two_stage(manifest, state_dict, inputs, fold=False):
    """Official PoseTransformer outputs, in the fixture's layout (NCHW features);
    ``fold``: with frozen BatchNorm folded into the convolutions (`prtr_tf.nn.fold`)."""
    import tensorflow as tf

    from prtr_tf.models.keypoint.model import build_model
    from prtr_tf.nn.fold import fold_frozen_batchnorm
    from prtr_tf.checkpoints.torch_import import load_state_dict
    from prtr_tf.nn.position_encoding import sine_position_encoding
    from prtr_tf.models.keypoint.readout import readout

    config = model_config_from_manifest(manifest["model"])
    model = build_model(config)
    load_state_dict(model, state_dict)
    if fold:
        fold_frozen_batchnorm(model)
    images = tf.constant(np.transpose(inputs["images"], (0, 2, 3, 1)))
    features = model.backbone(images, training=False)
    out = model.decode(features, training=False)
    b, h, w = features.shape[:3]
    pos = sine_position_encoding((b, h, w), config.hidden_dim // 2)
    result = readout(out["pred_logits"], out["pred_coords"])
    nchw = lambda t: np.transpose(np.asarray(t), (0, 3, 1, 2))  # noqa: E731
    return {
        "backbone_features": nchw(features),
        "pos_embed": nchw(pos),
        "pred_logits": out["pred_logits"].numpy(),
        "pred_coords": out["pred_coords"].numpy(),
        "aux_pred_logits": out["aux_pred_logits"].numpy(),
        "aux_pred_coords": out["aux_pred_coords"].numpy(),
        "readout_query": result["query"].numpy(),
        "readout_scores": result["scores"].numpy(),
        "readout_coords": result["coords"].numpy(),  # normalised by the crop size
    }


def pad_images(images):
    """DETR's batching: zero-pad (C, H, W) images bottom/right to the largest H and W.

    Returns (padded (B, C, H, W), mask (B, H, W) True on padding).
    """
    c = images[0].shape[0]
    h = max(im.shape[1] for im in images)
    w = max(im.shape[2] for im in images)
    padded = np.zeros((len(images), c, h, w), images[0].dtype)
    mask = np.ones((len(images), h, w), bool)
    for i, im in enumerate(images):
        padded[i, :, :im.shape[1], :im.shape[2]] = im
        mask[i, :im.shape[1], :im.shape[2]] = False
    return padded, mask


def run_detr(manifest, state_dict, inputs, fold=False):
    """Official DETR outputs for a zero-padded batch, in the fixture's layout; ``fold``
    as `run_two_stage`."""
    import tensorflow as tf

    from prtr_tf.models.detector.model import build_detector
    from prtr_tf.nn.fold import fold_frozen_batchnorm
    from prtr_tf.checkpoints.torch_import import load_state_dict
    from prtr_tf.nn.position_encoding import sine_position_encoding

    config = model_config_from_manifest(manifest["model"])
    model = build_detector(config)
    load_state_dict(model, state_dict)
    if fold:
        fold_frozen_batchnorm(model)
    padded, mask = pad_images([inputs[spec["name"]] for spec in manifest["inputs"]])
    images = tf.constant(np.transpose(padded, (0, 2, 3, 1)))
    features, feature_mask = model.extract(images, tf.constant(mask), training=False)
    out = model.decode(features, feature_mask, training=False)
    pos = sine_position_encoding(feature_mask, config.hidden_dim // 2)
    nchw = lambda t: np.transpose(np.asarray(t), (0, 3, 1, 2))  # noqa: E731
    return {
        "padded_images": padded,
        "mask": mask,
        "backbone_features": nchw(features),
        "backbone_mask": np.asarray(feature_mask),
        "pos_embed": nchw(pos),
        "pred_logits": out["pred_logits"].numpy(),
        "pred_boxes": out["pred_boxes"].numpy(),
        "aux_pred_logits": out["aux_pred_logits"].numpy(),
        "aux_pred_boxes": out["aux_pred_boxes"].numpy(),
    }


def imagenet_arrays(backbone, levels, names):
    """{fixture array name: NCHW array} of an ``imagenet-backbone`` fixture's ``arrays``
    that this backbone produces: ``backbone_features`` (its main output), ``cN``
    (ResNet ``layerN-1``, stride 2^N) and, for HRNet, ``stageS_outI`` (branch I of the
    last stage S); any other name stays uncomputed (the check reports it)."""
    import re

    from prtr_tf.nn.hrnet import HRNet

    last_stage = len(backbone.stages) + 1 if isinstance(backbone, HRNet) else None
    out = {}
    for name in names:
        level = None
        if name == "backbone_features":
            level = backbone.main_level
        elif re.fullmatch(r"c\d+", name):
            level = f"C{name[1:]}"
        elif last_stage and (m := re.fullmatch(r"stage(\d+)_out(\d+)", name)) \
                and int(m.group(1)) == last_stage:
            level = f"C{int(m.group(2)) + 2}"
        if level in levels:
            out[name] = np.transpose(np.asarray(levels[level]), (0, 3, 1, 2))
    return out


def tensor_usage(manifest, report):
    """The row (name, note, ok, detail) checking that the importer used every tensor of
    the manifest but the head (``head_tensors``, skipped exactly) and the
    ``num_batches_tracked`` buffers (no values)."""
    from prtr_tf.checkpoints.torch_import import OPTIONAL_SUFFIXES

    names = [e["name"] for e in manifest["tensors"]]
    head = set(manifest.get("head_tensors", []))
    buffers = {n for n in names if n.endswith(OPTIONAL_SUFFIXES)} - head
    must_use = set(names) - head - buffers
    unused = sorted(must_use - set(report.loaded))
    extra = sorted(set(report.loaded) - must_use)
    wrong_head = sorted(set(report.head) ^ head)
    ok = not (unused or extra or wrong_head) and bool(must_use)
    detail = (f": {len(report.loaded)} of {len(names)} loaded; skipped the head "
              f"({', '.join(report.head) or 'none'}) and {len(report.ignored)} "
              "num_batches_tracked (no values)")
    if not ok:
        detail += "".join(f"; {label}: {', '.join(v[:20])}" for label, v in (
            ("NOT USED", unused), ("used but not expected", extra),
            ("head skipped differs from head_tensors", wrong_head)) if v)
    return ("tensors", "every other tensor used" if ok else "MISMATCH", ok, detail)


def run_imagenet_backbone(manifest, state_dict, inputs):
    """An ImageNet classification state_dict through the ImageNet importer into the
    manifest's backbone; its outputs (NCHW) and the tensor-usage check."""
    import tensorflow as tf

    from prtr_tf.nn.backbones import build_backbone
    from prtr_tf.checkpoints.torch_import import CheckpointMismatchError, load_imagenet_backbone

    if len(inputs) != 1:
        raise FixtureError(f"an imagenet-backbone fixture has one input, not {sorted(inputs)}")
    backbone = build_backbone(manifest["model"]["backbone"])
    backbone(tf.zeros((1, 64, 64, 3)), training=False)  # creates the weights
    try:
        report = load_imagenet_backbone(backbone, state_dict, "the fixture's state_dict")
    except CheckpointMismatchError as e:
        return {}, [("tensors", "import failed", False, f": {e}")]
    images = tf.constant(np.transpose(next(iter(inputs.values())), (0, 2, 3, 1)))
    levels = backbone(images, training=False, return_levels=True)
    return (imagenet_arrays(backbone, levels, manifest.get("arrays", ())),
            [tensor_usage(manifest, report)])


def run_deformable(manifest, state_dict, inputs, fold=False, expected=None):
    """Official deformable PRTR (``prtr-deformable``) outputs in the fixture's layout,
    for any depth, crop size, number of levels and layers the manifest gives: every
    level's ``src_proj_l*`` / ``pos_embed_l*`` / ``memory_l*`` (NCHW), their ``*_mean``,
    decoder layer 0's and (for the last level's queries) encoder layer 0's sampling,
    outputs and readout; the import check (every tensor used, head copies equal) as a
    row; ``msda_output`` (the sampling core alone) when ``expected`` holds its inputs."""
    import tensorflow as tf

    from prtr_tf.nn.ms_deform_attn import ms_deform_attn_core

    from prtr_tf.models.keypoint.deformable import (build_deformable_model,
                                                    deformable_two_stage,
                                                    import_official_state_dict)
    from prtr_tf.models.keypoint.readout import readout
    from prtr_tf.checkpoints.deformable_import import OfficialWeightsError
    from prtr_tf.nn.deformable_transformer import encoder_reference_points

    m = manifest["model"]
    config = deformable_two_stage(
        m["backbone"], tuple(m["image_size_hw"]), lr_backbone=1e-5, lr_steps=(50, 70),
        batch_size=1, num_feature_levels=m["num_feature_levels"],
        enc_n_points=m["enc_n_points"], dec_n_points=m["dec_n_points"],
        model_overrides={k: m[k] for k in ("hidden_dim", "nheads", "enc_layers",
                                           "dec_layers", "dim_feedforward", "num_queries")})
    config.model.num_joints = m["num_joints"]
    model = build_deformable_model(config.model)
    try:
        copied = import_official_state_dict(model, state_dict)
    except OfficialWeightsError as e:
        return {}, [("tensors", "import failed", False, f": {e}")]
    tied = len(state_dict) - len(copied)
    row = ("tensors", "every tensor used", len(copied) + tied == len(manifest["tensors"]),
           f": {len(copied)} copied, {tied} per-layer head copies checked equal to copy 0")
    images = tf.constant(np.transpose(inputs["images"], (0, 2, 3, 1)))
    features = model.backbone_levels(images)
    out = model.transformer_outputs(features)
    hs, ref = out["hs"], out["reference_points"]
    result = model.decode(features)
    nchw = lambda t: np.transpose(np.asarray(t), (0, 3, 1, 2))  # noqa: E731
    arrays = {"backbone_features": nchw(features[-1]), "reference_points": ref.numpy(),
              "decoder_output": hs[-1].numpy()}
    shapes, starts = out["spatial_shapes"], list(out["level_start_index"])
    memory = out["memory"].numpy()
    ends = starts[1:] + [memory.shape[1]]
    for lvl, (h, w) in enumerate(shapes):
        arrays[f"src_proj_l{lvl}"] = nchw(out["srcs"][lvl])
        arrays[f"pos_embed_l{lvl}"] = nchw(out["pos"][lvl])
        arrays[f"memory_l{lvl}"] = nchw(memory[:, starts[lvl]:ends[lvl]].reshape(
            memory.shape[0], h, w, -1))
    arrays["src_proj_mean"] = np.stack([np.asarray(s).mean((1, 2)) for s in out["srcs"]], 1)
    arrays["memory_mean"] = np.stack([memory[:, a:b].mean(1) for a, b in zip(starts, ends)],
                                     1)
    tr, levels = model.transformer, len(shapes)
    tgt, qpos, _ = tr.decoder_inputs(model.query_embed.embeddings, images.shape[0])
    dec0 = tr.decoder_layers[0]
    loc, attw = dec0.cross_attn.sampling(dec0.self_attention(tgt, qpos) + qpos, tf.tile(
        ref[:, :, None], [1, 1, levels, 1]), shapes)
    arrays.update(dec0_sampling_locations=loc.numpy(), dec0_attention_weights=attw.numpy())
    last = levels - 1
    n = shapes[last][0] * shapes[last][1]
    src = tf.reshape(out["srcs"][last], [images.shape[0], n, -1])
    query = src + tf.reshape(out["pos"][last], tf.shape(src)) + tr.level_embed.vector(last)
    enc_ref = tf.tile(encoder_reference_points(shapes)[:, -n:], [images.shape[0], 1, 1, 1])
    loc, attw = tr.encoder_layers[0].self_attn.sampling(query, enc_ref, shapes)
    arrays.update({f"enc0_sampling_locations_l{last}": loc.numpy(),
                   f"enc0_attention_weights_l{last}": attw.numpy()})
    arrays.update({k: v.numpy() for k, v in result.items()})
    picked = readout(result["pred_logits"], result["pred_coords"])
    arrays.update({f"readout_{k}": picked[k].numpy() for k in ("query", "scores", "coords")})
    msda = ("msda_value", "msda_spatial_shapes", "msda_sampling_locations",
            "msda_attention_weights")
    if expected is not None and all(k in expected for k in msda):
        value, shapes, loc, attw = (expected[k] for k in msda)
        arrays["msda_output"] = ms_deform_attn_core(
            value.astype(np.float32), [tuple(int(v) for v in s) for s in shapes],
            sampling_locations=loc.astype(np.float32),
            attention_weights=attw.astype(np.float32)).numpy()
    return arrays, [row]


run_deformable.reads_expected = True  # msda_* inputs are in the expected arrays


RUNNERS = {"prtr-two-stage": run_two_stage, "detr": run_detr,
           "imagenet-backbone": run_imagenet_backbone,
           "prtr-deformable": run_deformable,
           "deformable-detr": run_deformable_detr}
# The arrays compared relative to their largest magnitude, by format (True: every one).
RELATIVE_ARRAYS = {"imagenet-backbone": True}
# Formats whose every listed array must be compared (an array not computed fails).
COMPLETE = ("imagenet-backbone",)
# Formats run a second time with frozen BatchNorm folded into the convolutions (as
# inference and export run them, `prtr_tf.checkpoints.weights.load_model`): these arrays again.
FOLDED = {"prtr-two-stage": ("backbone_features", "pred_logits", "pred_coords",
                             "readout_query", "readout_coords"),
          "detr": ("backbone_features", "pred_logits", "pred_boxes")}


def compare(expected, actual, tolerance=TOLERANCE, relative=RELATIVE):
    """Rows (name, max|Δ| or a note, ok[, detail]) for every array present in both;
    ``relative``: the names compared relative to max|ref| (True: all)."""
    rows = []
    for name, ref in expected.items():
        if name not in actual:
            continue
        got = np.asarray(actual[name])
        if got.shape != ref.shape:
            rows.append((name, f"shape {got.shape} != {ref.shape}", False, ""))
        elif name.endswith("_query") or ref.dtype.kind in "iub":
            diff = int(np.sum(got != ref))
            rows.append((name, f"{diff} differ" if diff else "identical", diff == 0, ""))
        else:
            delta = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
            if relative is True or name in relative:
                scale = max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
                rows.append((name, delta, delta / scale <= tolerance,
                             f" (relative to max|ref| {scale:.3g}: {delta / scale:.2e})"))
            else:
                rows.append((name, delta, delta <= tolerance, ""))
    return rows


def check(manifest_path, tolerance=TOLERANCE, out=sys.stdout):
    """Runs one fixture; returns True when every compared array is within tolerance."""
    manifest, state_dict, inputs, expected = load_fixture(manifest_path)
    fmt = manifest["format"]
    if fmt not in RUNNERS:
        raise FixtureError(f"{manifest_path}: unsupported format {fmt!r} "
                           f"(supported: {', '.join(sorted(RUNNERS))})")
    runner = RUNNERS[fmt]  # a runner with ``reads_expected`` also gets the expected arrays
    actual = (runner(manifest, state_dict, inputs, expected=expected)
              if getattr(runner, "reads_expected", False) else runner(manifest, state_dict, inputs))
    actual, checks = actual if isinstance(actual, tuple) else (actual, [])
    rows = compare(expected, actual, tolerance, RELATIVE_ARRAYS.get(fmt, RELATIVE))
    skipped = sorted(set(expected) - {r[0] for r in rows})
    if fmt in FOLDED and str(manifest["model"].get("backbone", "")).startswith("resnet"):
        folded = RUNNERS[fmt](manifest, state_dict, inputs, fold=True)
        rows += [(f"folded {r[0]}",) + tuple(r[1:]) for r in compare(
            {k: expected[k] for k in FOLDED[fmt] if k in expected}, folded, tolerance,
            RELATIVE_ARRAYS.get(fmt, RELATIVE))]
    if fmt in COMPLETE:
        rows += [(name, "not computed", False, "") for name in skipped]
        skipped = []
    print(f"{os.path.basename(manifest_path)} ({fmt}, {manifest['model'].get('backbone')})",
          file=out)
    for name, value, ok, detail in rows:
        shown = f"{value:.3e}" if isinstance(value, float) else value
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<20} max|Δ| {shown}{detail}", file=out)
    for name, note, ok, detail in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<20} {note}{detail}", file=out)
    rows += checks
    if skipped:
        print(f"  (not compared: {', '.join(skipped)})", file=out)
    passed = bool(rows) and all(row[2] for row in rows)
    print(f"  => {'PASS' if passed else 'FAIL'} (tolerance {tolerance:g})", file=out)
    return passed


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m tools.parity",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("fixtures", nargs="+", help="fixture manifests (NAME.json)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="max |Δ| allowed on every float array (default 1e-4)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    status = 0
    for path in args.fixtures:
        try:
            if not check(path, args.tolerance):
                status = max(status, 1)
        except FixtureError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
