"""The person-score threshold of prediction, measured: person-box precision, recall and
F1 (IoU >= 0.5) of trained DETR person detectors on held-out images, per threshold.

    python -m tools.threshold_sweep --workdir runs/threshold_sweep   # trains seeds 0,1,2
    python -m tools.threshold_sweep --detector_workdir runs/demo/detector [...]

A --detector_workdir is read with the config it recorded (config.json), so the
detectors of `python -m tools.detector_convergence` (DETR and Deformable DETR) can be
swept too; a workdir without one is taken as configs/demo_detector.py's.

Without --detector_workdir it trains the demo's person detector (configs/demo_detector.py,
`python -m prtr_tf.demo`'s settings: its 2000 generated training images, 12 epochs of 250
steps) once per --seeds value (``config.train.seed``), in parallel processes of one
thread each (`prtr_tf.demo.run.train_in_parallel`; re-running resumes), under
WORKDIR/seed_N, on the demo's generated data in WORKDIR/data. Each detector's last
weights (``last.weights.h5``, as the demo reads them: best.weights.h5 is chosen on the
held-out images) then detect the persons of the held-out split (``val``: the demo's 100
images, never trained on) with the evaluation pipeline (every query, no threshold), and
for each threshold t in 0.05, 0.10, ..., 0.95 the boxes with P(person) >= t are
matched greedily (highest score first) to the ground-truth persons (non-crowd) at
IoU >= 0.5: precision = matched / kept boxes, recall = matched / persons, F1 their
harmonic mean. The table (one column per seed, the median over seeds) is printed as
markdown with the command, the host's CPU and the date; the threshold of the highest
median F1 (ties: the lower threshold) is the recommendation
(`prtr_tf.serving.defaults.PERSON_SCORE_THRESHOLD`, docs/inference.md).
"""
import datetime
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
IOU = 0.5


def define_flags(f):
    from absl import flags
    flags.DEFINE_string("workdir", "runs/threshold_sweep", "Trained detectors (seed_N) and "
                        "the demo's generated data (data/) go here.", flag_values=f)
    flags.DEFINE_list("seeds", ["0", "1", "2"], "config.train.seed of each detector trained.",
                      flag_values=f)
    flags.DEFINE_multi_string("detector_workdir", [], "Instead of training: detector "
                              "training workdirs (repeatable; each with the config it "
                              "recorded, else configs/demo_detector.py); their data root "
                              "is --data_root.", flag_values=f)
    flags.DEFINE_string("data_root", None, "The generated data of --detector_workdir "
                        "(default WORKDIR/data).", flag_values=f)
    flags.DEFINE_string("weights", "last.weights.h5", "The weights file read in each "
                        "detector workdir.", flag_values=f)
    flags.DEFINE_integer("processes", 3, "Trainings run at the same time.", flag_values=f)
    flags.DEFINE_string("output", None, "Also write the markdown table to this file.",
                        flag_values=f)


def detector_config(data_root, seed=None):
    from prtr_tf.config import load_config
    config = load_config("demo_detector")
    config.data.root = data_root
    if seed is not None:
        config.train.seed = int(seed)
    return config


def workdir_config(workdir, data_root):
    """The config a detector workdir recorded (config.json: any detector, e.g.
    configs/demo_deformable_detector.py), else demo_detector's (older workdirs), on the
    data in ``data_root``."""
    from prtr_tf.checkpoints.artifact import recorded_config
    _, config = recorded_config(workdir)
    if config is None:
        return detector_config(data_root)
    config.data.root = data_root
    return config


def train(workdir, seeds, processes):
    """Trains the demo detector per seed (in groups of ``processes``); returns
    {seed: (config, workdir)} and the wall seconds."""
    from prtr_tf.data.splits import generate_synthetic
    from prtr_tf.demo.run import train_in_parallel

    data = os.path.join(workdir, "data")
    generate_synthetic(detector_config(data))
    runs = {f"seed_{s}": (detector_config(data, s), os.path.join(workdir, f"seed_{s}"))
            for s in seeds}
    t0 = time.time()
    names = list(runs)
    for i in range(0, len(names), processes):
        if train_in_parallel({n: runs[n] for n in names[i:i + processes]}) is None:
            raise SystemExit(1)
    return runs, time.time() - t0


