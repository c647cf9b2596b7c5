"""The GPU check of ``tools/gpu_check.sh`` (`run_gpu_check`): what a user with a GPU
runs after ``pip install -e '.[gpu]'``, within 8 minutes, writing ``benchmarks/gpu.md``.

1. **Tests** that exercise the GPU (`GPU_TESTS`: float16 loss scaling and bfloat16
   under the default MirroredStrategy, low-precision loss inputs, the XLA-compiled
   loss, the model), as ``pytest`` in a subprocess.
2. **Training steps** of R50 384x288 at batch 32 on one GPU (`Trainer.train_step`,
   `tools.train_benchmark.bench_train`, synthetic images) in float32,
   bfloat16 and float16, each without and with XLA on the model's forward pass and its
   gradient (`tools.train_benchmark.JitForward`; the Hungarian matcher is a
   ``tf.numpy_function`` and stays outside XLA with the loss terms around it).
3. **Input pipeline**: crops/s of the training pipeline alone (official R50
   augmentation, AUTOTUNE), per core, and the cores that feed the fastest step of 2.
4. **Inference**: ``python -m tools.benchmark`` (`tools.inference_benchmark`) on the GPU, tf.function
   and XLA at batch 1 and 32.

Each part starts only while the budget (``budget_s``, 480 s) lasts; parts it leaves
out are listed as such. Without a GPU it says so and measures nothing (exit status
`NO_GPU`, ``gpu.md`` unchanged): a CPU is not what this check is for. ``cpu_smoke``
runs the same code on the CPU at tiny sizes (the tiny model, few steps; the tests use
it), writing its report where ``output`` says. Exit status 0 when every part ran and
the tests passed, 1 otherwise (the report is written in both cases).
"""
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time

from prtr_tf.files import atomic
from tools import train_benchmark as tb

REPO = tb.REPO
DEFAULT_OUTPUT = os.path.join(REPO, "benchmarks", "gpu.md")
NO_GPU = 2
GPU_TESTS = (
    "tests/training/test_mixed_precision.py",
    "tests/training/test_trainer.py::test_bfloat16_mixed_precision_trains_with_float32_variables",
    "tests/keypoint/test_matcher_loss.py::test_low_precision_inputs_computed_in_float32",
    "tests/keypoint/test_matcher_loss.py::test_split_matching_and_jit_compiled_loss",
    "tests/keypoint/test_model.py",
)
SMOKE_TESTS = ("tests/training/test_warmup.py",)  # quick: the subprocess path only
PRECISIONS = ("float32", "bfloat16", "float16")


@dataclasses.dataclass
class Options:
    """What `run_gpu_check` does; the defaults are the GPU check's."""
    cpu_smoke: bool = False  # the same code on the CPU at tiny sizes (for tests)
    output: str = DEFAULT_OUTPUT  # the report (markdown, written atomically)
    budget_s: float = 480.0  # parts start only while this lasts
    precisions: tuple = PRECISIONS
    xla: tuple = (False, True)  # each precision without / with XLA on the forward
    rows: tuple = ()  # (precision, xla) pairs instead of every precision x xla
    batch: int = 32
    steps: int = 10  # measured training steps per row
    warmup: int = 3  # excluded steps (the first traces and compiles)
    tests: tuple = GPU_TESTS
    tests_timeout_s: float = 200.0
    pipeline_batches: int = 30
    data_root: str = tb.SYNTHETIC_ROOT

    def __post_init__(self):
        self.precisions = tuple(self.precisions)
        self.xla = tuple(bool(x) for x in self.xla)
        self.rows = tuple((p, bool(x)) for p, x in self.rows) or tuple(
            (p, x) for p in self.precisions for x in self.xla)
        bad = [p for p, _ in self.rows if p not in PRECISIONS]
        if bad:
            raise ValueError(f"precisions: unknown {bad}; choose from {', '.join(PRECISIONS)}")
        if self.cpu_smoke and self.output == DEFAULT_OUTPUT:
            raise ValueError("output: name a file for the --cpu_smoke report (CPU figures "
                             f"do not belong in {DEFAULT_OUTPUT})")


def smoke_options(output, **overrides):
    """The tiny CPU run of the tests: one training row (float16 + XLA: the loss scale and
    `JitForward` on top of the plain step), one quick test, the tiny model's inference."""
    fields = dict(cpu_smoke=True, output=output, rows=(("float16", True),),
                  batch=4, steps=2, warmup=1, tests=SMOKE_TESTS,
                  tests_timeout_s=300.0, pipeline_batches=5)
    fields.update(overrides)
    return Options(**fields)


