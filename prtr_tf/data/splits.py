"""Records of a configured split: ``config.data`` -> the readers of this package.

Paths in ``config.data`` are relative to ``config.data.root``. A config with
``config.data.synthetic`` set generates its synthetic COCO-format data on first
use (`prtr_tf.data.synthetic`).
"""
import os

from prtr_tf.data.coco import load_coco_detections, load_coco_keypoints
from prtr_tf.data.keypoint_sets import category_ids
from prtr_tf.data.mpii import load_mpii


def split_paths(config, split):
    """(annotation file, image folder) of ``split`` ('train' or 'val')."""
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}: expected 'train' or 'val'")
    data = config.data
    ann = os.path.join(data.root, data[f"{split}_ann"])
    images = os.path.join(data.root, data[f"{split}_images"])
    return ann, images


def ensure_data(config, split):
    """Generates the synthetic split when the config asks for it; checks the files exist."""
    ann, images = split_paths(config, split)
    synthetic = config.data.get("synthetic")
    if synthetic:
        from prtr_tf.data.synthetic import ensure_synthetic
        num_images, seed = synthetic[split]
        ensure_synthetic(os.path.dirname(ann), num_images=num_images, seed=seed)
    if not os.path.exists(ann):
        raise FileNotFoundError(
            f"annotation file {ann} not found (config.data.root={config.data.root!r}, "
            f"config.data.{split}_ann={config.data[f'{split}_ann']!r}); see the README's "
            "'Data' section for the expected layout")
    return ann, images


def load_records(config, split, det_json=None, skip_counter=None):
    """Person records of ``split``; with ``det_json``, test records from detections."""
    ann, images = ensure_data(config, split)
    data, model = config.data, config.model
    skip = bool(data.skip_bad_samples)
    if data.dataset == "mpii":
        if det_json:
            raise ValueError("detections are for COCO; MPII is evaluated with its own boxes")
        return load_mpii(ann, images, model.num_joints, skip_bad=skip, skip_counter=skip_counter)
    cats = category_ids(config)
    if det_json:
        return load_coco_detections(det_json, ann, images, model.image_size, model.num_joints,
                                    image_thre=config.test.image_thre, skip_bad=skip,
                                    skip_counter=skip_counter, category_ids=cats)
    return load_coco_keypoints(ann, images, model.image_size, model.num_joints, skip_bad=skip,
                               skip_counter=skip_counter, category_ids=cats)
