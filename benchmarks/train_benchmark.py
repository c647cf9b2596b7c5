#!/usr/bin/env python
"""CPU training-throughput benchmark of prtr-tf: train steps, input pipeline, matcher share.

Measures, on this machine:

1. Training steps/s and crops/s of ``Trainer.train_step`` (forward, Hungarian matching,
   set loss, gradient, TwoGroupAdamW) for ``configs/synthetic_tiny.py`` and for
   ``configs/coco_res50_384x288.py`` (official R50, 384x288 crops) at small batches.
   The first ``--warmup`` steps (the first one traces and compiles) are excluded; the
   figure is the median over ``--tiny_steps``/``--r50_steps`` steps of the wall time of
   one ``train_step`` call, synchronised by ``float(loss)``. The tf.data pipeline runs
   concurrently, as in training.
2. Input-pipeline images/s alone: ``build_dataset(records, config, training=True,
   batch=...)`` iterated without the model, for the 128x96 and 384x288 crops.
3. The share of the step in the matcher: ``prtr_tf.keypoint.loss.match_outputs`` (matching cost
   in TF + one ``tf.numpy_function`` over all decoder layers) inside a ``tf.function``, on
   real model outputs of the benchmarked shapes (B, Q, J+1 per layer, L layers); the
   NumPy body alone (``linear_sum_assignment_batch``); and the bare scipy
   ``linear_sum_assignment`` calls alone. Reported in ms and as % of the median step.

There is no COCO here: the R50 runs use the synthetic images (``data/synthetic``, the
same set as ``configs/synthetic_tiny.py``, generated on first use) as data.

Example (under 2 minutes on a quiet 2-core CPU; retries can add about 3)::

    .venv/bin/python benchmarks/train_benchmark.py

Prints markdown tables (and writes them to ``--output`` if given). Other processes on
the machine distort the numbers: each measurement records the load average
(``os.getloadavg()``) before and after, and the cores other processes kept busy
meanwhile (from ``/proc/stat``); a measurement made while they kept more than
``--busy_threshold`` cores busy is repeated (``--retries``) and the least contended one
is reported, with a warning at the end if it was still contended.
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SYNTHETIC_ROOT = os.path.join(REPO, "data", "synthetic")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Benchmark prtr-tf training on this machine: train steps/s and crops/s "
                    "(synthetic_tiny and R50 384x288), input-pipeline images/s alone, and "
                    "the share of the step spent in the Hungarian matcher. Prints markdown "
                    "tables.")
    p.add_argument("--tiny_steps", type=int, default=100,
                   help="measured steps of synthetic_tiny (default 100; 0 skips its training row)")
    p.add_argument("--r50_steps", type=int, default=12,
                   help="measured steps of R50 per batch size (default 12; 0 skips its rows)")
    p.add_argument("--warmup", type=int, default=3,
                   help="steps excluded before measuring; the first compiles (default 3)")
    p.add_argument("--tiny_batch", type=int, default=16,
                   help="synthetic_tiny batch size (default 16, as in the config)")
    p.add_argument("--r50_batches", type=int, nargs="*", default=[4, 8],
                   help="R50 batch sizes to measure (default 4 8; none to skip R50)")
    p.add_argument("--pipeline_batch", type=int, default=16,
                   help="batch of the input-pipeline-alone measurement (default 16)")
    p.add_argument("--pipeline_batches", type=int, default=100,
                   help="measured batches of the input-pipeline measurement (default 100)")
    p.add_argument("--matcher_reps", type=int, default=200,
                   help="repetitions of each matcher timing (default 200)")
    p.add_argument("--strategy", default="auto",
                   choices=["auto", "mirrored", "multiworker", "default"],
                   help="tf.distribute strategy, as train.py --strategy (default auto)")
    p.add_argument("--retries", type=int, default=2,
                   help="measure again (up to this many times) when other processes kept "
                        "more than --busy_threshold cores busy meanwhile; the least "
                        "contended measurement is reported (default 2)")
    p.add_argument("--busy_threshold", type=float, default=0.25,
                   help="cores busy in other processes above which a measurement is "
                        "repeated (default 0.25)")
    p.add_argument("--retry_wait", type=float, default=10.0,
                   help="seconds to wait before measuring again (default 10)")
    p.add_argument("--skip", nargs="*", default=[], choices=["train", "pipeline", "matcher"],
                   help="parts to skip (the matcher share needs the train part)")
    p.add_argument("--output", default="", help="also write the markdown to this file")
    return p.parse_args(argv)


# ---------------------------------------------------------------- configs

def tiny_config(batch):
    from prtr_tf.config import load_config
    c = load_config("synthetic_tiny")
    c.data.root = SYNTHETIC_ROOT
    c.train.batch_size = batch
    return c


def r50_config(batch):
    from prtr_tf.config import load_config
    c = load_config("coco_res50_384x288")
    c.data.root = SYNTHETIC_ROOT
    c.data.train_ann = "train/person_keypoints.json"
    c.data.train_images = "train/images"
    c.data.val_ann = "val/person_keypoints.json"
    c.data.val_images = "val/images"
    c.data.synthetic = {"train": (16, 1), "val": (40, 2)}
    c.train.batch_size = batch
    return c


# ---------------------------------------------------------------- helpers

def load():
    return os.getloadavg()[0]


def cpu_seconds():
    """User + system CPU seconds of this process (all threads)."""
    t = os.times()
    return t.user + t.system


def machine_busy_seconds():
    """Busy CPU seconds of the whole machine, all cores (Linux /proc/stat); None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Cores kept busy by this process, and by everything else, over a measured interval."""

    def __enter__(self):
        self.wall, self.own, self.machine = (time.perf_counter(), cpu_seconds(),
                                             machine_busy_seconds())
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.wall
        self.own_cores = (cpu_seconds() - self.own) / wall
        machine = machine_busy_seconds()
        self.other_cores = (float("nan") if machine is None or self.machine is None
                            else max(0.0, (machine - self.machine) / wall - self.own_cores))
        return False


def fmt_load(before, after):
    return f"{before:.2f} / {after:.2f}"


def median_ms(times):
    return 1e3 * statistics.median(times)


# ---------------------------------------------------------------- retries

class Retry:
    """Repeats a measurement while other processes compete for the CPU.

    ``measure()`` returns a row with ``other`` (cores busy elsewhere meanwhile). It is
    repeated, after ``wait`` seconds, while ``other`` exceeds ``threshold``, at most
    ``retries`` more times; the least-contended row is kept, with ``runs`` set.
    """

    def __init__(self, retries, wait, threshold, log):
        self.retries, self.wait, self.threshold, self.log = retries, wait, threshold, log

    def __call__(self, what, measure):
        best = None
        for run in range(1 + self.retries):
            if run:
                self.log(f"    {what}: other processes kept {best['other']:.2f} cores busy; "
                         f"measuring again in {self.wait:.0f}s ({run + 1}/{1 + self.retries})")
                time.sleep(self.wait)
            row = measure()
            if best is None or row["other"] < best["other"]:
                best = row
            if not best["other"] > self.threshold:  # also stops on NaN (no /proc/stat)
                break
        best["runs"] = run + 1
        return best


# ---------------------------------------------------------------- 1. train steps

def bench_train(name, config, steps, warmup, strategy, retry, log):
    """Median wall time of Trainer.train_step; returns a row dict and one real batch's outputs."""
    import tensorflow as tf
    from prtr_tf.training.trainer import Trainer

    # One epoch covers every step of every try (steps_per_epoch only sizes take() and the
    # LR schedule).
    config.train.steps_per_epoch = warmup + steps * (1 + retry.retries)
    b = config.train.batch_size
    crop = "x".join(map(str, config.model.image_size))
    workdir = tempfile.mkdtemp(prefix="prtr_bench_")
    try:
        trainer = Trainer(config, workdir, strategy=strategy, stream=open(os.devnull, "w"))
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
                       load=fmt_load(before, after))
            log(f"    median {ms:.0f} ms/step ({row['steps_s']:.2f} steps/s, "
                f"{row['crops_s']:.1f} crops/s); cores busy {row['cpu']:.2f}, other "
                f"processes {row['other']:.2f}; load {row['load']}")
            return row

        row = retry(f"{name} B={b}", measure)
        # Real outputs of the model on one batch, for the matcher timing (shapes as trained).
        from prtr_tf.data.pipeline import build_dataset
        batch = next(iter(build_dataset(trainer.train_records, config, training=True,
                                        deterministic=True, batch=b, drop_remainder=True)))
        outputs = trainer.model(batch["image"], training=False)
        outputs = {k: tf.identity(v) for k, v in outputs.items()}
        sample = (outputs, batch["target"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    row.update(L=1 + (outputs["aux_pred_logits"].shape[0] if "aux_pred_logits" in outputs
                      else 0),
               Q=outputs["pred_logits"].shape[1], J=outputs["pred_logits"].shape[2] - 1)
    return row, sample


# ---------------------------------------------------------------- 2. input pipeline

def bench_pipeline(name, config, batch, num_batches, retry, log):
    from prtr_tf.data.pipeline import build_dataset
    from prtr_tf.data.splits import load_records

    records = load_records(config, "train")
    ds = build_dataset(records, config, training=True, batch=batch).repeat()
    it = iter(ds)
    for _ in range(3):  # tracing, thread start-up, prefetch buffers
        next(it)["image"].numpy()
    crop = "x".join(map(str, config.model.image_size))

    def measure():
        before = load()
        t0 = time.perf_counter()
        with CpuMeter() as meter:
            for _ in range(num_batches):
                next(it)["image"].numpy()
        total = time.perf_counter() - t0
        after = load()
        row = dict(name=name, crop=crop, batch=batch, n=num_batches,
                   images_s=batch * num_batches / total, ms_batch=1e3 * total / num_batches,
                   records=len(records), cpu=meter.own_cores, other=meter.other_cores,
                   load=fmt_load(before, after))
        log(f"  pipeline {crop}: {row['images_s']:.0f} images/s; cores busy {row['cpu']:.2f}, "
            f"other processes {row['other']:.2f}; load {row['load']}")
        return row

    return retry(f"pipeline {crop}", measure)


# ---------------------------------------------------------------- 3. matcher

def bench_matcher(train_row, sample, config, reps, retry, log):
    import numpy as np
    import tensorflow as tf
    from scipy.optimize import linear_sum_assignment
    from prtr_tf.keypoint.loss import match_outputs, stack_layers
    from prtr_tf.keypoint.matcher import linear_sum_assignment_batch, matching_cost

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
            body_ms = timed(lambda: linear_sum_assignment_batch(cost), reps)
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


# ---------------------------------------------------------------- report

def markdown(info, train_rows, pipe_rows, match_rows, load_start, load_end, args):
    out = []
    out.append(f"Machine: {info['nproc']} cores, {info['cpu']}; TensorFlow {info['tensorflow']}, "
               f"Keras {info['keras']}, SciPy {info['scipy']}, Python {info['python']}. "
               f"Load average (1 min) at start {load_start:.2f}, at end {load_end:.2f}.")
    out.append("")
    out.append("'warm-up s': wall time of the excluded warm-up steps (the first traces "
               "and compiles the step). "
               "'cores busy': CPU seconds of this process per wall second while measuring; "
               "'other procs': cores kept busy by everything else meanwhile (/proc/stat "
               "minus this process), of the reported run; 'runs': measurements made, "
               "the least contended reported. Rows with 'other procs' well above 0 were "
               "measured under contention. The per-row load averages (1-min, exponentially "
               "smoothed) include this benchmark itself and earlier jobs.")
    out.append("")
    if train_rows:
        out.append(f"### Training steps (median over measured steps, {args.warmup} warm-up "
                   "steps excluded)")
        out.append("")
        out.append("| config | crop (HxW) | batch | median ms/step | min-max ms | steps/s "
                   "| crops/s | steps | warm-up s | cores busy | other procs | runs | "
                   "load 1-min (before / after) |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in train_rows:
            out.append(f"| {r['name']} | {r['crop']} | {r['batch']} | {r['ms']:.0f} | "
                       f"{r['min_ms']:.0f}-{r['max_ms']:.0f} | {r['steps_s']:.3f} | "
                       f"{r['crops_s']:.2f} | {r['n']} | {r['warm_s']:.1f} | {r['cpu']:.2f} | "
                       f"{r['other']:.2f} | {r['runs']} | {r['load']} |")
        out.append("")
    if pipe_rows:
        out.append("### Input pipeline alone (`build_dataset(training=True)`, no model)")
        out.append("")
        out.append("| crop (HxW) | batch | images/s | ms/batch | batches | cores busy | "
                   "other procs | runs | load 1-min (before / after) |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in pipe_rows:
            out.append(f"| {r['crop']} | {r['batch']} | {r['images_s']:.0f} | "
                       f"{r['ms_batch']:.1f} | {r['n']} | {r['cpu']:.2f} | {r['other']:.2f} | "
                       f"{r['runs']} | {r['load']} |")
        out.append("")
    if match_rows:
        out.append("### Matcher share of the training step (median over "
                   f"{args.matcher_reps} calls)")
        out.append("")
        out.append("| config | shapes | LxB problems | step ms | `match_outputs` in "
                   "tf.function ms (%) | NumPy body ms (%) | scipy alone ms (%) | "
                   "other procs | runs | load 1-min (before / after) |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in match_rows:
            out.append(f"| {r['name']} | {r['shape']} | {r['problems']} | {r['step_ms']:.0f} | "
                       f"{r['tf_ms']:.2f} ({r['tf_pct']:.2f}%) | "
                       f"{r['body_ms']:.2f} ({r['body_pct']:.2f}%) | "
                       f"{r['scipy_ms']:.2f} ({r['scipy_pct']:.2f}%) | {r['other']:.2f} | "
                       f"{r['runs']} | {r['load']} |")
        out.append("")
    return "\n".join(out)


def main(argv=None):
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    load_start = load()  # before this process loads anything
    log(f"load average at start: {os.getloadavg()}")
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    from prtr_tf.tools.machine import machine_info
    info = machine_info()
    if load_start > info["nproc"]:
        log(f"WARNING: 1-min load {load_start:.2f} exceeds the {info['nproc']} cores: "
            "numbers will be distorted by other processes")
    t_start = time.perf_counter()
    train_rows, pipe_rows, match_rows = [], [], []
    retry = Retry(args.retries, args.retry_wait, args.busy_threshold, log)
    configs = [("synthetic_tiny", tiny_config(args.tiny_batch), args.tiny_steps)
               ] if args.tiny_steps > 0 else []
    configs += [("coco_res50_384x288", r50_config(b), args.r50_steps) for b in args.r50_batches
                if args.r50_steps > 0]

    if "train" not in args.skip:
        log("1. training steps")
        for name, config, steps in configs:
            row, sample = bench_train(name, config, steps, args.warmup, args.strategy,
                                      retry, log)
            train_rows.append(row)
            if "matcher" not in args.skip:
                match_rows.append(bench_matcher(row, sample, config, args.matcher_reps,
                                                retry, log))
    if "pipeline" not in args.skip:
        log("2. input pipeline alone")
        for name, config in (("synthetic_tiny", tiny_config(args.tiny_batch)),
                             ("coco_res50_384x288", r50_config(args.pipeline_batch))):
            pipe_rows.append(bench_pipeline(name, config, args.pipeline_batch,
                                            args.pipeline_batches, retry, log))
    load_end = load()
    busy = [r for r in train_rows + pipe_rows + match_rows
            if r["other"] > args.busy_threshold]
    if busy:
        log(f"WARNING: {len(busy)} measurement(s) ran while other processes kept "
            f"{max(r['other'] for r in busy):.2f} cores busy: rerun on a quieter machine")
    log(f"total {time.perf_counter() - t_start:.0f}s; load average at end: {os.getloadavg()}")
    text = markdown(info, train_rows, pipe_rows, match_rows, load_start, load_end, args)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
