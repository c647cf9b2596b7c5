r"""The two benchmarks' command lines: CPU inference latency in every export format
(`run_inference`, ``python -m tools.benchmark``; `tools.inference_benchmark`) and CPU
training throughput (`run_training`, ``python -m tools.train_benchmark``;
`tools.train_benchmark`). Run from the checkout (tools/ is not installed).

    python -m tools.benchmark --formats=all --batches=1,8 --repeats=5 --slow_repeats=3 \
        --output=benchmarks/results.json
    python -m tools.train_benchmark # under 2 minutes on a quiet 2-core CPU
    python -m tools.train_benchmark --r50_batches=4 --skip=pipeline,matcher

List flags take comma-separated values (``--r50_batches=4,8``, ``--r50_batches=``
for none, ``--skip=pipeline,matcher``).
"""
from prtr_tf.cli import common


def _ints(name, values):
    try:
        return [int(v) for v in values]
    except ValueError:
        raise common.usage_error(f"--{name}: expected comma-separated integers, got "
                                 f"{','.join(values)!r}") from None


def _options(options_class, **fields):
    """``options_class(**fields)``; its ValueError (a message starting with the field
    name, which is the flag's) is a usage error."""
    try:
        return options_class(**fields)
    except ValueError as e:
        raise common.usage_error(f"--{e}") from None


def _no_arguments(argv):
    if len(argv) > 1:
        raise common.usage_error(f"unexpected arguments: {argv[1:]}")


# ---------------------------------------------------------------- inference

def define_inference_flags():
    from absl import flags

    from tools.inference_benchmark import FORMATS, Options
    d = Options()
    return dict(
        config=flags.DEFINE_string("config", d.config, "keypoint config"),
        detector_config=flags.DEFINE_string("detector_config", d.detector_config,
                                            "detector config"),
        formats=flags.DEFINE_list("formats", "all", "comma-separated subset of: "
                                  + ", ".join(FORMATS) + " (or 'all')"),
        batches=flags.DEFINE_list("batches", ",".join(map(str, d.batches)),
                                  "keypoint batch sizes"),
        repeats=flags.DEFINE_integer("repeats", d.repeats, "timed runs"),
        slow_repeats=flags.DEFINE_integer("slow_repeats", d.slow_repeats,
                                          "timed runs for eager and for batches > 1"),
        warmup=flags.DEFINE_integer("warmup", d.warmup, "untimed runs first"),
        threads=flags.DEFINE_integer("threads", d.threads, "CPU threads for TF (intra-op), "
                                     "TFLite and ONNX Runtime"),
        xnnpack=flags.DEFINE_bool("xnnpack", d.xnnpack, "TFLite with the XNNPACK delegate "
                                  "(as prtr_tf.export.tflite.runtime.run_tflite); "
                                  "--noxnnpack: the builtin kernels"),
        num_calibration=flags.DEFINE_integer(
            "num_calibration", d.num_calibration, "tflite_int8_full: calibration crops "
            "(prtr-export tflite's default is 200)"),
        calibration_data=flags.DEFINE_enum(
            "calibration_data", d.calibration_data, ["synthetic", "train"],
            "tflite_int8_full: crops of generated stick figures or of the config's "
            "training set"),
        det_test_size=flags.DEFINE_integer("det_test_size", d.det_test_size,
                                           "detector shortest side"),
        det_max_size=flags.DEFINE_integer("det_max_size", d.det_max_size,
                                          "detector longest side cap"),
        image_size=flags.DEFINE_list("image_size", ",".join(map(str, d.image_size)),
                                     "H,W of the synthetic pipeline image"),
        persons=flags.DEFINE_integer("persons", d.persons,
                                     "persons kept per image in the pipeline (top boxes)"),
        workdir=flags.DEFINE_string("workdir", d.workdir, "where exported models go "
                                    "(default: a temporary directory)"),
        output=flags.DEFINE_string("output", d.output, "append results as JSON lines here"),
        seed=flags.DEFINE_integer("seed", d.seed, "random seed of the weights and inputs"),
        fold=flags.DEFINE_bool("fold", d.fold, "fold frozen BatchNorm into the convolutions "
                               "(as prtr_tf.checkpoints.weights.load_model does for inference and "
                               "export); --nofold times the unfolded graph"),
    )


