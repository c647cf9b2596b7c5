"""Person detectors side by side at equal training minutes: held-out COCO box AP of the
demo's DETR (configs/demo_detector.py) and of a Deformable DETR
(configs/demo_deformable_detector.py) trained on the same generated data, over seeds
(issue 29, "a person detector that converges"). Any configs of the demo's data compare
the same way, keypoint models too (their held-out keypoint AP; issue 28:
--detectors=demo_keypoints,demo_deform_keypoints).

    python -m tools.detector_convergence [--workdir=/tmp/prtr_convergence]
        [--detectors=demo_detector,demo_deformable_detector] [--seeds=0,1,2]
        [--epochs=N] [--steps_per_epoch=N] [--minutes=M] [--marks=MIN,...]
        [--output=FILE.md]

The demo's synthetic set (2000 training images, 100 held-out ones; `python -m
prtr_tf.demo`'s) is generated once into WORKDIR/data. Then, seed after seed, the
detectors of that seed train at the same time (`prtr_tf.demo.run.train_in_parallel`:
one process of one TensorFlow thread each, so that on a machine with a core per
detector and nothing else running, training CPU minutes are wall minutes), each into
WORKDIR/DETECTOR/seedK with ``config.train.seed`` K; re-running resumes each run (a
finished one is only read). Every run's metrics.csv (`prtr_tf.training.trainer`: per
epoch its ``epoch_time_s``, and the held-out box AP / AP .5 of the evaluation after
every epoch) then gives the report (printed, and written atomically to --output):

(a) held-out box AP and AP .5 at training-minute marks: the minutes of a run are the
    cumulative ``epoch_time_s`` of its epochs (the training steps; the per-epoch
    evaluation is not counted), and its value at mark M is that of the last evaluated
    epoch finished within M minutes; per detector the median (min-max) over seeds, or
    "—" when some seed had no evaluated epoch by then. A run that finished its schedule
    before a mark keeps its last value (the time it did not need is not spent).
(b) per detector and seed: epochs, steps, training minutes, the final AP / AP .5 and
    the best AP (its epoch), and the median (min-max) over seeds;
(c) the command, host CPU, core count, date, TensorFlow threads per training, and the
    cores that other processes kept busy while this command trained.

--minutes M gives every run a budget of M training minutes: a run ends at the end of
the first epoch that reaches M (its evaluation done), or with its schedule when that
ends sooner, so a detector whose steps are slower is compared at the minutes of the
faster one's schedule without training its own schedule to the end (its LR drop may
then not be reached: table (b) gives each run's epochs). --epochs / --steps_per_epoch
override both configs' schedule (the LR drop stays at the
configs' epoch 10; the linear warm-up at 300 steps); --train_images / --val_images
shrink the generated set (a smoke test). A workdir's runs continue only with the seed,
steps per epoch, batch and data they were started with (checked against each run's
recorded config.json; a larger --epochs continues finished runs).
"""
import csv
import datetime
import io
import math
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DETECTORS = ("demo_detector", "demo_deformable_detector")
THREADS = 1  # TensorFlow threads per training process
NICE_STEPS = tuple(m * 10.0 ** k for k in range(-3, 4) for m in (1, 2, 5))
MAX_MARKS = 10


def define_flags(f):
    from absl import flags
    flags.DEFINE_string("workdir", "/tmp/prtr_convergence", "Generated data (data/) and "
                        "the trainings (DETECTOR/seedK) go here.", flag_values=f)
    flags.DEFINE_list("detectors", list(DETECTORS), "Configs of the detectors compared "
                      "(trained at the same time, one process each).", flag_values=f)
    flags.DEFINE_list("seeds", ["0", "1", "2"], "config.train.seed of each run.",
                      flag_values=f)
    flags.DEFINE_integer("epochs", None, "Override config.train.epochs.", flag_values=f)
    flags.DEFINE_integer("steps_per_epoch", None, "Override config.train.steps_per_epoch.",
                         flag_values=f)
    flags.DEFINE_integer("train_images", None, "Override the generated training images "
                         "(default: the configs' 2000).", flag_values=f)
    flags.DEFINE_integer("val_images", None, "Override the generated held-out images "
                         "(default: the configs' 100).", flag_values=f)
    flags.DEFINE_float("minutes", None, "Training-minute budget of every run: it ends "
                       "at the end of the first epoch that reaches it (default: the "
                       "configs' schedules).", flag_values=f)
    flags.DEFINE_list("marks", [], "Training-minute marks of table (a) (default: evenly "
                      f"spaced, at most {MAX_MARKS}, and the end of the longest run).",
                      flag_values=f)
    flags.DEFINE_string("output", None, "Also write the Markdown report to this file.",
                        flag_values=f)


