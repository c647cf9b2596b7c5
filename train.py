"""Trains a PRTR keypoint model.

    python train.py --config=configs/coco_res50_384x288.py --workdir=runs/res50
    python train.py --config=configs/synthetic_tiny.py --workdir=runs/tiny \
        --config.train.epochs=3

Any config field can be overridden with --config.FIELD=VALUE. Re-running with the
same --workdir resumes from its last checkpoint. Several machines: set TF_CONFIG
on each worker (MultiWorkerMirroredStrategy is chosen when it lists >1 worker).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder: checkpoints, metrics.csv, "
                               "TensorBoard logs, best.weights.h5. Reused to resume.")
_STRATEGY = flags.DEFINE_enum("strategy", "auto", ["auto", "mirrored", "multiworker", "default"],
                              "Distribution: auto = MultiWorkerMirrored if TF_CONFIG lists "
                              "several workers, else Mirrored over local GPUs (or CPU).")
_MIXED = flags.DEFINE_enum("mixed_precision", "float32", ["float32", "bfloat16", "float16"],
                           "Compute dtype (variables stay float32).")
_MAX_STEPS = flags.DEFINE_integer("max_steps", None, "Stop after this many steps (debugging).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None or not _WORKDIR.value:
        raise app.UsageError("--config and --workdir are required")
    from prtr_tf.nn.torch_import import CheckpointMismatchError
    from prtr_tf.training.trainer import Trainer
    try:
        trainer = Trainer(_CONFIG.value, _WORKDIR.value, strategy=_STRATEGY.value,
                          mixed_precision=_MIXED.value)
        trainer.fit(max_steps=_MAX_STEPS.value)
    except (FileNotFoundError, ValueError, CheckpointMismatchError, FloatingPointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)
