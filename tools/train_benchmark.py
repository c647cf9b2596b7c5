"""CPU training-throughput benchmark of prtr-tf: train steps, input pipeline, matcher
share (`run_train_benchmark`; the command line is ``benchmarks/train_benchmark.py``,
`tools.benchmark`).

Measures, on this machine:

1. Training steps/s and crops/s of ``Trainer.train_step`` (forward, Hungarian matching,
   set loss, gradient, TwoGroupAdamW) for ``configs/synthetic_tiny.py`` and for
   ``configs/coco_res50_384x288.py`` (official R50, 384x288 crops) at small batches.
   The first ``warmup`` steps (the first one traces and compiles) are excluded; the
   figure is the median over ``tiny_steps``/``r50_steps`` steps of the wall time of
   one ``train_step`` call, synchronised by ``float(loss)``. The tf.data pipeline runs
   concurrently, as in training.
2. Input-pipeline images/s alone: ``build_dataset(records, config, training=True,
   batch=...)`` iterated without the model, for the 128x96 and 384x288 crops (the
   official R50 augmentation), at each ``pipeline_parallel`` setting of
   ``config.data.num_parallel_calls``, on the synthetic set and, with ``coco_root``,
   on real COCO images (a folder with ``person_keypoints.json`` and ``images/``, read
   only). Also crops per CPU-second of this process ("per core"): the number of cores
   an accelerator needs for feeding is its crops/s divided by this.
3. The share of the step in the matcher: `prtr_tf.models.keypoint.loss.match_outputs`
   (matching cost in TF + one ``tf.numpy_function`` over all decoder layers) inside a
   ``tf.function``, on real model outputs of the benchmarked shapes (B, Q, J+1 per
   layer, L layers); the NumPy body alone (`prtr_tf.nn.hungarian.solve`); and the
   bare scipy ``linear_sum_assignment`` calls alone. Reported in ms and as % of the
   median step.

The training rows use the synthetic images (``data_root``, by default the
repository's ``data/synthetic``, the same set as ``configs/synthetic_tiny.py``,
generated on first use) as data; ``precision`` and ``xla`` of `bench_train` serve the
GPU check (`tools.gpu_check`).

The report is markdown tables (`tools.train_report.markdown`). Other processes
on the machine distort the numbers: each measurement records the load average before and after, and the cores
other processes kept busy meanwhile (`prtr_tf.training.timing.CpuMeter`); a
measurement made while they kept more than ``busy_threshold`` cores busy is repeated
(``retries``, `prtr_tf.training.timing.Retry`) and the least contended one is reported,
with a warning at the end if it was still contended.
"""
import dataclasses
import os
import shutil
import sys
import tempfile
import time

from prtr_tf.training.timing import CpuMeter, Retry, load, median_ms
from tools.train_report import markdown

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout
SYNTHETIC_ROOT = os.path.join(REPO, "data", "synthetic")
STRATEGIES = ("auto", "mirrored", "multiworker", "default")
PARTS = ("train", "pipeline", "matcher")


@dataclasses.dataclass
class Options:
    """What `run_train_benchmark` measures (see the module docstring); the defaults
    are the command line's."""
    tiny_steps: int = 100  # measured steps of synthetic_tiny (0 skips its training row)
    r50_steps: int = 12  # measured steps of R50 per batch size (0 skips its rows)
    warmup: int = 3  # steps excluded before measuring; the first compiles
    tiny_batch: int = 16  # synthetic_tiny batch size (as in the config)
    r50_batches: tuple = (4, 8)  # R50 batch sizes to measure (() skips R50)
    pipeline_batch: int = 16  # batch of the input-pipeline-alone measurement
    pipeline_batches: int = 100  # measured batches of the input-pipeline measurement
    matcher_reps: int = 200  # repetitions of each matcher timing
    strategy: str = "auto"  # tf.distribute strategy, as train.py --strategy
    retries: int = 2  # measure again while contended (module docstring)
    busy_threshold: float = 0.25  # cores busy elsewhere above which to measure again
    retry_wait: float = 10.0  # seconds to wait before measuring again
    skip: tuple = ()  # parts of PARTS to skip (the matcher share needs "train")
    pipeline_parallel: tuple = (-1,)  # config.data.num_parallel_calls (-1: AUTOTUNE)
    coco_root: str = ""  # also measure the pipeline on these COCO images (read only)
    output: str = ""  # also write the markdown to this file
    data_root: str = SYNTHETIC_ROOT  # the synthetic data (generated on first use)

    def __post_init__(self):
        self.r50_batches = tuple(int(b) for b in self.r50_batches)
        self.pipeline_parallel = tuple(int(p) for p in self.pipeline_parallel)
        bad = [p for p in self.pipeline_parallel if p == 0 or p < -1]
        if bad or not self.pipeline_parallel:
            raise ValueError(f"pipeline_parallel: expected numbers >= 1 or -1 (AUTOTUNE), "
                             f"got {list(self.pipeline_parallel)}")
        if self.coco_root and not os.path.isfile(
                os.path.join(self.coco_root, "person_keypoints.json")):
            raise ValueError(f"coco_root={self.coco_root!r}: expected a folder with "
                             "person_keypoints.json and images/")
        self.skip = tuple(self.skip)
        bad = [p for p in self.skip if p not in PARTS]
        if bad:
            raise ValueError(f"skip: unknown part(s) {bad}; choose from {', '.join(PARTS)}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")


