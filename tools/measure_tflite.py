"""Held-out keypoint AP, file size and latency of every TFLite variant of a trained
keypoint model (fp32, fp16, dynamic-range int8, calibrated full-integer int8_full) with
XNNPACK and with the builtin kernels, against the Keras model itself
(`tools.tflite_accuracy.measure_variants`).

    python tools/measure_tflite.py --workdir runs/demo/keypoints \\
        --output runs/demo/tflite_accuracy.md

AP: pycocotools on the ground-truth boxes of --split (the demo's 100 held-out images),
the same crops, readout and COCO evaluation as training's validation. Latency: median
ms of one batch-1 interpreter call over the held-out crops, --threads threads, on
whatever else runs on the machine (the 1-min load and the cores other processes kept
busy are recorded per row: on a shared machine these are contended numbers).
"""
import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None):
    from prtr_tf.export.tflite.convert import QUANTIZATIONS
    from tools.tflite_accuracy import KERNELS
    p = argparse.ArgumentParser(prog="python tools/measure_tflite.py",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--workdir", required=True,
                   help="a trained keypoint workdir (its best.weights.h5, else "
                        "last.weights.h5), or a *.weights.h5 file; e.g. the demo's "
                        "WORKDIR/keypoints")
    p.add_argument("--config", default="demo_keypoints",
                   help="the config the model was trained with (file or name in configs/)")
    p.add_argument("--data_root", default=None,
                   help="config.data.root (None: the workdir's sibling 'data' folder "
                        "when there is one, the demo's layout WORKDIR/{data,keypoints}; "
                        "else the config's)")
    p.add_argument("--split", default="val", choices=["val", "train"],
                   help="the split scored (ground-truth boxes)")
    p.add_argument("--output", default=None,
                   help="markdown table written here; the rows as JSON lines next to it "
                        "(same name, .jsonl); None: printed only")
    p.add_argument("--models_dir", default=None,
                   help="keep the converted keypoints_{variant}.tflite (+ .json) here "
                        "(None: in tflite_models/ next to --output; without --output "
                        "not kept)")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads")
    p.add_argument("--quantizations", nargs="+", default=list(QUANTIZATIONS),
                   choices=QUANTIZATIONS, help="TFLite variants")
    p.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=KERNELS,
                   help="XNNPACK delegate and/or the builtin (reference) kernels")
    p.add_argument("--num_calibration", type=int, default=200,
                   help="int8_full: calibration crops (never the scored split)")
    p.add_argument("--calibration_data", default="train", choices=["train", "synthetic"],
                   help="int8_full: crops of the config's training set, or fresh "
                        "stick figures")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per interpreter")
    p.add_argument("--rounds", type=int, default=3,
                   help="latency: rounds of --calls calls of every variant in turn, after "
                        "the scoring (0: the scoring pass's median)")
    p.add_argument("--calls", type=int, default=30, help="latency: calls per variant a round")
    p.add_argument("--max_drop", type=float, default=0.5,
                   help="recommendation: the fastest variant at most this many AP points "
                        "below Keras")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from prtr_tf.cli.startup import import_tensorflow
    tf = import_tensorflow()
    tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)

    from prtr_tf.files import atomic
    from prtr_tf.checkpoints import weights
    from prtr_tf.config import load_config
    from tools import tflite_accuracy as ta

    config = load_config(args.config)
    root = args.data_root
    sibling = os.path.join(os.path.dirname(os.path.abspath(args.workdir.rstrip("/"))), "data")
    if root is None and os.path.isdir(sibling):
        root = sibling
    if root is not None:
        config.data.root = root
    model, config, file = weights.load_model(config, args.workdir)
    print(f"model: {file} ({args.config}); data: {config.data.root} ({args.split})",
          flush=True)
    models_dir = args.models_dir
    if models_dir is None and args.output:
        models_dir = os.path.join(os.path.dirname(os.path.abspath(args.output)), "tflite_models")
    rows = ta.measure_variants(model, config, args.split, quantizations=args.quantizations,
                               kernels=args.kernels, threads=args.threads,
                               flip_test=bool(config.test.flip_test),
                               num_calibration=args.num_calibration,
                               calibration_data=args.calibration_data, folder=models_dir,
                               warmup=args.warmup, rounds=args.rounds, calls=args.calls)
    table = ta.markdown_table(rows)
    best = ta.fastest_within(rows, args.max_drop)
    note = (f"Fastest within {args.max_drop} AP points of Keras: "
            + (f"{best['variant']} with {best['kernels']} ({best['ms_per_crop']:.2f} "
               f"ms/crop, AP delta {best['AP_delta']:+.2f})" if best else "none"))
    text = (f"{table}\n\n{note}\n\nHeld-out crops: {rows[0]['crops']} ({args.split}, "
            f"ground-truth boxes); latency: batch 1, {args.threads} threads, median of "
            + (f"{args.rounds} x {args.calls} calls per variant, interleaved"
               if args.rounds and args.calls else "the scoring pass's calls")
            + ", on a shared machine (see loadavg / others_cores in the JSON lines).\n")
    print("\n" + text, flush=True)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        atomic.write_text(args.output, text)
        jsonl = os.path.splitext(args.output)[0] + ".jsonl"
        atomic.write_text(jsonl, "".join(json.dumps(dict(row, weights=file, split=args.split))
                                         + "\n" for row in rows))
        print(f"wrote {args.output} and {jsonl}" +
              (f"; models in {models_dir}" if models_dir else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
