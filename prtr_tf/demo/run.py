"""`make demo`: the two-stage PRTR pipeline trained on generated data, evaluated on
held-out images, and shown in pictures.

    python -m prtr_tf.demo [--workdir runs/demo] [--kpt_thr 0.3] [--quick]

Everything is local and written under --workdir: a synthetic multi-person set (COCO
format, 17 joints; 2000 training images, 100 held-out images) is generated on first
use into WORKDIR/data; the tiny keypoint Transformer (configs/demo_keypoints.py) and
the tiny Deformable DETR person detector (configs/demo_deformable_detector.py; DETR,
configs/demo_detector.py, reached a third of its held-out box AP at equal minutes:
docs/demo.md) train on it (re-running
resumes, or only evaluates once finished), at the same time in two processes of one
thread each (on 2 cores that is ~2.2x the steps of one process after the other); then
on the held-out images, never seen
in training, pycocotools scores the detector's boxes (box AP) and the keypoints
with ground-truth boxes and with the detector's own boxes (the full two-stage
pipeline: detector boxes -> crops -> keypoint Transformer -> readout -> rescoring
and OKS-NMS). Pictures (WORKDIR/pictures): annotated held-out images, a learning
curve per model, and the paper's Figure 4 for one held-out person.
--quick: a few steps on a handful of images (a smoke test of the same code).
--seed: both trainings' config.train.seed (default 0). At the end the
run's numbers are printed next to the documented median and range over seeds 0, 1, 2
(`prtr_tf.demo.documented`, written by `python -m tools.demo_seeds`), so a run can be
told normal or not.
"""
import argparse
import json
import os
import sys
import time

