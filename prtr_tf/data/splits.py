"""Records of a configured split: ``config.data`` -> the readers of this package.

Paths in ``config.data`` are relative to ``config.data.root``. A config with
``config.data.synthetic`` set has generated COCO-format data (`prtr_tf.data.synthetic`):
`generate_synthetic` makes it, an explicit step that training and the demo take;
reading a split never generates anything.
"""
import os

from prtr_tf.data.coco import load_coco_detections, load_coco_keypoints
from prtr_tf.data.keypoint_sets import category_ids
from prtr_tf.data.mpii import load_mpii
from prtr_tf.data.synthetic import ensure_synthetic


def split_paths(config, split):
    """(annotation file, image folder) of ``split`` ('train' or 'val')."""
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}: expected 'train' or 'val'")
    data = config.data
    ann = os.path.join(data.root, data[f"{split}_ann"])
    images = os.path.join(data.root, data[f"{split}_images"])
    return ann, images


def generate_synthetic(config):
    """Generates every split of a synthetic config (``config.data.synthetic``) that is
    missing or was made with other settings; nothing for other configs."""
    synthetic = config.data.get("synthetic")
    if not synthetic:
        return
    for split in ("train", "val"):
        ann, _ = split_paths(config, split)
        num_images, seed = synthetic[split]
        ensure_synthetic(os.path.dirname(ann), num_images=num_images, seed=seed)


def split_files(config, split):
    """(annotation file, image folder) of ``split``, checked to exist."""
    ann, images = split_paths(config, split)
    if not os.path.exists(ann):
        hint = ("it is generated data: training generates it (or python -m "
                "prtr_tf.data.synthetic)" if config.data.get("synthetic") else
                "see the README's 'Data' section (docs/data.md) for the expected layout")
        raise FileNotFoundError(
            f"annotation file {ann} not found (config.data.root={config.data.root!r}, "
            f"config.data.{split}_ann={config.data[f'{split}_ann']!r}); {hint}")
    return ann, images


def load_records(config, split, det_json=None, skip_counter=None):
    """Person records of ``split``; with ``det_json``, test records from detections
    (every detection's image id must be an image of ``split``: a ValueError otherwise)."""
    ann, images = split_files(config, split)
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
                                    skip_counter=skip_counter, category_ids=cats,
                                    split=split)
    return load_coco_keypoints(ann, images, model.image_size, model.num_joints, skip_bad=skip,
                               skip_counter=skip_counter, category_ids=cats)


def check_image_files(config, records, split="train", shown=3):
    """A FileNotFoundError unless the image file of every record of ``split`` exists
    (one ``os.path.exists`` per file, before any pipeline is built): it names how many
    of the split's files are missing, the first ``shown`` and the ``config.data``
    fields that point there. Even a few missing files are an error (training skips
    undecodable files, `config.data.skip_bad_samples`, but a missing one means a
    wrong folder or an incomplete copy: fix the data, or drop their annotations)."""
    paths = sorted({os.fspath(r["image_path"]) for r in records})
    missing = [p for p in paths if not os.path.exists(p)]
    if not missing:
        return
    data = config.data
    folder = os.path.join(data.root, data[f"{split}_images"])
    where = ("the image folder does not exist" if not os.path.isdir(folder)
             else "the image folder exists")
    raise FileNotFoundError(
        f"{len(missing)} of the {len(paths)} image files of the {split} split are missing "
        f"(e.g. {', '.join(missing[:shown])}); {where}: {folder} (config.data.root="
        f"{data.root!r}, config.data.{split}_images={data[f'{split}_images']!r}, listed in "
        f"config.data.{split}_ann={data[f'{split}_ann']!r}). Point config.data.root and "
        f"config.data.{split}_images at the folder of the images, or complete the copy")
