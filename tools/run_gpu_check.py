"""The GPU check: GPU-relevant tests, R50 384x288 training steps at batch 32 in float32 /
bfloat16 / float16 with and without XLA, the input-pipeline rate and the inference
benchmark, within 8 minutes; writes benchmarks/gpu.md (`tools.gpu_check`).

    pip install -e '.[gpu]'
    tools/gpu_check.sh                     # on a machine with an NVIDIA GPU
    tools/gpu_check.sh --cpu_smoke --output=/tmp/smoke.md   # the same code, CPU, tiny

Without a GPU it says so and exits with status 2, measuring nothing (gpu.md is left as
it is). Exit status 1: a part failed or was left out (the report says which).
"""
from prtr_tf.cli import common


def define_flags():
    from absl import flags

    from tools.gpu_check import Options
    d = Options()
    return dict(
        cpu_smoke=flags.DEFINE_bool("cpu_smoke", False, "run the same code paths on the "
                                    "CPU at tiny sizes (the tiny model, 2 steps); needs "
                                    "--output"),
        output=flags.DEFINE_string("output", None, f"the report (default {d.output})"),
        budget_s=flags.DEFINE_float("budget_s", d.budget_s, "seconds; parts start only "
                                    "while they last"),
    )


def main(argv, f):
    if len(argv) > 1:
        raise common.usage_error(f"unexpected arguments: {argv[1:]}")
    from tools.gpu_check import DEFAULT_OUTPUT, Options, run_gpu_check, smoke_options
    v = common.values(f)
    output = v["output"] or DEFAULT_OUTPUT
    try:
        options = (smoke_options(output, budget_s=v["budget_s"]) if v["cpu_smoke"]
                   else Options(output=output, budget_s=v["budget_s"]))
    except ValueError as e:
        raise common.usage_error(f"--{e}") from None
    return run_gpu_check(options)


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