KEYPOINTS = "demo_keypoints"
DETECTOR = "demo_deformable_detector"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def quick(config):
    """The fast variant (--quick): a few steps on a few images, same code paths."""
    config.data.synthetic = {"train": (10, 1), "val": (3, 2)}
    config.train.update(steps_per_epoch=2, epochs=1, batch_size=4, warmup_steps=2,
                        log_every_steps=1)
    config.test.batch_size = 4
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m prtr_tf.demo",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/demo",
                        help="data, checkpoints, logs, results and pictures go here")
    parser.add_argument("--kpt_thr", type=float, default=0.3,
                        help="joints scoring below this are drawn faint")
    parser.add_argument("--num_pictures", type=int, default=6,
                        help="annotated held-out images to write")
    parser.add_argument("--quick", action="store_true",
                        help="a few steps on a few images (smoke test)")
    parser.add_argument("--seed", type=int, default=0,
                        help="config.train.seed of both trainings (the documented range is "
                        "over seeds 0, 1, 2)")
    args = parser.parse_args(argv)

    from prtr_tf.cli import malloc
    malloc.tune()
    from prtr_tf.cli.startup import import_tensorflow
    import_tensorflow().get_logger().setLevel("ERROR")  # start-up banner once; no
    # retracing notes for the evaluation's last, smaller batch

    from prtr_tf.files import atomic
    from prtr_tf.demo import pictures
    from prtr_tf.config import load_config
    from prtr_tf.models.detector.evaluate import detection_results, evaluate_detector
    from prtr_tf.evaluation.coco import format_table, write_results
    from prtr_tf.models.keypoint.evaluate import validate
    from prtr_tf.training.timing import CpuMeter, load
    from prtr_tf.checkpoints.weights import load_model

    work = args.workdir
    configs = {}
    for name in (KEYPOINTS, DETECTOR):
        config = load_config(name)
        config.data.root = os.path.join(work, "data")  # the demo writes only into --workdir
        config.train.seed = args.seed
        configs[name] = quick(config) if args.quick else config
    kpt_config, det_config = configs[KEYPOINTS], configs[DETECTOR]

    t0 = time.time()
    with CpuMeter() as meter:
        print("== 1/4 data ==", flush=True)
        from prtr_tf.data.splits import generate_synthetic
        generate_synthetic(kpt_config)  # once, before the two trainings read it
        print("== 2/4 training, in two processes: [keypoints] the keypoint Transformer "
              f"(configs/{KEYPOINTS}.py), [detector] the Deformable DETR person detector "
              f"(configs/{DETECTOR}.py) ==", flush=True)
        runs = {"keypoints": (kpt_config, os.path.join(work, "keypoints")),
                "detector": (det_config, os.path.join(work, "detector"))}
        seconds = train_in_parallel(runs)
        if seconds is None:
            return 1
        t_kpt, t_det = seconds["keypoints"], seconds["detector"]
        # The trained models, read back from the workdirs: their last weights (not
        # best.weights.h5, which was chosen on these held-out images).
        kpt_model, det_model = (
            load_model(config, os.path.join(workdir, "last.weights.h5"))[0]
            for config, workdir in (runs["keypoints"], runs["detector"]))
        print("== 3/4 held-out evaluation ==", flush=True)
        detections = detection_results(det_model, det_config, "val")
        boxes = evaluate_detector(det_model, det_config, "val", results=detections)
        det_json = write_results(detections, os.path.join(work, "detections_val.json"))
        rows = {}
        for label, det in (("GT boxes", None), ("detector boxes", det_json)):
            rows[label] = validate(
                kpt_model, kpt_config, "val", flip_test=False, det_json=det,
                results_path=os.path.join(work, f"keypoints_val_{'det' if det else 'gt'}.json"))
        print("== 4/4 pictures ==", flush=True)
        folder = os.path.join(work, "pictures")
        written = pictures.demo_pictures(
            kpt_model, kpt_config, det_model, det_config, folder,
            workdirs={"keypoint Transformer": runs["keypoints"][1],
                      "person detector": runs["detector"][1]},
            kpt_thr=args.kpt_thr, num_images=args.num_pictures)
    total = time.time() - t0
    summary = {
        "held_out_images": kpt_config.data.synthetic["val"][0],
        "training_images": kpt_config.data.synthetic["train"][0],
        "keypoint_AP_gt_boxes": rows["GT boxes"]["AP"],
        "keypoint_AP_detector_boxes": rows["detector boxes"]["AP"],
        "keypoint_AP50_gt_boxes": rows["GT boxes"]["AP .5"],
        "keypoint_AP50_detector_boxes": rows["detector boxes"]["AP .5"],
        "box_AP": boxes["AP"], "box_AP50": boxes["AP .5"], "seconds": round(total, 1),
        "seed": int(kpt_config.train.seed), "configs": [KEYPOINTS, DETECTOR],
        "quick": bool(args.quick),
        "seconds_keypoints": round(t_kpt, 1), "seconds_detector": round(t_det, 1),
        "load_1min_at_end": round(load(), 2), **meter.stats,
        "cpu_seconds": round(meter.own_cores * total, 1),
        "pictures": written}
    atomic.write_text(os.path.join(work, "demo_results.json"), json.dumps(summary, indent=1))

    images = summary["held_out_images"]
    print(f"\ndone in {total / 60:.1f} min (training in parallel: keypoints "
          f"{t_kpt / 60:.1f}, detector {t_det / 60:.1f}; load "
          f"{summary['load_1min_at_end']:.1f}, other processes kept "
          f"{meter.stats.get('others_cores', float('nan')):.1f} cores busy)")
    print(f"\nPerson detector on {images} held-out images, COCO box AP (%):")
    _print_tables(format_table, {"detector boxes": boxes})
    print(f"\nTwo-stage PRTR on {images} held-out images (never seen in training), "
          "COCO keypoint AP (%):")
    _print_tables(format_table, rows)
    print("\nPictures:")
    for what, path in written.items():
        print(f"  {what}: {path}")
    print(f"workdir: {work} (metrics.csv and TensorBoard logs per model, weights, "
          "detections, results JSON, demo_results.json)")
    if not args.quick:
        from prtr_tf.demo.documented import compare
        print("\n" + compare(summary))
    return 0