def main_inference(argv, f):
    from tools.inference_benchmark import FORMATS, Options, run_benchmark
    _no_arguments(argv)
    v = common.values(f)
    formats = [s for s in v["formats"] if s]
    v.update(formats=list(FORMATS) if formats == ["all"] else formats,
             batches=_ints("batches", v["batches"]),
             image_size=_ints("image_size", v["image_size"]))
    run_benchmark(_options(Options, **v))
    return 0


def run_inference():
    common.run(define_inference_flags, main_inference)


# ---------------------------------------------------------------- training

def define_training_flags():
    from absl import flags

    from tools.train_benchmark import PARTS, STRATEGIES, Options
    d = Options()
    return dict(
        tiny_steps=flags.DEFINE_integer("tiny_steps", d.tiny_steps, "measured steps of "
                                        "synthetic_tiny (0 skips its training row)"),
        r50_steps=flags.DEFINE_integer("r50_steps", d.r50_steps, "measured steps of R50 "
                                       "per batch size (0 skips its rows)"),
        warmup=flags.DEFINE_integer("warmup", d.warmup, "steps excluded before measuring; "
                                    "the first compiles"),
        tiny_batch=flags.DEFINE_integer("tiny_batch", d.tiny_batch, "synthetic_tiny batch "
                                        "size (as in the config)"),
        r50_batches=flags.DEFINE_list("r50_batches", ",".join(map(str, d.r50_batches)),
                                      "R50 batch sizes to measure (none to skip R50)"),
        pipeline_batch=flags.DEFINE_integer("pipeline_batch", d.pipeline_batch, "batch of "
                                            "the input-pipeline-alone measurement"),
        pipeline_batches=flags.DEFINE_integer("pipeline_batches", d.pipeline_batches,
                                              "measured batches of the input-pipeline "
                                              "measurement"),
        matcher_reps=flags.DEFINE_integer("matcher_reps", d.matcher_reps,
                                          "repetitions of each matcher timing"),
        strategy=flags.DEFINE_enum("strategy", d.strategy, list(STRATEGIES),
                                   "tf.distribute strategy, as train.py --strategy"),
        retries=flags.DEFINE_integer(
            "retries", d.retries, "measure again (up to this many times) when other "
            "processes kept more than --busy_threshold cores busy meanwhile; the least "
            "contended measurement is reported"),
        busy_threshold=flags.DEFINE_float("busy_threshold", d.busy_threshold,
                                          "cores busy in other processes above which a "
                                          "measurement is repeated"),
        retry_wait=flags.DEFINE_float("retry_wait", d.retry_wait,
                                      "seconds to wait before measuring again"),
        skip=flags.DEFINE_list("skip", ",".join(d.skip), "parts to skip, of "
                               + ", ".join(PARTS) + " (the matcher share needs the train "
                               "part)"),
        output=flags.DEFINE_string("output", d.output, "also write the markdown to this "
                                   "file"),
        data_root=flags.DEFINE_string("data_root", d.data_root, "the synthetic data set, "
                                      "generated there on first use"),
        pipeline_parallel=flags.DEFINE_list(
            "pipeline_parallel", ",".join(map(str, d.pipeline_parallel)),
            "config.data.num_parallel_calls values of the input-pipeline measurement "
            "(-1: AUTOTUNE), e.g. 1,2 for crops/s per core"),
        coco_root=flags.DEFINE_string("coco_root", d.coco_root, "also measure the input "
                                      "pipeline on the COCO images of this folder "
                                      "(person_keypoints.json, images/; read only)"),
    )


def main_training(argv, f):
    from tools.train_benchmark import Options, run_train_benchmark
    _no_arguments(argv)
    v = common.values(f)
    v.update(r50_batches=_ints("r50_batches", [s for s in v["r50_batches"] if s]),
             skip=[s for s in v["skip"] if s],
             pipeline_parallel=_ints("pipeline_parallel",
                                     [s for s in v["pipeline_parallel"] if s]))
    print(run_train_benchmark(_options(Options, **v)))
    return 0


def run_training():
    common.run(define_training_flags, main_training)


if __name__ == "__main__":
    run_inference()
