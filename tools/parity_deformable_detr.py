"""The ``deformable-detr`` runner of `tools.parity` (kept apart: parity.py stays short).

Fixture-independent: it builds the Deformable DETR the manifest's ``model`` describes,
imports the manifest's state_dict through the family's official import (head copies
checked, `prtr_tf.models.detector.deformable`), pads the manifest's images into one batch
and returns what the model computes under the fixture's array names; the top-k
postprocess results are compared by the README's rule (`topk_rows`), not element-wise.
"""
import numpy as np
import tensorflow as tf

from prtr_tf.models.detector.deformable import FAMILY, deformable_detector
from prtr_tf.nn.deformable_position import valid_ratio
from prtr_tf.checkpoints.deformable_import import OfficialWeightsError

MODEL_FIELDS = ("hidden_dim", "nheads", "enc_layers", "dec_layers", "dim_feedforward",
                "num_queries", "num_feature_levels", "enc_n_points", "dec_n_points")


def topk_rows(name, got, ref, tie=1e-5, box_tol=0.05):
    """The README's rule for a top-k postprocess. ``got`` / ``ref``: dicts of ``query``
    (B, k), ``labels`` (B, k) or None, ``boxes`` (B, k, 4) pixels, ``scores`` (B, k)
    (compared rank by rank elsewhere). At every rank above the last tie group (scores
    within ``tie`` of the k-th), the (query, label) pair must be one of the reference's
    pairs whose score is within ``tie`` of that rank's: order swaps between near-equal
    scores and a different k-th place pass; boxes of common pairs within ``box_tol`` px.
    One row (name, note, ok, detail)."""
    bad, worst = [], 0.0
    for b in range(ref["scores"].shape[0]):
        s = np.asarray(ref["scores"][b])
        n = int(np.sum(s - s[-1] >= tie))   # ranks above the last tie group

        def pairs(d):
            labels = d.get("labels")
            return [(int(d["query"][b][i]), -1 if labels is None else int(labels[b][i]))
                    for i in range(len(s))]
        mine, theirs = pairs(got), pairs(ref)
        for i in range(n):   # rank i: one of the reference's pairs tied with rank i
            if mine[i] not in {theirs[j] for j in np.flatnonzero(np.abs(s - s[i]) < tie)}:
                bad.append(f"image {b} rank {i}: {mine[i]} not {theirs[i]}")
                break
        boxes = dict(zip(theirs, ref["boxes"][b]))
        for pair, box in zip(mine, got["boxes"][b]):
            if pair in boxes:
                worst = max(worst, float(np.abs(box - boxes[pair]).max()))
    ok = not bad and worst <= box_tol
    return (name, "same sets" if not bad else "DIFFER", ok,
            f": boxes max|Δ| {worst:.3e} px (tolerance {box_tol})" + "; ".join([""] + bad))


def pad_nchw(images):
    """Zero-pad (C, H, W) images bottom/right to the largest H, W: NHWC batch, mask
    (True on padding), unpadded sizes (B, 2) (h, w)."""
    h = max(im.shape[1] for im in images)
    w = max(im.shape[2] for im in images)
    batch = np.zeros((len(images), h, w, images[0].shape[0]), np.float32)
    mask = np.ones((len(images), h, w), bool)
    for i, im in enumerate(images):
        batch[i, :im.shape[1], :im.shape[2]] = np.transpose(im, (1, 2, 0))
        mask[i, :im.shape[1], :im.shape[2]] = False
    return batch, mask, np.array([im.shape[1:] for im in images])


def run_deformable_detr(manifest, state_dict, inputs, expected=None):
    """Official Deformable DETR outputs: per-level masks, valid ratios, reference points,
    pred_* / aux_*, the postprocess scores (rank by rank); with ``expected``, the
    postprocess and person-only (query, label) sets and boxes as `topk_rows` rows."""
    m = manifest["model"]
    config = deformable_detector(m["backbone"], m["num_classes"],
                                 model_overrides={k: m[k] for k in MODEL_FIELDS if k in m})
    config.model.person_row = int(m.get("person_class_index", 1))
    try:
        model, sd = FAMILY.prepare_official(config.model, state_dict)
        copied = model.load_official(sd)
    except OfficialWeightsError as e:
        return {}, [("tensors", "import failed", False, f": {e}")]
    rows = [("tensors", "every tensor used", len(state_dict) - len(sd) + len(copied)
             == len(manifest["tensors"]), f": {len(copied)} copied, {len(state_dict) - len(sd)}"
             " per-layer head copies checked equal to copy 0")]
    batch, mask, sizes = pad_nchw([inputs[spec["name"]] for spec in manifest["inputs"]])
    images, mask = tf.constant(batch), tf.constant(mask)
    out = model(images, mask=mask, training=False)
    _, masks = model.features(images, mask)
    arrays = {f"mask_l{i}": np.asarray(v) for i, v in enumerate(masks)}
    arrays.update(mask=mask.numpy(), valid_ratios=np.stack(
        [valid_ratio(v).numpy() for v in masks], 1), reference_points=model.transformer
        .decoder_inputs(model.query_embed.embeddings, len(sizes))[2].numpy())
    arrays.update({k: v.numpy() for k, v in out.items()})
    person = int(m.get("person_class_index", 1))
    for prefix, classes in (("postprocess", None), ("person", [person])):
        ref = {n: (expected or {}).get(f"{prefix}_{n}")
               for n in ("scores", "labels", "query", "boxes")}
        k = 100 if ref["scores"] is None else ref["scores"].shape[1]
        got = {n: v.numpy() for n, v in model.postprocess(out, sizes, k, classes).items()}
        arrays[f"{prefix}_scores"] = got["scores"]
        if ref["query"] is not None:
            if ref["labels"] is None:
                got["labels"] = None
            rows.append(topk_rows(f"{prefix} sets", got, ref))
    return arrays, rows


run_deformable_detr.reads_expected = True
