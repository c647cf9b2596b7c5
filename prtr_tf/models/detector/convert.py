"""Import of official DETR checkpoints for the person detector (spec §8).

The paper initialises its person detector from the official 91-class COCO DETR,
keeping only the class-head rows of "person" (id 1) and no-object (the last row,
91): `reduce_to_person`. `prepare_detector` builds the configured DETR and does
the reduction when the checkpoint has the full head and the config wants persons.
"""
import numpy as np
from absl import logging

from prtr_tf.checkpoints.torch_import import strip_prefix
from prtr_tf.models.detector.config import COCO_PERSON
from prtr_tf.models.detector.model import build_detector

CLASS_HEAD = ("class_embed.weight", "class_embed.bias")


def num_class_rows(state_dict):
    """Rows of the checkpoint's class head (num_classes + 1)."""
    return int(np.shape(strip_prefix(dict(state_dict))["class_embed.weight"])[0])


def reduce_to_person(state_dict, person=COCO_PERSON):
    """Returns a copy whose class head keeps only the person and no-object rows.

    The head (K+1, d) becomes (2, d): row 0 = person (COCO id 1), row 1 = no-object
    (the last row, 91 for the official COCO DETR). Everything else is unchanged.
    """
    state_dict = strip_prefix(dict(state_dict))
    missing = [k for k in CLASS_HEAD if k not in state_dict]
    if missing:
        raise ValueError(f"not a DETR state_dict: {', '.join(missing)} missing")
    out = dict(state_dict)
    for key in CLASS_HEAD:
        value = state_dict[key]
        value = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
        if value.shape[0] <= person + 1:
            raise ValueError(f"{key} has {value.shape[0]} rows: not a multi-class COCO head")
        out[key] = value[[person, value.shape[0] - 1]]
    return out


def prepare_detector(model_config, state_dict):
    """(built DETR, state_dict to load into it); reduces a 91-class head to person."""

    model = build_detector(model_config)
    rows = num_class_rows(state_dict)
    if rows != model_config.num_classes + 1 and model_config.num_classes == 1 and rows == 92:
        state_dict = reduce_to_person(state_dict)
        logging.info("reduced the 91-class DETR head to person + no-object (rows %d and %d "
                     "of %d)", COCO_PERSON, rows - 1, rows)
    return model, state_dict