# ---------------------------------------------------------------- configs

def tiny_config(batch, data_root=SYNTHETIC_ROOT):
    from prtr_tf.config import load_config
    c = load_config("synthetic_tiny")
    c.data.root = data_root
    c.train.batch_size = batch
    return c


def r50_config(batch, data_root=SYNTHETIC_ROOT):
    from prtr_tf.config import load_config
    c = load_config("coco_res50_384x288")
    c.data.root = data_root
    c.data.train_ann = "train/person_keypoints.json"
    c.data.train_images = "train/images"
    c.data.val_ann = "val/person_keypoints.json"
    c.data.val_images = "val/images"
    c.data.synthetic = {"train": (16, 1), "val": (40, 2)}
    c.train.batch_size = batch
    return c


def coco_r50_config(batch, coco_root):
    """The R50 384x288 config on a folder of COCO images (``person_keypoints.json``,
    ``images/``), e.g. coco_mini; nothing is written there."""
    c = r50_config(batch)
    c.data.root = coco_root
    c.data.train_ann = c.data.val_ann = "person_keypoints.json"
    c.data.train_images = c.data.val_images = "images"
    c.data.synthetic = None
    return c


def fmt_load(before, after):
    return f"{before:.2f} / {after:.2f}"


# ---------------------------------------------------------------- 1. train steps

class JitForward:
    """A model whose forward pass runs under XLA (``tf.function(jit_compile=True)``):
    what `bench_train`'s ``xla`` compiles. The Hungarian matcher (a
    ``tf.numpy_function``) and the loss terms stay outside, as XLA cannot hold a
    py-function; the backward pass of the forward is compiled with it."""

    def __init__(self, model):
        import tensorflow as tf
        self._model = model
        self._forward = tf.function(lambda images, training: model(images, training=training),
                                    jit_compile=True)

    def __call__(self, images, training=False):
        return self._forward(images, training=training)

    def __getattr__(self, name):
        return getattr(self._model, name)


