"""Representative crops for the "int8_full" TFLite export: the inputs on which the
converter calibrates the activation ranges (`prtr_tf.export.tflite.convert`)."""
import os
import tempfile

import numpy as np

from prtr_tf.data.coco import load_coco_keypoints
from prtr_tf.models.keypoint.data import build_eval_dataset
from prtr_tf.data.splits import load_records

CALIBRATION_SOURCES = ("train", "synthetic")


def representative_crops(config, num, source="train", seed=0):
    """float32 (num, H, W, 3) normalised crops for "int8_full" calibration: person
    boxes (ground truth, ``num`` of them drawn at random) cropped by the evaluation
    pipeline (`build_eval_dataset`: no augmentation), from

    * "train": the config's training set (`prtr_tf.data.splits.load_records`; a
      synthetic config's data are generated on first use);
    * "synthetic": freshly drawn stick-figure images (`prtr_tf.data.synthetic`, in a
      temporary folder), for when the real data are not at hand (COCO joints).
    """

    if source not in CALIBRATION_SOURCES:
        raise ValueError(f"calibration source must be one of {CALIBRATION_SOURCES}, got "
                         f"{source!r}")
    if num < 1:
        raise ValueError(f"the number of calibration crops must be >= 1, got {num}")
    with tempfile.TemporaryDirectory() as tmp:
        if source == "train":
            records = load_records(config, "train")
        else:
            from prtr_tf.data.synthetic import generate
            ann = generate(tmp, num_images=max(1, (num + 1) // 2), seed=seed, progress=False)
            records = load_coco_keypoints(ann, os.path.join(os.path.dirname(ann), "images"),
                                          tuple(config.model.image_size))
        if not records:
            raise ValueError(f"no person boxes for calibration in the {source!r} data")
        order = np.random.RandomState(seed).permutation(len(records))[:num]
        records = [records[i] for i in order]
        crops = [b["image"].numpy() for b in build_eval_dataset(records, config, batch=32)]
    return np.concatenate(crops).astype(np.float32)