def gpus():
    """(names of the visible GPUs, a reason when there is none)."""
    import tensorflow as tf
    devices = tf.config.list_physical_devices("GPU")
    if devices:
        names = []
        for d in devices:
            details = tf.config.experimental.get_device_details(d)
            cc = details.get("compute_capability")
            names.append(f"{details.get('device_name', d.name)}"
                         + (f" (compute capability {cc[0]}.{cc[1]})" if cc else ""))
        return names, ""
    build = tf.sysconfig.get_build_info()
    reason = (f"tf.config.list_physical_devices('GPU') is empty (TensorFlow {tf.__version__}, "
              f"built with CUDA: {bool(build.get('is_cuda_build'))}). Install the GPU build "
              "with pip install -e '.[gpu]' on a machine with an NVIDIA GPU and driver "
              "(nvidia-smi lists it); TensorFlow's log above says why it found none.")
    return [], reason


class _Budget:
    def __init__(self, seconds):
        self.seconds, self.start = seconds, time.perf_counter()

    def left(self):
        return self.seconds - (time.perf_counter() - self.start)

    def elapsed(self):
        return time.perf_counter() - self.start


def run_tests(options, budget, log):
    timeout = max(30.0, min(options.tests_timeout_s, budget.left()))
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           *options.tests]
    log(f"1. tests: {' '.join(cmd[3:])} (timeout {timeout:.0f}s)")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
        summary, ok = (lines[-1] if lines else "no output"), proc.returncode == 0
        if not ok:
            log(proc.stdout[-3000:] + proc.stderr[-2000:])
    except subprocess.TimeoutExpired:
        summary, ok = f"stopped after {timeout:.0f}s (timeout)", False
    log(f"   {summary}")
    return dict(command="python " + " ".join(cmd[1:]), summary=summary, ok=ok,
                seconds=time.perf_counter() - t0)


def train_config(options):
    if options.cpu_smoke:
        return "synthetic_tiny", tb.tiny_config(options.batch, options.data_root)
    return "coco_res50_384x288", tb.r50_config(options.batch, options.data_root)


def run_training(options, budget, log, num_gpus):
    """Each (precision, XLA) row; on one GPU ("auto": MirroredStrategy over it, as
    train.py), or the first of several (the default strategy)."""
    import tensorflow as tf
    gpu, strategy = num_gpus > 0, ("default" if num_gpus > 1 else "auto")
    retry = tb.Retry(0, 0.0, float("inf"), log)  # no contention retries: one GPU run each
    rows, left_out = [], []
    for precision, xla in options.rows:
        label = f"{precision}{' + XLA' if xla else ''}"
        if budget.left() < 30:
            left_out.append(label)
            continue
        name, config = train_config(options)
        log(f"2. training {name} B={options.batch} {label}")
        if gpu:
            tf.config.experimental.reset_memory_stats("GPU:0")
        try:
            row, _ = tb.bench_train(name, config, options.steps, options.warmup, strategy,
                                    retry, log, precision=precision, xla=xla)
            row["peak_gib"] = (tf.config.experimental.get_memory_info("GPU:0")["peak"]
                               / 2**30 if gpu else None)
        except tf.errors.ResourceExhaustedError:
            row = dict(name=name, precision=precision, xla=xla, batch=options.batch,
                       error="out of GPU memory at this batch")
        except Exception as e:  # noqa: BLE001 - the report says which row failed
            row = dict(name=name, precision=precision, xla=xla, batch=options.batch,
                       error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        if "error" in row:
            log(f"   FAILED: {row['error']}")
        rows.append(row)
    import keras
    keras.mixed_precision.set_global_policy("float32")
    return rows, left_out


def run_pipeline(options, budget, log):
    if budget.left() < 20:
        return None
    name, config = train_config(options)
    log("3. input pipeline alone")
    retry = tb.Retry(0, 0.0, float("inf"), log)
    return tb.bench_pipeline(name, config, options.batch, options.pipeline_batches, retry,
                             log, "synthetic", -1)


def run_inference(options, budget, log):
    if budget.left() < 30:
        return None, "not run: the budget was used up"
    work = tempfile.mkdtemp(prefix="prtr_gpu_check_")
    out = os.path.join(work, "inference.jsonl")
    args = (["--config=tiny", "--formats=function", "--batches=1", "--repeats=1",
             "--warmup=0"] if options.cpu_smoke else
            ["--config=coco_res50_384x288", "--formats=function,xla", "--batches=1,32",
             "--repeats=10", "--slow_repeats=5", "--warmup=2"])
    cmd = [sys.executable, "-m", "tools.benchmark", *args,
           f"--workdir={work}", f"--output={out}"]
    log(f"4. inference: {' '.join(cmd[1:])}")
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                              timeout=max(30.0, budget.left()),
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    except subprocess.TimeoutExpired:
        return None, "stopped: the budget was used up"
    if proc.returncode != 0 or not os.path.exists(out):
        return None, f"failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}"
    with open(out) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if "format" in r], ""