def bench_train(name, config, steps, warmup, strategy, retry, log, precision=None,
                xla=False):
    """Median wall time of Trainer.train_step; returns a row dict and one real batch's
    outputs. ``precision``: as train.py --mixed_precision; ``xla``: the model's forward
    (and its gradient) under XLA (`JitForward`)."""
    import tensorflow as tf
    from prtr_tf.training.trainer import Trainer

    # One epoch covers every step of every try (steps_per_epoch only sizes take() and the
    # LR schedule).
    config.train.steps_per_epoch = warmup + steps * (1 + retry.retries)
    b = config.train.batch_size
    crop = "x".join(map(str, config.model.image_size))
    workdir = tempfile.mkdtemp(prefix="prtr_bench_")
    try:
        trainer = Trainer(config, workdir, strategy=strategy, mixed_precision=precision,
                          stream=open(os.devnull, "w"))
        if xla:
            trainer.model = JitForward(trainer.model)
        iterator = iter(trainer.epoch_dataset(0))
        t0 = time.perf_counter()
        for _ in range(warmup):
            float(trainer.train_step(iterator)["loss"])
        warm_s = time.perf_counter() - t0
        log(f"  {name} B={b}: {warmup} warm-up steps in {warm_s:.1f}s; measuring {steps} steps")

        def measure():
            before = load()
            times = []
            with CpuMeter() as meter:
                for _ in range(steps):
                    t = time.perf_counter()
                    float(trainer.train_step(iterator)["loss"])
                    times.append(time.perf_counter() - t)
            after = load()
            ms = median_ms(times)
            row = dict(name=name, crop=crop, batch=b, ms=ms, steps_s=1e3 / ms,
                       crops_s=b * 1e3 / ms, min_ms=1e3 * min(times), max_ms=1e3 * max(times),
                       n=steps, cpu=meter.own_cores, other=meter.other_cores, warm_s=warm_s,
                       load=fmt_load(before, after), precision=precision or "float32",
                       xla=bool(xla), skipped=(int(trainer.loss_scale.skipped.numpy())
                                               if trainer.loss_scale is not None else 0))
            log(f"    median {ms:.0f} ms/step ({row['steps_s']:.2f} steps/s, "
                f"{row['crops_s']:.1f} crops/s); cores busy {row['cpu']:.2f}, other "
                f"processes {row['other']:.2f}; load {row['load']}")
            return row

        row = retry(f"{name} B={b}", measure)
        # Real outputs of the model on one batch, for the matcher timing (shapes as trained).
        from prtr_tf.models.keypoint.data import build_dataset
        batch = next(iter(build_dataset(trainer.train_records, config, training=True,
                                        deterministic=True, batch=b, drop_remainder=True)))
        outputs = trainer.model._model(batch["image"], training=False) if xla else \
            trainer.model(batch["image"], training=False)
        outputs = {k: tf.identity(v) for k, v in outputs.items()}
        sample = (outputs, batch["target"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    row.update(L=1 + (outputs["aux_pred_logits"].shape[0] if "aux_pred_logits" in outputs
                      else 0),
               Q=outputs["pred_logits"].shape[1], J=outputs["pred_logits"].shape[2] - 1)
    return row, sample


# ---------------------------------------------------------------- 2. input pipeline

def bench_pipeline(name, config, batch, num_batches, retry, log, data="synthetic",
                   parallel=-1):
    """Crops/s of the training input pipeline alone at ``num_parallel_calls=parallel``,
    and crops per CPU-second of this process ('per core')."""
    from prtr_tf.models.keypoint.data import build_dataset
    from prtr_tf.data.splits import load_records

    config.data.num_parallel_calls = int(parallel)
    records = load_records(config, "train")
    ds = build_dataset(records, config, training=True, batch=batch).repeat()
    it = iter(ds)
    for _ in range(3):  # tracing, thread start-up, prefetch buffers
        next(it)["image"].numpy()
    crop = "x".join(map(str, config.model.image_size))
    what = f"pipeline {crop} {data} parallel={parallel}"

    def measure():
        before = load()
        t0, crops = time.perf_counter(), 0
        with CpuMeter() as meter:
            for _ in range(num_batches):  # a set smaller than a batch gives short batches
                crops += int(next(it)["image"].shape[0])
        total = time.perf_counter() - t0
        after = load()
        row = dict(name=name, crop=crop, batch=batch, n=num_batches, data=data,
                   parallel="AUTOTUNE" if parallel < 0 else str(parallel),
                   images_s=crops / total, ms_batch=1e3 * total / num_batches,
                   records=len(records), cpu=meter.own_cores, other=meter.other_cores,
                   per_core=crops / total / max(meter.own_cores, 1e-9),
                   load=fmt_load(before, after))
        log(f"  {what}: {row['images_s']:.0f} crops/s, {row['per_core']:.0f} per core; "
            f"cores busy {row['cpu']:.2f}, other processes {row['other']:.2f}; "
            f"load {row['load']}")
        return row

    return retry(what, measure)


# ---------------------------------------------------------------- 3. matcher

def bench_matcher(train_row, sample, config, reps, retry, log):
    import numpy as np
    import tensorflow as tf
    from scipy.optimize import linear_sum_assignment
    from prtr_tf.models.keypoint.loss import match_outputs, stack_layers
    from prtr_tf.models.keypoint.matcher import matching_cost
    from prtr_tf.nn import hungarian

    outputs, target = sample
    loss_cfg = config.loss

    @tf.function
    def match(outputs, target):
        return match_outputs(outputs, target, loss_cfg.cost_class, loss_cfg.cost_coord)

    def timed(fn, n):
        fn()  # trace / warm
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return median_ms(times)

    logits, coords = stack_layers(outputs)
    cost = matching_cost(logits, coords, target, loss_cfg.cost_class,
                         loss_cfg.cost_coord).numpy()
    flat = cost.astype(np.float64).reshape(-1, *cost.shape[-2:])

    def scipy_only():
        for c in flat:
            linear_sum_assignment(c)

    step = train_row["ms"]

    def measure():
        before = load()
        with CpuMeter() as meter:
            tf_ms = timed(lambda: match(outputs, target).numpy(), reps)
            body_ms = timed(lambda: hungarian.solve(cost), reps)
            scipy_ms = timed(scipy_only, reps)
        after = load()
        row = dict(name=train_row["name"], batch=train_row["batch"],
                   shape=f"L={train_row['L']}, B={train_row['batch']}, Q={train_row['Q']}, "
                         f"J+1={train_row['J'] + 1}",
                   problems=flat.shape[0], step_ms=step, tf_ms=tf_ms, body_ms=body_ms,
                   scipy_ms=scipy_ms, tf_pct=100 * tf_ms / step, body_pct=100 * body_ms / step,
                   scipy_pct=100 * scipy_ms / step, other=meter.other_cores,
                   load=fmt_load(before, after))
        log(f"  matcher {row['name']} B={row['batch']}: match_outputs {tf_ms:.2f} ms "
            f"({row['tf_pct']:.2f}% of step), NumPy body {body_ms:.2f} ms, scipy "
            f"{scipy_ms:.2f} ms; other processes {row['other']:.2f}")
        return row

    return retry(f"matcher {train_row['name']} B={train_row['batch']}", measure)


# ---------------------------------------------------------------- all parts

def run_train_benchmark(options, log=None):
    """Measures what ``options`` (an `Options`) asks for; progress lines go to ``log``
    (default: stderr). Returns the markdown report, also written to
    ``options.output`` when set."""
    o = options
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    load_start = load()  # before this process loads anything
    log(f"load average at start: {os.getloadavg()}")
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    from tools.machine import machine_info
    info = machine_info()
    if load_start > info["nproc"]:
        log(f"WARNING: 1-min load {load_start:.2f} exceeds the {info['nproc']} cores: "
            "numbers will be distorted by other processes")
    t_start = time.perf_counter()
    train_rows, pipe_rows, match_rows = [], [], []
    retry = Retry(o.retries, o.retry_wait, o.busy_threshold, log)
    configs = [("synthetic_tiny", tiny_config(o.tiny_batch, o.data_root), o.tiny_steps)
               ] if o.tiny_steps > 0 else []
    configs += [("coco_res50_384x288", r50_config(b, o.data_root), o.r50_steps)
                for b in o.r50_batches if o.r50_steps > 0]

    if "train" not in o.skip:
        log("1. training steps")
        for name, config, steps in configs:
            row, sample = bench_train(name, config, steps, o.warmup, o.strategy, retry, log)
            train_rows.append(row)
            if "matcher" not in o.skip:
                match_rows.append(bench_matcher(row, sample, config, o.matcher_reps,
                                                retry, log))
    if "pipeline" not in o.skip:
        log("2. input pipeline alone")
        runs = [("synthetic_tiny", "synthetic", lambda: tiny_config(o.tiny_batch, o.data_root)),
                ("coco_res50_384x288", "synthetic",
                 lambda: r50_config(o.pipeline_batch, o.data_root))]
        if o.coco_root:
            runs.append(("coco_res50_384x288", f"COCO ({os.path.basename(o.coco_root)})",
                         lambda: coco_r50_config(o.pipeline_batch, o.coco_root)))
        for name, data, make in runs:
            for parallel in o.pipeline_parallel:
                pipe_rows.append(bench_pipeline(name, make(), o.pipeline_batch,
                                                o.pipeline_batches, retry, log, data,
                                                parallel))
    load_end = load()
    busy = [r for r in train_rows + pipe_rows + match_rows if r["other"] > o.busy_threshold]
    if busy:
        log(f"WARNING: {len(busy)} measurement(s) ran while other processes kept "
            f"{max(r['other'] for r in busy):.2f} cores busy: rerun on a quieter machine")
    log(f"total {time.perf_counter() - t_start:.0f}s; load average at end: {os.getloadavg()}")
    text = markdown(info, train_rows, pipe_rows, match_rows, load_start, load_end, o)
    if o.output:
        with open(o.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return text


if __name__ == "__main__":  # python -m tools.train_benchmark
    from tools.benchmark import run_training
    run_training()
