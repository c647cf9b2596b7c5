"""Data shared by the model families: dataset readers, keypoint sets, crop geometry,
image decoding and robust loading in tf.data, and a synthetic dataset. Each family's
own input pipeline lives in its folder (`prtr_tf.models.keypoint.data` for crops,
`prtr_tf.models.detector.data` for whole images).

    records = load_coco_keypoints(ann_file, image_dir, config.model.image_size)
    print(records[0]["joints"])

Modules: `coco` and `mpii` (readers -> records), `keypoint_sets` (joints, sigmas, flip
pairs), `keypoint_file` (custom sets' files), `transforms` (box -> center/scale, affine
matrices and warps), `image` (decoding, normalisation, robust loading), `skips`
(counting bad samples), `synthetic` (stick-figure dataset generator), `splits` (records
of a configured split).
"""
import importlib

# Imported lazily (PEP 562) so that ``python -m prtr_tf.data.synthetic`` does not load
# TensorFlow.
_EXPORTS = {
    "SkipCounter": "skips",
    "load_coco_detections": "coco", "load_coco_keypoints": "coco", "load_mpii": "mpii",
    "load_records": "splits", "ensure_synthetic": "synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"prtr_tf.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'prtr_tf.data' has no attribute {name!r}")