class _Prefixed:
    """A text stream that starts every line with ``prefix`` (the two trainings share the
    terminal); plain lines, never a tty, so progress comes as lines, not a ``\\r`` bar."""

    def __init__(self, stream, prefix):
        self.stream, self.prefix, self.at_start = stream, prefix, True

    def write(self, text):
        for piece in text.splitlines(keepends=True):
            if self.at_start:
                self.stream.write(self.prefix)
            self.stream.write(piece)
            self.at_start = piece.endswith("\n")
        return len(text)

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return False


def exit_with_parent(parent, interval=0.5):
    """Ends this process (status 1) once its parent ``parent`` (a PID) is gone: a
    daemon thread polls the parent PID. A training child of a killed demo or tool
    would otherwise train on, unseen, with the cores (the parent's ``finally`` runs on
    Ctrl-C, not on SIGTERM or SIGKILL). What the child wrote last is whole (atomic
    writes); re-running resumes from its last checkpoint."""
    import threading

    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="prtr-exit-with-parent").start()


def _train_child(name, config, workdir, threads, banner_shown, parent):
    """One training in its own process, with ``threads`` TensorFlow threads; the
    start-up lines that the parent showed (``banner_shown``) are not repeated; it ends
    when its ``parent`` process does."""
    exit_with_parent(parent)
    from prtr_tf.cli import malloc
    malloc.tune()
    from prtr_tf.cli.startup import import_tensorflow
    tf = import_tensorflow(skip=banner_shown)
    tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from prtr_tf.training.trainer import Trainer
    try:
        Trainer(config, workdir, stream=_Prefixed(sys.stdout, f"[{name}] ")).fit()
    except (FileNotFoundError, FileExistsError, NotADirectoryError, ValueError) as e:
        print(f"[{name}] error: {e}", file=sys.stderr, flush=True)  # one line, as the CLIs
        sys.exit(1)


def train_in_parallel(runs, threads=1, stop=None):
    """Trains ``runs`` ({name: (config, workdir)}) at the same time, each in a process of
    its own with ``threads`` TensorFlow threads (small models on few cores use one
    thread poorly: `make demo`'s two on 2 cores ran at 2.5-2.7 steps/s each against 2.4
    for one process of 2 threads). ``stop``: None, or a function of a run's name,
    asked every half second, that ends that run when it returns True (the process is
    terminated: what its last checkpoint holds is kept, re-running resumes from it).
    Returns {name: wall seconds}, or None after a failed run (its error is above; the
    other run is stopped). Re-running resumes each."""
    import multiprocessing

    from prtr_tf.cli import startup
    ctx = multiprocessing.get_context("spawn")  # a fresh TensorFlow in each child
    t0 = time.time()
    banner = startup.shown()
    procs = {name: ctx.Process(target=_train_child,
                               args=(name, config, workdir, threads, banner,
                                     os.getpid()),
                               name=f"prtr-demo-{name}")
             for name, (config, workdir) in runs.items()}
    for proc in procs.values():
        proc.start()
    seconds, pending = {}, dict(procs)
    try:
        while pending:
            for name, proc in list(pending.items()):
                proc.join(timeout=0.5)
                if proc.exitcode is None:
                    if stop is None or not stop(name):
                        continue
                    proc.terminate()  # ended by ``stop``: as if it had finished
                    proc.join()
                    del pending[name]
                    seconds[name] = time.time() - t0
                    continue
                del pending[name]
                seconds[name] = time.time() - t0
                if proc.exitcode != 0:
                    print(f"error: the {name} training failed (exit status {proc.exitcode}; "
                          f"its messages are above, prefixed [{name}]); re-running "
                          "resumes from its last checkpoint", file=sys.stderr, flush=True)
                    return None
    finally:
        for proc in pending.values():  # a failure or Ctrl-C: stop the other one too
            proc.terminate()
            proc.join()
    return seconds


def _print_tables(format_table, rows):
    header = None
    for name, stats in rows.items():
        table = format_table(stats, name=name).splitlines()
        if header is None:
            header = table[:2]
            print("\n".join(header))
        print(table[-1])


if __name__ == "__main__":
    sys.exit(main())
