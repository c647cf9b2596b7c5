"""Converts an official PyTorch checkpoint (PRTR two-stage, DETR) into Keras weights.

    python -m prtr_tf.convert --config=configs/coco_res50_384x288.py \\
        --checkpoint=pose_transformer_res50_384x288.pth --output=res50_384x288.weights.h5

The checkpoint is a state_dict saved by the official code (``.pth``, read with
torch: ``pip install 'prtr-tf[torch]'``) or an ``.npz`` holding the same names.
Every tensor must match the configured model: unknown, missing or mis-shaped
tensors stop the conversion with the list of names. The output is a Keras weights
file (``.weights.h5``) for the config's model (`prtr_tf.registry.build_model`).

Detector configs (e.g. configs/detr_r50_person.py) take official DETR checkpoints; a
91-class COCO head is reduced to person + no-object when the config has
``num_classes=1``. The command line is `prtr_tf.cli.convert` (``prtr-convert``).
"""
import os

from absl import logging


def convert(config, checkpoint_path, output_path, overwrite=False):
    """Builds the configured model, imports the official weights, saves them
    (atomically: a killed conversion leaves no half-written file).

    Returns the built Keras model (with the imported weights).
    """
    from prtr_tf import atomic, registry
    from prtr_tf.nn.torch_import import load_state_dict, read_state_dict

    if not output_path.endswith(".weights.h5"):
        raise ValueError(f"--output {output_path!r} must end with .weights.h5")
    if os.path.exists(output_path) and not overwrite:
        raise FileExistsError(f"{output_path} exists; pass --overwrite to replace it")
    state_dict = read_state_dict(checkpoint_path)
    model, state_dict = registry.get(config).import_official(config.model, state_dict)
    count = load_state_dict(model, state_dict)
    atomic.save_weights(model, output_path)
    logging.info("imported %d tensors from %s into %s", count, checkpoint_path, output_path)
    return model


if __name__ == "__main__":
    from prtr_tf.cli.convert import run
    run()
