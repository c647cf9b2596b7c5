"""`make demo`: train the tiny PRTR on the embedded synthetic set and report its AP.

    python -m prtr_tf.demo [--workdir runs/demo] [--epochs N]

Everything is local: the synthetic multi-person set (COCO format) is generated
on first use into data/synthetic, the tiny two-stage keypoint model trains on it
on the CPU for a few minutes (re-running resumes or, when finished, only
evaluates), and the COCO keypoint AP with ground-truth boxes is printed, with and
without the flip test.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m prtr_tf.demo", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--workdir", default="runs/demo", help="checkpoints, logs, results")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: configs/synthetic_tiny.py)")
    args = parser.parse_args(argv)

    from prtr_tf.config import load_config
    from prtr_tf.evaluation.coco import format_table
    from prtr_tf.training.trainer import Trainer
    from prtr_tf.validate import validate

    config = load_config("synthetic_tiny")
    if args.epochs is not None:
        config.train.epochs = args.epochs
    print("== PRTR demo: tiny two-stage keypoint Transformer on synthetic multi-person "
          "images ==", flush=True)
    t0 = time.time()
    trainer = Trainer(config, args.workdir)
    trainer.fit()
    print(f"training done in {time.time() - t0:.0f}s; evaluating the last epoch's model",
          flush=True)
    rows = {}
    for split, label in (("train", "training images"), ("val", "held-out images")):
        stats = validate(trainer.model, config, split, flip_test=False,
                         results_path=os.path.join(args.workdir, f"results_{split}.json"))
        rows[f"{label}, GT boxes"] = stats
    print()
    print("COCO keypoint metrics of the tiny PRTR on synthetic images (%):")
    header = None
    for name, stats in rows.items():
        table = format_table(stats, name=name).splitlines()
        if header is None:
            header = table[:2]
            print("\n".join(header))
        print(table[-1])
    print(f"\nworkdir: {args.workdir} (metrics.csv, TensorBoard logs, weights, results JSON)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