def iou_xywh(a, b):
    """IoU of boxes a (N, 4) and b (M, 4), [x, y, w, h] -> (N, M)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    ax2, ay2, bx2, by2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    w = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]),
                0, None)
    h = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]),
                0, None)
    inter = w * h
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def matched(det_boxes, det_scores, gt_boxes, iou=IOU):
    """Greedy matching (highest score first, each ground truth once) -> true positives."""
    if not len(det_boxes) or not len(gt_boxes):
        return 0
    ious = iou_xywh(det_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), bool)
    tp = 0
    for i in np.argsort(-np.asarray(det_scores), kind="stable"):
        cand = np.where(~taken & (ious[i] >= iou))[0]
        if len(cand):
            taken[cand[np.argmax(ious[i, cand])]] = True
            tp += 1
    return tp


def sweep(found, ground_truth, thresholds=THRESHOLDS):
    """``found``: [(image_id, boxes xywh, scores)] (every query); ``ground_truth``:
    {image_id: boxes xywh}. Returns {t: {"precision", "recall", "f1", "kept", "tp"}}."""
    persons = sum(len(b) for b in ground_truth.values())
    rows = {}
    for t in thresholds:
        kept = tp = 0
        for image_id, boxes, scores in found:
            boxes, scores = np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(-1)
            keep = (scores >= t) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
            kept += int(keep.sum())
            tp += matched(boxes[keep], scores[keep], ground_truth.get(image_id, np.zeros((0, 4))))
        p = tp / kept if kept else 1.0
        r = tp / persons if persons else 1.0
        rows[t] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
                   "kept": kept, "tp": tp}
    return rows


def held_out(config, split="val"):
    """{image_id: non-crowd person boxes xywh (N, 4)} of ``split`` (every image)."""
    from prtr_tf.data.jsonfile import read_json
    from prtr_tf.data.splits import split_files
    from prtr_tf.data.keypoint_sets import category_ids

    ann, _ = split_files(config, split)
    data = read_json(ann, "annotations")
    cats = set(category_ids(config))
    gt = {int(im["id"]): [] for im in data["images"]}
    for a in data["annotations"]:
        if a.get("category_id") in cats and not a.get("iscrowd", 0):
            gt[int(a["image_id"])].append(a["bbox"])
    return {k: np.asarray(v, np.float64).reshape(-1, 4) for k, v in gt.items()}


def measure(config, workdir, weights_name):
    """(sweep rows, held-out images, persons) of one trained detector."""
    from prtr_tf.checkpoints.weights import load_model
    from prtr_tf.models.detector.data import build_detection_dataset
    from prtr_tf.models.detector.predict import detect_dataset
    from prtr_tf.models.detector.records import load_person_boxes, person_label
    from prtr_tf.data.splits import split_files
    from prtr_tf.data.keypoint_sets import category_ids

    model = load_model(config, os.path.join(workdir, weights_name))[0]
    ann, images = split_files(config, "val")
    records = load_person_boxes(ann, images, min_keypoints=0,
                                category_ids=category_ids(config))
    dataset = build_detection_dataset(records, config, training=False,
                                      batch=config.test.batch_size)
    found = detect_dataset(model, dataset, person_label(config))
    gt = held_out(config)
    return sweep(found, gt), len(gt), sum(len(b) for b in gt.values())


def choose(per_seed):
    """The threshold of the highest median F1 over seeds (the lower one on ties), and
    the medians {t: f1}."""
    medians = {t: float(np.median([rows[t]["f1"] for rows in per_seed.values()]))
               for t in THRESHOLDS}
    best = max(THRESHOLDS, key=lambda t: (round(medians[t], 6), -t))
    return best, medians


def markdown(per_seed, command, images, persons, seconds=None):
    from tools.machine import machine_info

    info = machine_info()
    best, medians = choose(per_seed)
    names = list(per_seed)
    out = [f"Command: `{command}`", "",
           f"Host: {info['nproc']} cores, {info['cpu']}; TensorFlow {info['tensorflow']}; "
           f"{datetime.date.today().isoformat()}"
           + (f"; {seconds / 60:.0f} min of training" if seconds else "") + ".", "",
           f"Held-out: {images} images, {persons} persons. Cells: precision / recall / F1 "
           "of the boxes with P(person) >= threshold, matched at IoU >= 0.5.", "",
           "| threshold | " + " | ".join(names) + " | median F1 |",
           "|---:|" + "---|" * len(names) + "---:|"]
    for t in THRESHOLDS:
        cells = [f"{per_seed[n][t]['precision']:.2f} / {per_seed[n][t]['recall']:.2f} / "
                 f"{per_seed[n][t]['f1']:.3f}" for n in names]
        mark = " **best**" if t == best else ""
        out.append(f"| {t:.2f} | " + " | ".join(cells) + f" | {medians[t]:.3f}{mark} |")
    own = ", ".join(f"{n} {max(THRESHOLDS, key=lambda t: (round(per_seed[n][t]['f1'], 6), -t)):.2f}"
                    for n in names)
    out += ["", f"Highest median F1: {medians[best]:.3f} at threshold {best:.2f} (each "
            f"detector's own best: {own})."]
    return "\n".join(out), best


def main(argv=None):
    from tools.flags import parse, usage_error

    v = parse(argv, define_flags, __doc__, "python -m tools.threshold_sweep")
    from prtr_tf.cli.startup import import_tensorflow
    import_tensorflow().get_logger().setLevel("ERROR")
    seconds = None
    if v.detector_workdir:
        data = v.data_root or os.path.join(v.workdir, "data")
        # columns named by the workdir's last two path components (seed_0/e3)
        runs = {"/".join(os.path.normpath(w).split(os.sep)[-2:]): (workdir_config(w, data), w)
                for w in v.detector_workdir}
    else:
        try:
            seeds = [int(s) for s in v.seeds]
        except ValueError:
            usage_error(f"--seeds={','.join(v.seeds)}: integers")
        runs, seconds = train(v.workdir, seeds, max(1, v.processes))
    per_seed = {}
    images = persons = 0
    for name, (config, workdir) in runs.items():
        path = os.path.join(workdir, v.weights)
        if not os.path.isfile(path):
            usage_error(f"{path}: no such weights file")
        per_seed[name], images, persons = measure(config, workdir, v.weights)
        print(f"{name}: measured", flush=True)
    command = "python -m tools.threshold_sweep " + " ".join(
        sys.argv[1:] if argv is None else argv)
    table, best = markdown(per_seed, command.strip(), images, persons, seconds)
    print(table)
    if v.output:
        from prtr_tf.files import atomic
        atomic.write_text(v.output, table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
