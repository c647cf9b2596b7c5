"""`make demo`: the two-stage PRTR pipeline trained on generated data, evaluated on
held-out images, and shown in pictures.

    python -m prtr_tf.demo [--workdir runs/demo] [--kpt_thr 0.3] [--quick]

Everything is local and written under --workdir: a synthetic multi-person set (COCO
format, 17 joints; 2000 training images, 100 held-out images) is generated on first
use into WORKDIR/data; the tiny keypoint Transformer (configs/demo_keypoints.py) and
the tiny DETR person detector (configs/demo_detector.py) train on it (re-running
resumes, or only evaluates once finished); then on the held-out images, never seen
in training, pycocotools scores the detector's boxes (box AP) and the keypoints
with ground-truth boxes and with the detector's own boxes (the full two-stage
pipeline: detector boxes -> crops -> keypoint Transformer -> readout -> rescoring
and OKS-NMS). Pictures (WORKDIR/pictures): annotated held-out images, a learning
curve per model, and the paper's Figure 4 for one held-out person.
--quick: a few steps on a handful of images (a smoke test of the same code).
"""
import argparse
import json
import os
import sys
import time

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
    args = parser.parse_args(argv)

    from prtr_tf.startup import import_tensorflow
    import_tensorflow().get_logger().setLevel("ERROR")  # start-up banner once; no
    # retracing notes for the evaluation's last, smaller batch

    from prtr_tf import atomic, pictures
    from prtr_tf.config import load_config
    from prtr_tf.detector.evaluate import detection_results, evaluate_detector
    from prtr_tf.evaluation.coco import format_table, write_results
    from prtr_tf.keypoint.evaluate import validate
    from prtr_tf.tools.timing import CpuMeter, load
    from prtr_tf.training.trainer import Trainer

    work = args.workdir
    configs = {}
    for name in ("demo_keypoints", "demo_detector"):
        config = load_config(name)
        config.data.root = os.path.join(work, "data")  # the demo writes only into --workdir
        configs[name] = quick(config) if args.quick else config
    kpt_config, det_config = configs["demo_keypoints"], configs["demo_detector"]

    t0 = time.time()
    with CpuMeter() as meter:
        print("== 1/4 keypoint Transformer (configs/demo_keypoints.py) ==", flush=True)
        keypoints = Trainer(kpt_config, os.path.join(work, "keypoints"))
        keypoints.fit()
        t_kpt = time.time() - t0
        print("== 2/4 DETR person detector (configs/demo_detector.py) ==", flush=True)
        detector = Trainer(det_config, os.path.join(work, "detector"))
        detector.fit()
        t_det = time.time() - t0 - t_kpt
        print("== 3/4 held-out evaluation ==", flush=True)
        detections = detection_results(detector.model, det_config, "val")
        boxes = evaluate_detector(detector.model, det_config, "val", results=detections)
        det_json = write_results(detections, os.path.join(work, "detections_val.json"))
        rows = {}
        for label, det in (("GT boxes", None), ("detector boxes", det_json)):
            rows[label] = validate(
                keypoints.model, kpt_config, "val", flip_test=False, det_json=det,
                results_path=os.path.join(work, f"keypoints_val_{'det' if det else 'gt'}.json"))
        print("== 4/4 pictures ==", flush=True)
        folder = os.path.join(work, "pictures")
        written = pictures.demo_pictures(
            keypoints.model, kpt_config, detector.model, det_config, folder,
            workdirs={"keypoint Transformer": keypoints.workdir,
                      "person detector": detector.workdir},
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
        "seconds_keypoints": round(t_kpt, 1), "seconds_detector": round(t_det, 1),
        "load_1min_at_end": round(load(), 2), **meter.stats,
        "cpu_seconds": round(meter.own_cores * total, 1),
        "pictures": written}
    atomic.write_text(os.path.join(work, "demo_results.json"), json.dumps(summary, indent=1))

    images = summary["held_out_images"]
    print(f"\ndone in {total / 60:.1f} min (keypoints {t_kpt / 60:.1f}, detector "
          f"{t_det / 60:.1f}; load {summary['load_1min_at_end']:.1f}, other processes kept "
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
    return 0


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