def report(options, gpu_names, tests, train_rows, left_out, pipe, inference, budget):
    from tools.machine import machine_info
    import tensorflow as tf
    info = machine_info()
    build = tf.sysconfig.get_build_info()
    out = ["# GPU check" + (" (CPU smoke run: tiny sizes, not GPU figures)"
                            if options.cpu_smoke else ""), ""]
    out.append(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
               "`tools/gpu_check.sh` (`tools/gpu_check.py`) in "
               f"{budget.elapsed():.0f} s (budget {options.budget_s:.0f} s).")
    out.append("")
    out.append(f"- GPU: {', '.join(gpu_names) or 'none (CPU smoke run)'}")
    out.append(f"- TensorFlow {info['tensorflow']} (CUDA {build.get('cuda_version', '-')}, "
               f"cuDNN {build.get('cudnn_version', '-')}), Keras {info['keras']}, "
               f"Python {info['python']}")
    out.append(f"- CPU: {info['nproc']} cores, {info['cpu']}")
    out.append("")
    out.append("## 1. Tests")
    out.append("")
    if tests:
        out.append(f"`{tests['command']}`: **{'passed' if tests['ok'] else 'FAILED'}** "
                   f"({tests['summary']}; {tests['seconds']:.0f} s)")
    out.append("")
    out.append(f"## 2. Training steps, batch {options.batch}, one device")
    out.append("")
    out.append("`Trainer.train_step` (forward, Hungarian matching, set loss, gradient, "
               "clipped two-group AdamW; the input pipeline runs concurrently), median of "
               f"{options.steps} steps after {options.warmup} excluded. XLA: the model's "
               "forward pass and its gradient under `jit_compile` (the matcher, a "
               "`numpy_function`, and the loss terms around it are not compiled).")
    out.append("")
    out.append("| config | precision | XLA | ms/step | crops/s | warm-up s | float16 skipped "
               "steps | peak GPU memory GiB |")
    out.append("|---|---|---|---:|---:|---:|---:|---:|")
    for r in train_rows:
        if "error" in r:
            out.append(f"| {r['name']} | {r['precision']} | {'yes' if r['xla'] else 'no'} | "
                       f"{r['error']} | | | | |")
            continue
        peak = "-" if r.get("peak_gib") is None else f"{r['peak_gib']:.2f}"
        out.append(f"| {r['name']} | {r['precision']} | {'yes' if r['xla'] else 'no'} | "
                   f"{r['ms']:.1f} | {r['crops_s']:.1f} | {r['warm_s']:.1f} | {r['skipped']} "
                   f"| {peak} |")
    for label in left_out:
        out.append(f"| | {label} | | not run: the budget was used up | | | | |")
    out.append("")
    out.append("## 3. Input pipeline alone (official augmentation, AUTOTUNE)")
    out.append("")
    best = max((r["crops_s"] for r in train_rows if "crops_s" in r), default=None)
    if pipe:
        out.append(f"{pipe['images_s']:.0f} crops/s at {pipe['crop']} on {pipe['cpu']:.2f} "
                   f"busy cores: {pipe['per_core']:.0f} crops/s per core (synthetic images; "
                   "COCO's larger JPEGs decode more slowly).")
        if best:
            out.append(f"The fastest training row above consumes {best:.0f} crops/s: about "
                       f"{best / pipe['per_core']:.1f} cores of input pipeline per GPU.")
    else:
        out.append("not run: the budget was used up")
    out.append("")
    out.append("## 4. Inference (`python -m tools.benchmark`, random weights, readout "
               "included)")
    out.append("")
    rows, note = inference
    if rows:
        out.append("| format | batch | median ms/batch | ms/crop |")
        out.append("|---|---:|---:|---:|")
        for r in rows:
            out.append(f"| {r['format']} | {r['batch']} | {r['median_ms']:.1f} | "
                       f"{r['per_item_ms']:.2f} |")
    else:
        out.append(note)
    return "\n".join(out) + "\n"


def run_gpu_check(options, log=None):
    """Runs the check (module docstring); returns the exit status (0, 1 or `NO_GPU`)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    budget = _Budget(options.budget_s)
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    names, reason = gpus()
    if not names and not options.cpu_smoke:
        print(f"no GPU visible to TensorFlow: {reason} Nothing was measured; "
              f"{options.output} is unchanged.", flush=True)
        return NO_GPU
    log(f"GPU: {', '.join(names) or 'none (CPU smoke run)'}; budget {options.budget_s:.0f}s")
    tests = run_tests(options, budget, log)
    train_rows, left_out = run_training(options, budget, log, len(names))
    pipe = run_pipeline(options, budget, log)
    inference = run_inference(options, budget, log)
    text = report(options, names, tests, train_rows, left_out, pipe, inference, budget)
    atomic.write_text(options.output, text)
    log(f"wrote {options.output} after {budget.elapsed():.0f}s")
    ok = (tests["ok"] and not left_out and pipe is not None and inference[0]
          and not any("error" in r for r in train_rows))
    return 0 if ok else 1
