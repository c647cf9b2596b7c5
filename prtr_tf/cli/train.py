"""Trains a PRTR model: the keypoint Transformer, the DETR person detector or the
end-to-end PRTR (the config's kind).

    prtr-train --config=coco_res50_384x288 --workdir=runs/res50
    python train.py --config=configs/synthetic_tiny.py --workdir=runs/tiny \\
        --config.train.epochs=3

--config is a config file or the name of one in configs/; any config field can be
overridden with --config.FIELD=VALUE. Re-running with the same --workdir resumes
from its last checkpoint. Several machines: set TF_CONFIG on each worker
(MultiWorkerMirroredStrategy is chosen when it lists more than one worker).
"""
from prtr_tf.cli import common

REQUIRED = ("config", "workdir")  # marked in --help


def define_flags():
    from absl import flags
    from ml_collections import config_flags

    from prtr_tf.training.strategy import STRATEGIES
    return dict(
        config=config_flags.DEFINE_config_file(
            "config", None, "Config file or name in configs/ (e.g. synthetic_tiny).",
            lock_config=False),
        workdir=flags.DEFINE_string(
            "workdir", None, "Output folder: checkpoints, metrics.csv, TensorBoard logs, "
            "best.weights.h5, last.weights.h5. Reused to resume."),
        strategy=flags.DEFINE_enum(
            "strategy", "auto", list(STRATEGIES), "Distribution: auto = MultiWorkerMirrored "
            "if TF_CONFIG lists several workers, else Mirrored over local GPUs (or CPU)."),
        mixed_precision=flags.DEFINE_enum(
            "mixed_precision", "float32", ["float32", "bfloat16", "float16"],
            "Compute dtype (variables stay float32). float16 trains with a dynamic loss "
            "scale (config.train.loss_scale_initial, loss_scale_growth_steps); steps "
            "with a non-finite gradient are skipped and logged."),
        max_steps=flags.DEFINE_integer("max_steps", None, "Stop after this many more "
                                       "steps, with a checkpoint and last.weights.h5 (eval, "
                                       "predict and export take the workdir); the same "
                                       "command resumes."),
    )


def main(argv, f):
    if len(argv) > 1:
        raise common.usage_error(f"unexpected arguments: {argv[1:]}")
    v = common.values(f)
    if v["config"] is None or not v["workdir"]:
        raise common.usage_error("--config and --workdir are required")
    max_steps = common.check_number(v["max_steps"], "max_steps", 1, integer=True)
    from prtr_tf.config_checks import validate
    validate(v["config"])  # numeric fields finite and in range: a usage error otherwise
    from prtr_tf.training.trainer import train
    try:
        train(v["config"], v["workdir"], strategy=v["strategy"],
              mixed_precision=v["mixed_precision"],
              max_steps=max_steps)
    except FloatingPointError as e:
        raise common.UserError(str(e)) from e
    return 0


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