# ------------------------------------------------------------------ pure: tables


def parse_metrics(text):
    """The epochs of a metrics.csv's ``text``, in epoch order: [{"epoch", "step",
    "seconds" (epoch_time_s), "AP", "AP .5" (None when not evaluated)}]."""
    rows = []
    for r in csv.DictReader(io.StringIO(text)):
        rows.append({"epoch": int(float(r["epoch"])), "step": int(float(r["step"])),
                     "seconds": float(r["epoch_time_s"]),
                     "AP": _number(r.get("AP")), "AP .5": _number(r.get("AP .5"))})
    return sorted(rows, key=lambda r: r["epoch"])


def _number(text):
    return None if text is None or str(text).strip() == "" else float(text)


def curve(rows):
    """``rows`` (`parse_metrics`) with "minutes": the cumulative training minutes at the
    end of each epoch."""
    total, out = 0.0, []
    for r in rows:
        total += r["seconds"]
        out.append(dict(r, minutes=total / 60.0))
    return out


def at_mark(points, minutes):
    """The last evaluated epoch (`curve` point with an AP) finished within ``minutes``
    training minutes, or None."""
    found = None
    for p in points:
        if p["minutes"] <= minutes + 1e-9 and p["AP"] is not None:
            found = p
    return found


def spread(values):
    """(median, min, max) of ``values``."""
    values = list(values)
    return statistics.median(values), min(values), max(values)


