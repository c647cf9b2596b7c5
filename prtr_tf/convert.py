"""Converts an official PyTorch PRTR two-stage checkpoint into a Keras checkpoint.

    python -m prtr_tf.convert --config=configs/coco_res50_384x288.py \
        --checkpoint=pose_transformer_res50_384x288.pth --output=res50_384x288.weights.h5

The checkpoint is a state_dict saved by the official code (``.pth``, read with
torch: ``pip install 'prtr-tf[torch]'``) or an ``.npz`` holding the same names.
Every tensor must match the configured model: unknown, missing or mis-shaped
tensors stop the conversion with the list of names. The output is a Keras
weights file (``.weights.h5``) for ``prtr_tf.keypoint.model.build_model(config.model)``.

Detector configs (``config.model.kind == "detr"``, e.g. configs/detr_r50_person.py)
take official DETR checkpoints and give weights for
``prtr_tf.detector.model.build_detector(config.model)``; a 91-class COCO head is reduced
to person + no-object when the config has ``num_classes=1``.
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

def convert(config, checkpoint_path, output_path, overwrite=False):
    """Builds the configured model, imports the official weights, saves them.

    Returns the built Keras model (with the imported weights).
    """
    from prtr_tf.nn.torch_import import load_state_dict, read_state_dict
    from prtr_tf.keypoint.model import build_model

    if not output_path.endswith(".weights.h5"):
        raise ValueError(f"--output {output_path!r} must end with .weights.h5")
    if os.path.exists(output_path) and not overwrite:
        raise FileExistsError(f"{output_path} exists; pass --overwrite to replace it")
    state_dict = read_state_dict(checkpoint_path)
    if config.model.get("kind", "prtr") == "detr":  # a DETR person detector (spec §8)
        from prtr_tf.detector.convert import prepare_detector
        model, state_dict = prepare_detector(config.model, state_dict)
    else:
        model = build_model(config.model)
    count = load_state_dict(model, state_dict)
    folder = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(folder, exist_ok=True)
    model.save_weights(output_path)
    logging.info("imported %d tensors from %s into %s", count, checkpoint_path, output_path)
    return model


def define_flags():
    """Command-line flags; defined only by `run` (importing this module defines none)."""
    return dict(
        config=config_flags.DEFINE_config_file(
            "config", None, "Config file of the checkpoint's configuration, e.g. "
            "configs/coco_res50_384x288.py (overrides: --config.model.num_queries=...).",
            lock_config=False),
        checkpoint=flags.DEFINE_string("checkpoint", None, "Official state_dict: .pth or .npz."),
        output=flags.DEFINE_string("output", None, "Output Keras weights file (*.weights.h5)."),
        overwrite=flags.DEFINE_bool("overwrite", False, "Replace --output if it exists."),
    )


def main(argv, f):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config, checkpoint, output = f["config"].value, f["checkpoint"].value, f["output"].value
    missing = [n for n, v in (("--config", config), ("--checkpoint", checkpoint),
                              ("--output", output)) if not v]
    if missing:
        raise app.UsageError(f"missing {', '.join(missing)}")
    from prtr_tf.nn.torch_import import CheckpointMismatchError
    try:
        convert(config, checkpoint, output, f["overwrite"].value)
    except (CheckpointMismatchError, FileNotFoundError, FileExistsError, ImportError,
            ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {output}")
    return 0


def run():
    f = define_flags()
    app.run(lambda argv: main(argv, f))


if __name__ == "__main__":
    run()
