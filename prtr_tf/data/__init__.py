"""Data: dataset readers, crop geometry, the tf.data pipeline and a synthetic dataset.

    records = load_coco_keypoints(ann_file, image_dir, config.model.image_size)
    ds = build_dataset(records, config, training=True, batch=32)
    for batch in ds: ...                                 # dict of tensors (see pipeline)
    print(ds.skip_counter)                               # bad image files skipped

Modules: `coco` and `mpii` (readers -> records), `transforms` (box -> center/scale,
affine matrices and warps), `pipeline` (tf.data), `skips` (counting bad samples),
`synthetic` (stick-figure dataset generator), `splits` (records of a configured split).
"""
import importlib

# Imported lazily (PEP 562) so that ``python -m prtr_tf.data.synthetic`` does not load
# TensorFlow.
_EXPORTS = {
    "SkipCounter": "skips", "build_dataset": "pipeline", "build_eval_dataset": "pipeline",
    "load_coco_detections": "coco", "load_coco_keypoints": "coco", "load_mpii": "mpii",
    "load_records": "splits", "ensure_synthetic": "synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"prtr_tf.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'prtr_tf.data' has no attribute {name!r}")