def fmt_spread(values, digits=3):
    """"median (min-max)" of ``values`` ("value" for one)."""
    med, lo, hi = spread(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def auto_marks(longest, max_marks=MAX_MARKS):
    """Evenly spaced minute marks up to ``longest`` minutes: the smallest step of 1, 2, 5
    x 10^k with at most ``max_marks`` marks, then ``longest`` itself (rounded up to 0.01)
    when it is not one of them, so that the longest run's end is a mark too; [] when
    ``longest`` <= 0."""
    if not longest > 0:
        return []
    step = next(s for s in NICE_STEPS if longest / s <= max_marks + 1e-9)
    marks = [round(step * i, 6) for i in range(1, int(longest / step + 1e-9) + 1)]
    if not marks or marks[-1] < longest - 1e-9:
        marks.append(math.ceil(longest * 100 - 1e-6) / 100)
    return marks


def mark_rows(curves, marks):
    """Table (a): for each mark, {"minutes", detector: {"AP", "AP .5", "step": the
    per-seed values (seed order), "missing": seeds without an evaluated epoch by then}}.
    ``curves``: {detector: {seed: `curve`}}."""
    rows = []
    for m in marks:
        row = {"minutes": m}
        for det, seeds in curves.items():
            found = {seed: at_mark(points, m) for seed, points in seeds.items()}
            have = [p for p in found.values() if p is not None]
            row[det] = {"AP": [p["AP"] for p in have], "AP .5": [p["AP .5"] for p in have],
                        "step": [p["step"] for p in have],
                        "missing": [s for s, p in found.items() if p is None]}
        rows.append(row)
    return rows


def final_rows(curves):
    """Table (b): per detector and seed {"detector", "seed", "epochs", "steps", "minutes",
    "AP", "AP .5" (of the last evaluated epoch), "best AP", "best epoch"}; a run without
    an epoch yet has None values."""
    out = []
    for det, seeds in curves.items():
        for seed, points in seeds.items():
            row = {"detector": det, "seed": seed, "epochs": 0, "steps": 0, "minutes": 0.0,
                   "AP": None, "AP .5": None, "best AP": None, "best epoch": None}
            if points:
                last = points[-1]
                row.update(epochs=last["epoch"], steps=last["step"], minutes=last["minutes"])
                evaluated = [p for p in points if p["AP"] is not None]
                if evaluated:
                    row.update({"AP": evaluated[-1]["AP"], "AP .5": evaluated[-1]["AP .5"]})
                    best = max(evaluated, key=lambda p: p["AP"])  # the first of equals
                    row.update({"best AP": best["AP"], "best epoch": best["epoch"]})
            out.append(row)
    return out


def longest_minutes(curves):
    """The training minutes of the longest run (0 without any epoch)."""
    return max([points[-1]["minutes"] for seeds in curves.values()
                for points in seeds.values() if points] or [0.0])


def markdown(curves, marks, header):
    """The report: ``header`` lines (command, host...), table (a) at ``marks``, table
    (b)."""
    dets = list(curves)
    out = list(header) + [""]
    out += ["### (a) Held-out AP at equal training minutes", "",
            "AP: COCO box AP of a detector, keypoint AP of a keypoint model.", "",
            "Minutes: cumulative `epoch_time_s` of metrics.csv (training steps; the "
            "per-epoch held-out evaluation not counted). Each cell: the AP of the last "
            "evaluated epoch finished by the mark, median (min-max) over seeds; steps: "
            "the training steps of those epochs; —: some seed had no evaluated epoch yet "
            "(n/N: seeds that had one).", ""]
    head = ["minutes"]
    for d in dets:
        head += [f"{d} AP", f"{d} AP .5", f"{d} steps"]
    out += ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for row in mark_rows(curves, marks):
        cells = [f"{row['minutes']:g}"]
        for d in dets:
            r = row[d]
            if r["missing"]:
                n = len(r["AP"]) + len(r["missing"])
                cells += [f"— ({len(r['AP'])}/{n})", "—", "—"]
            else:
                cells += [fmt_spread(r["AP"]), fmt_spread(r["AP .5"]),
                          fmt_spread(r["step"], 0)]
        out.append("| " + " | ".join(cells) + " |")
    if not marks:
        out.append("| (no epoch finished yet) |" + " |" * (len(head) - 1))
    out += ["", "### (b) Final held-out AP per run", "",
            "The last evaluated epoch of each run (last.weights.h5); best: the highest "
            "held-out AP of any epoch (chosen on the held-out images, so optimistic).", "",
            "| detector | seed | epochs | steps | training min | AP | AP .5 | best AP "
            "(epoch) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    finals = final_rows(curves)

    def num(v, digits=3):
        return "—" if v is None else f"{v:.{digits}f}"

    for r in finals:
        best = "—" if r["best AP"] is None else f"{r['best AP']:.3f} ({r['best epoch']})"
        out.append(f"| {r['detector']} | {r['seed']} | {r['epochs']} | {r['steps']} | "
                   f"{r['minutes']:.1f} | {num(r['AP'])} | {num(r['AP .5'])} | {best} |")
    for d in dets:
        rs = [r for r in finals if r["detector"] == d]
        if rs and all(r["AP"] is not None for r in rs):
            out.append(f"| {d} | median (min-max) | | {fmt_spread([r['steps'] for r in rs], 0)}"
                       f" | {fmt_spread([r['minutes'] for r in rs], 1)} | "
                       f"{fmt_spread([r['AP'] for r in rs])} | "
                       f"{fmt_spread([r['AP .5'] for r in rs])} | "
                       f"{fmt_spread([r['best AP'] for r in rs])} |")
    return "\n".join(out) + "\n"


def header_lines(command, cpu, nproc, date, threads, detectors, seeds, wall=None,
                 others=None):
    """The report's first lines (c): command, host, date, threads, load."""
    plural = "s" if threads != 1 else ""
    lines = [f"Command: `{command}`", "",
             f"Host: {cpu}, {nproc} cores; {date}. Each seed's {len(detectors)} detectors "
             f"({', '.join(detectors)}) trained at the same time, one process of "
             f"{threads} TensorFlow thread{plural} each; seeds "
             f"{', '.join(map(str, seeds))} one after the other."]
    if wall is not None:
        text = (f"Wall time of this command's training: {wall / 60:.1f} min (runs it "
                "resumed or found finished: only their part trained by this command)")
        if others is not None and others == others:
            text += (f"; other processes kept {others:.2f} cores busy meanwhile (above 0: "
                     "the trainings shared the cores, their minutes are inflated)")
        lines += ["", text + "."]
    return lines


# ------------------------------------------------------------------ running


def make_config(name, data_root, seed, epochs=None, steps_per_epoch=None,
                train_images=None, val_images=None):
    """The config ``name`` on the data in ``data_root`` with seed ``seed`` and the
    overrides given."""
    from prtr_tf.config import load_config
    from prtr_tf.config_checks import validate
    config = load_config(name)
    config.data.root = data_root
    config.train.seed = int(seed)
    if epochs is not None:
        config.train.epochs = int(epochs)
    if steps_per_epoch is not None:
        config.train.steps_per_epoch = int(steps_per_epoch)
    synthetic = dict(config.data.synthetic)
    for split, n in (("train", train_images), ("val", val_images)):
        if n is not None:
            synthetic[split] = (int(n), synthetic[split][1])
    config.data.synthetic = synthetic
    return validate(config)


def run_dir(workdir, detector, seed):
    return os.path.join(workdir, detector, f"seed{seed}")


def read_curves(workdir, detectors, seeds):
    """{detector: {seed: `curve` of its metrics.csv ([] when absent)}}."""
    curves = {}
    for det in detectors:
        curves[det] = {}
        for seed in seeds:
            curves[det][seed] = curve(_read_rows(run_dir(workdir, det, seed)))
    return curves


RESUME_FIELDS = ("train.seed", "train.steps_per_epoch", "train.batch_size",
                 "data.synthetic")


def _field(config, dotted):
    section, key = dotted.split(".")
    value = config[section][key]
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        return {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in value.items()}
    return value


def resume_conflicts(config, recorded):
    """The `RESUME_FIELDS` (seed, schedule, generated data) where ``config`` differs from
    the ``recorded`` config of a run's workdir: [(field, ours, recorded)]. The trainer
    compares only what the model computes, so a run continued with other settings (or
    a finished one reported as if made with them) would otherwise pass silently."""
    return [(f, _field(config, f), _field(recorded, f)) for f in RESUME_FIELDS
            if _field(config, f) != _field(recorded, f)]


def finished(rows, config, minutes=None):
    """Whether the metrics.csv ``rows`` (`parse_metrics`) reach ``config``'s last epoch,
    or (``minutes`` not None) that many training minutes (the cumulative
    ``epoch_time_s``)."""
    if not rows:
        return False
    if minutes is not None and sum(r["seconds"] for r in rows) >= minutes * 60.0 - 1e-9:
        return True
    return rows[-1]["epoch"] >= int(config.train.epochs)


def _read_rows(folder):
    path = os.path.join(folder, "metrics.csv")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return parse_metrics(f.read())


def train(v, seeds, log=print):
    """Generates the data, trains every seed's detectors in parallel (runs already
    finished are not started again); returns (wall seconds, other processes' cores busy
    meanwhile), or (None, None) when every run had finished already."""
    from prtr_tf.checkpoints.artifact import recorded_config
    from prtr_tf.data.splits import generate_synthetic
    from prtr_tf.demo.run import train_in_parallel
    from prtr_tf.training.timing import CpuMeter
    from tools.flags import usage_error

    data = os.path.join(v.workdir, "data")
    try:
        configs = {(d, s): make_config(d, data, s, v.epochs, v.steps_per_epoch,
                                       v.train_images, v.val_images)
                   for d in v.detectors for s in seeds}
    except (FileNotFoundError, ValueError) as e:  # an unknown name, a bad value
        usage_error(f"--detectors: {e}")
    for (d, s), config in configs.items():
        where, recorded = recorded_config(run_dir(v.workdir, d, s))
        conflicts = [] if recorded is None else resume_conflicts(config, recorded)
        if conflicts:
            usage_error(f"{where} was trained with other settings: " + ", ".join(
                f"{f}={ours!r} (recorded {theirs!r})" for f, ours, theirs in conflicts)
                + "; use another --workdir, or the flags it was started with")
    log(f"== data: {data} ==")
    generate_synthetic(configs[v.detectors[0], seeds[0]])
    t0, trained = time.time(), False
    with CpuMeter() as meter:
        for i, seed in enumerate(seeds):
            runs, done = {}, []
            for d in v.detectors:
                folder = run_dir(v.workdir, d, seed)
                if finished(_read_rows(folder), configs[d, seed], v.minutes):
                    done.append(d)
                else:
                    runs[f"{d} seed{seed}"] = (configs[d, seed], folder)
            head = f"== seed {seed} ({i + 1}/{len(seeds)}): "
            if done:
                log(head + f"{', '.join(done)} finished already ==")
            if not runs:
                continue
            log(head + f"training {', '.join(n.rsplit(' ', 1)[0] for n in runs)} at the "
                f"same time, {THREADS} TensorFlow thread each ==")
            t, trained = time.time(), True
            def over_budget(name, runs=runs):
                # (a metrics.csv row is written after its epoch's checkpoint and evaluation)
                config, folder = runs[name]
                return v.minutes is not None and finished(_read_rows(folder), config,
                                                          v.minutes)

            seconds = train_in_parallel(runs, threads=THREADS, stop=over_budget)
            if seconds is None:
                raise SystemExit(1)
            log(f"== seed {seed} done in {(time.time() - t) / 60:.1f} min ("
                + ", ".join(f"{n} {s / 60:.1f}" for n, s in seconds.items()) + ") ==")
    return (time.time() - t0, meter.other_cores) if trained else (None, None)


def main(argv=None):
    from tools.flags import parse, usage_error

    v = parse(argv, define_flags, __doc__, "python -m tools.detector_convergence")
    try:
        seeds = [int(s) for s in v.seeds]
        marks = [float(m) for m in v.marks]
    except ValueError:
        usage_error(f"--seeds={','.join(v.seeds)} / --marks={','.join(v.marks)}: numbers")
    if not seeds or not v.detectors or len(set(v.detectors)) != len(v.detectors):
        usage_error("--seeds and --detectors: at least one each, no detector twice")
    if any(not (m > 0 and math.isfinite(m)) for m in marks):
        usage_error(f"--marks={','.join(v.marks)}: positive minutes")
    for name, value in (("epochs", v.epochs), ("steps_per_epoch", v.steps_per_epoch),
                        ("train_images", v.train_images), ("val_images", v.val_images)):
        if value is not None and value < 1:
            usage_error(f"--{name}={value}: at least 1")
    if v.minutes is not None and not (v.minutes > 0 and math.isfinite(v.minutes)):
        usage_error(f"--minutes={v.minutes}: positive minutes")
    from prtr_tf.cli.startup import import_tensorflow
    import_tensorflow().get_logger().setLevel("ERROR")
    from prtr_tf.files import atomic
    from tools.machine import cpu_model

    wall, others = train(v, seeds, log=lambda m: print(m, flush=True))
    curves = read_curves(v.workdir, v.detectors, seeds)
    marks = sorted(marks) or auto_marks(longest_minutes(curves))
    command = "python -m tools.detector_convergence " + " ".join(
        sys.argv[1:] if argv is None else argv)
    header = header_lines(command.strip(), cpu_model(), os.cpu_count(),
                          datetime.date.today().isoformat(), THREADS, v.detectors, seeds,
                          wall, others)
    report = markdown(curves, marks, header)
    print("\n" + report, end="", flush=True)
    if v.output:
        atomic.write_text(v.output, report)
        print(f"written to {v.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
