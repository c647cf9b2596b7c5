"""Keypoints from crops: model -> readout -> flip test -> original image coordinates.

`predict_crops` is the in-graph part (usable in exported models); `predict_dataset`
runs it over an evaluation dataset (`prtr_tf.models.keypoint.data.build_eval_dataset`)
and collects NumPy arrays for the COCO / MPII evaluation.
"""
import weakref

import numpy as np
import tensorflow as tf

from prtr_tf.data.keypoint_sets import flip_permutation
from prtr_tf.models.keypoint.readout import readout


def predict_crops(model, images, flip_pairs=None, return_query=False):
    """Per-joint crop coordinates (B, J, 2), normalised to [0, 1], and scores (B, J).

    With ``flip_pairs`` (spec §6) the mirrored crops go through the model too
    (`read_crops`). ``return_query`` adds the readout's query per joint (B, J) (of the
    unflipped crop).
    """
    out = model(images, training=False)
    flipped = None
    if flip_pairs is not None:
        flipped = model(tf.reverse(images, axis=[2]), training=False)
    return read_crops(out, flipped, flip_pairs, return_query)


def read_crops(outputs, flipped_outputs=None, flip_pairs=None, return_query=False):
    """The readout of model outputs (pred_logits, pred_coords), with the flip test when
    ``flipped_outputs`` (of the mirrored crops) and ``flip_pairs`` are given: their
    readout's x mapped back with 1 - x (no -1 pixel term, as the official code), its
    left/right rows swapped, and coordinates and scores averaged with the unflipped
    ones. Returns (coords (B, J, 2), scores (B, J)) [+ query (B, J)]."""
    result = readout(outputs["pred_logits"], outputs["pred_coords"])
    coords, scores = result["coords"], result["scores"]
    if flip_pairs is not None:
        back = readout(flipped_outputs["pred_logits"], flipped_outputs["pred_coords"])
        perm = flip_permutation(coords.shape[1], flip_pairs)
        fc = tf.gather(back["coords"], perm, axis=1)
        fc = tf.stack([1.0 - fc[..., 0], fc[..., 1]], axis=-1)
        coords = (coords + fc) / 2.0
        scores = (scores + tf.gather(back["scores"], perm, axis=1)) / 2.0
    if return_query:
        return coords, scores, result["query"]
    return coords, scores


def crop_to_image(coords, center, scale, image_size_hw, pixel_std=200.0):
    """Normalised crop coordinates (B, J, 2) -> original image pixels (rotation 0).

    The inverse of the test-time affine (spec §5.2): p = c + (q - (W/2, H/2)) * 200 s_x / W
    with q = coords * (W, H).
    """
    h, w = image_size_hw
    size = tf.constant([w, h], coords.dtype)
    q = coords * size
    ratio = tf.cast(scale[:, 0] * pixel_std / w, coords.dtype)[:, None, None]
    return tf.cast(center, coords.dtype)[:, None, :] + (q - size / 2.0) * ratio


# {model: {(image size, flip pairs, pixel_std): tf.function}}: one traced step per model
# and setting, so that the evaluation after every training epoch does not trace the
# model and the readout's loop again (measured: ~3 s of each of the demo's evaluations).
_STEPS = weakref.WeakKeyDictionary()


def _dataset_step(model, image_size_hw, flip_pairs, pixel_std):
    steps = _STEPS.setdefault(model, {})
    key = (image_size_hw, flip_pairs, float(pixel_std))
    if key not in steps:
        ref = weakref.ref(model)  # the cache must not keep the model alive

        @tf.function(reduce_retracing=True)
        def step(images, center, scale):
            coords, scores = predict_crops(ref(), images, flip_pairs)
            xy = crop_to_image(coords, center, scale, image_size_hw, pixel_std)
            return tf.concat([xy, scores[..., None]], axis=-1)
        steps[key] = step
    return steps[key]


def predict_dataset(model, dataset, image_size_hw, flip_pairs=None, pixel_std=200.0,
                    progress=None):
    """Runs over batched eval elements; returns NumPy arrays.

    Returns a dict: keypoints (N, J, 3) [x, y, score] in image pixels, center (N, 2),
    scale (N, 2), box_score (N,), image_id (N,), index (N,) (the record each row
    belongs to; records whose image could not be read are absent).
    """
    step = _dataset_step(model, tuple(image_size_hw),
                         None if flip_pairs is None else tuple(map(tuple, flip_pairs)),
                         pixel_std)
    meta = ("center", "scale", "box_score", "image_id", "index")
    parts = {k: [] for k in ("keypoints",) + meta}
    for batch in dataset:
        parts["keypoints"].append(step(batch["image"], batch["center"], batch["scale"]).numpy())
        for key in meta:
            parts[key].append(batch[key].numpy())
        if progress is not None:
            progress(len(batch["image_id"]))
    if not parts["keypoints"]:
        j = model.num_joints
        return {"keypoints": np.zeros((0, j, 3), np.float32), "center": np.zeros((0, 2)),
                "scale": np.zeros((0, 2)), "box_score": np.zeros((0,)),
                "image_id": np.zeros((0,), np.int64), "index": np.zeros((0,), np.int64)}
    return {k: np.concatenate(v) for k, v in parts.items()}
