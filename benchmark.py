r"""CPU inference latency of PRTR (two-stage) in every export format.

    python benchmark.py --formats=all --batches=1,8 --repeats=5 --slow_repeats=3 \
        --output=benchmarks/results.json

Keypoint model (config --config, default R50 384x288, readout in the graph, no flip
test) on random normalised crops, per format: ``eager`` (Keras eager,
`predict_crops`), ``function`` (tf.function), ``xla`` (tf.function(jit_compile=True)),
``saved_model`` (signature serve_crops of an exported SavedModel), ``tflite_fp32``,
``tflite_fp16``, ``tflite_int8`` (dynamic range), ``tflite_int8_full`` (full-integer,
calibrated on --num_calibration --calibration_data crops; ai-edge-litert, --threads
threads, builtin kernels or --xnnpack), ``onnx``
(tf2onnx of serve_crops, ONNX Runtime CPU, intra_op_num_threads=--threads). And the
whole two-stage pipeline per image (DETR person detector at shortest side
--det_test_size, then the keypoint crops of the top --persons boxes):
``pipeline_estimator`` (`PoseEstimator` + `DetrPersonDetector`) and
``pipeline_saved_model`` (SavedModel serving_default); ``detector`` times
`DetrPersonDetector` alone on the same image; ``pipeline_breakdown`` times the stages
inside the same `PoseEstimator` calls (detector, crops -> keypoints, the rest = box
handling, rescoring, OKS-NMS), so that the parts add up to the total by construction.
With random weights every kept box gets its crop read out, and OKS-NMS then usually
leaves one person (near-identical boxes).

Weights are random (latency only). For each (format, batch): --warmup untimed runs
(the first includes tracing/compilation), then --repeats timed runs (--slow_repeats
for eager and batch > 1 of slow formats); the median, min and max are reported in ms
per batch and per crop, with os.getloadavg() at measurement time and, over the timed
runs, this process's CPU seconds per wall second (``own_cpu_per_wall``: ~--threads when
it had the cores) and the cores other processes kept busy (``others_cores``, from
/proc/stat): on a shared machine the second explains most of the run-to-run variance. Results are printed
as a table and appended to --output (JSON lines) as they come, so a partial run
still leaves numbers.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

TFLITE = ("fp32", "fp16", "int8", "int8_full")
FORMATS = ("eager", "function", "xla", "saved_model", "tflite_fp32", "tflite_fp16",
           "tflite_int8", "tflite_int8_full", "onnx", "detector", "pipeline_estimator",
           "pipeline_saved_model", "pipeline_breakdown")
SLOW = ("eager",)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--config", default="configs/coco_res50_384x288.py",
                   help="keypoint config (default: %(default)s)")
    p.add_argument("--detector_config", default="configs/detr_r50_person.py",
                   help="detector config (default: %(default)s)")
    p.add_argument("--formats", default="all",
                   help="comma-separated subset of: " + ", ".join(FORMATS) + " (or 'all')")
    p.add_argument("--batches", default="1,8", help="keypoint batch sizes (default: 1,8)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs (default: 5)")
    p.add_argument("--slow_repeats", type=int, default=3,
                   help="timed runs for eager and for batches > 1 (default: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (default: 1)")
    p.add_argument("--threads", type=int, default=2,
                   help="CPU threads for TF (intra-op), TFLite and ONNX Runtime")
    p.add_argument("--xnnpack", action="store_true",
                   help="TFLite with the XNNPACK delegate (default: builtin kernels, as "
                        "prtr_tf.export.tflite.run_tflite)")
    p.add_argument("--num_calibration", type=int, default=16,
                   help="tflite_int8_full: calibration crops (default: %(default)s; "
                        "export/tflite.py's default is 200)")
    p.add_argument("--calibration_data", default="synthetic", choices=("synthetic", "train"),
                   help="tflite_int8_full: crops of generated stick figures or of the "
                        "config's training set (default: %(default)s)")
    p.add_argument("--det_test_size", type=int, default=512,
                   help="detector shortest side (default: %(default)s)")
    p.add_argument("--det_max_size", type=int, default=853,
                   help="detector longest side cap (default: %(default)s)")
    p.add_argument("--image_size", default="480,640",
                   help="H,W of the synthetic pipeline image (default: %(default)s)")
    p.add_argument("--persons", type=int, default=4,
                   help="persons kept per image in the pipeline (top boxes; default 4)")
    p.add_argument("--workdir", default=None,
                   help="where exported models go (default: a temporary directory)")
    p.add_argument("--output", default=None, help="append results as JSON lines here")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.formats = list(FORMATS) if args.formats == "all" else [
        f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in args.formats if f not in FORMATS]
    if bad:
        p.error(f"--formats: unknown {bad}; choose from {', '.join(FORMATS)}")
    if args.num_calibration < 1:
        p.error(f"--num_calibration must be >= 1, got {args.num_calibration}")
    args.batches = [int(b) for b in args.batches.split(",")]
    args.image_size = tuple(int(v) for v in args.image_size.split(","))
    return args


def _busy_seconds():
    """CPU seconds all processes spent busy so far (/proc/stat: all states but idle and
    iowait), or None where /proc/stat is not readable."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Over a timed stretch: this process's CPU seconds per wall second (~--threads when
    it got the cores it asked for) and the cores other processes kept busy meanwhile
    (from /proc/stat; 1/100 s resolution, so rough for stretches under ~1 s)."""

    def __enter__(self):
        self.wall, self.own, self.busy = time.perf_counter(), time.process_time(), \
            _busy_seconds()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.wall
        own = time.process_time() - self.own
        busy = _busy_seconds()
        self.stats = {"own_cpu_per_wall": round(own / wall, 2)}
        if busy is not None and self.busy is not None:
            self.stats["others_cores"] = round(max(0.0, (busy - self.busy - own) / wall), 2)
        return False


def time_fn(fn, warmup, repeats):
    """(first-runs seconds, [seconds per timed run], CpuMeter stats of the timed runs)."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    first = time.perf_counter() - t0
    times = []
    with CpuMeter() as meter:
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return first, times, meter.stats


class Bench:
    def __init__(self, args):
        self.args = args
        self.rows = []

    def record(self, fmt, batch, first, times, unit="crop", extra=None):
        ms = [t * 1e3 for t in times]
        med = statistics.median(ms)
        row = {"format": fmt, "batch": batch, "median_ms": med, "min_ms": min(ms),
               "max_ms": max(ms), "repeats": len(ms), "per": unit,
               "per_item_ms": med / batch, "warmup_s": first,
               "loadavg": os.getloadavg(), "time": time.strftime("%H:%M:%S")}
        row.update(extra or {})
        self.rows.append(row)
        print(f"{fmt:22s} b={batch:<2d} median {med:9.1f} ms/batch  {med / batch:8.1f} "
              f"ms/{unit}  [min {min(ms):.1f} max {max(ms):.1f}, n={len(ms)}]  "
              f"warmup {first:.1f}s  load {row['loadavg'][0]:.2f} "
              + (json.dumps(extra) if extra else ""), flush=True)
        if self.args.output:
            with open(self.args.output, "a") as f:
                f.write(json.dumps(row) + "\n")

    def repeats(self, fmt, batch):
        a = self.args
        return a.slow_repeats if (fmt in SLOW or batch > 1) else a.repeats

    def run(self, fmt, batch, fn, unit="crop", extra=None):
        try:
            first, times, cpu = time_fn(fn, self.args.warmup, self.repeats(fmt, batch))
        except Exception as e:  # noqa: BLE001
            print(f"{fmt:22s} b={batch:<2d} FAILED: {type(e).__name__}: {e}", flush=True)
            return
        self.record(fmt, batch, first, times, unit, dict(extra or {}, **cpu))


class _Done:
    """An already-fetched result with the .numpy() of the tensor it replaces."""

    def __init__(self, value):
        self.value = value

    def numpy(self):
        return self.value


def pipeline_breakdown(bench, model, config, detector, image, boxes_in, extra):
    """Times `PoseEstimator`'s stages inside the same calls: the detector, each
    crops -> keypoints call (crops + keypoint model + readout + crop -> image), and the
    rest (box -> center/scale, rescoring, OKS-NMS, Python); one row per stage, the
    medians over the same --repeats calls."""
    from prtr_tf.serving.estimator import PoseEstimator

    estimator = PoseEstimator(model, config, detector=None, flip_test=False,
                              box_threshold=0.0)
    spent = {"detector": 0.0, "keypoints": 0.0}

    def timed(key, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            if hasattr(out, "numpy"):  # the estimator calls .numpy() next: wait here
                out = _Done(out.numpy())
            spent[key] += time.perf_counter() - t
            return out
        return wrapper

    estimator.detector = timed("detector", detector)
    crops_fn = estimator._crops_to_keypoints
    estimator._crops_to_keypoints = timed("keypoints", crops_fn)
    a = bench.args
    runs = {"total": [], "detector": [], "keypoints": [], "rest": []}
    t0 = time.perf_counter()
    for _ in range(a.warmup):
        estimator(image)
    first = time.perf_counter() - t0
    with CpuMeter() as meter:
        for _ in range(a.repeats):
            spent.update(detector=0.0, keypoints=0.0)
            t = time.perf_counter()
            persons = estimator(image)
            total = time.perf_counter() - t
            runs["total"].append(total)
            runs["detector"].append(spent["detector"])
            runs["keypoints"].append(spent["keypoints"])
            runs["rest"].append(total - spent["detector"] - spent["keypoints"])
    for key, times in runs.items():
        bench.record(f"pipeline_breakdown.{key}", 1, first, times, unit="image",
                     extra=dict(extra, crops=boxes_in[-1], persons_out=len(persons),
                                **meter.stats))


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from prtr_tf.config import load_config
    from prtr_tf.keypoint.predict import predict_crops
    from prtr_tf.keypoint.model import build_model
    from prtr_tf.tools.machine import machine_info

    info = machine_info()
    info.update(threads=args.threads, argv=sys.argv, loadavg_start=os.getloadavg())
    print(json.dumps(info), flush=True)
    if args.output:
        with open(args.output, "a") as f:
            f.write(json.dumps({"machine": info}) + "\n")

    workdir = args.workdir or tempfile.mkdtemp(prefix="prtr_bench_")
    os.makedirs(workdir, exist_ok=True)
    config = load_config(args.config)
    h, w = (int(s) for s in config.model.image_size)
    tf.keras.utils.set_random_seed(args.seed)
    model = build_model(config.model)
    rng = np.random.default_rng(args.seed)
    crops = {b: rng.standard_normal((b, h, w, 3)).astype(np.float32) for b in args.batches}
    model(tf.constant(crops[args.batches[0]][:1]), training=False)  # build
    bench = Bench(args)
    fmts = args.formats

    def keypoint_fn(fn):
        return {b: (lambda b=b: [t.numpy() for t in fn(tf.constant(crops[b]))])
                for b in args.batches}

    if "eager" in fmts:
        for b, fn in keypoint_fn(lambda x: predict_crops(model, x)).items():
            bench.run("eager", b, fn)
    if "function" in fmts:
        f = tf.function(lambda x: predict_crops(model, x))
        for b, fn in keypoint_fn(f).items():
            bench.run("function", b, fn)
    if "xla" in fmts:
        f = tf.function(lambda x: predict_crops(model, x), jit_compile=True)
        for b, fn in keypoint_fn(f).items():
            bench.run("xla", b, fn)

    need_det = any(f in fmts for f in ("detector", "pipeline_estimator",
                                       "pipeline_saved_model", "pipeline_breakdown"))
    detector = det_config = None
    if need_det:
        from prtr_tf.detector.model import build_detector
        det_config = load_config(args.detector_config)
        det_config.data.test_size = args.det_test_size
        det_config.data.max_size = args.det_max_size
        detector = build_detector(det_config.model)
        detector(tf.zeros((1, 64, 64, 3)), training=False)

    need_sm = any(f in fmts for f in ("saved_model", "onnx", "pipeline_saved_model"))
    sm_dir = os.path.join(workdir, "saved_model")
    if need_sm:
        from prtr_tf.serving.two_stage import PoseServing
        from prtr_tf.serving.saved_model import export_saved_model
        t = time.perf_counter()
        serving = PoseServing(model, config, detector, det_config, score_threshold=0.0,
                              max_persons=args.persons, flip_test=False)
        if not os.path.exists(os.path.join(sm_dir, "saved_model.pb")):
            export_saved_model(serving, sm_dir)
        print(f"SavedModel exported in {time.perf_counter() - t:.1f}s", flush=True)
        loaded = tf.saved_model.load(sm_dir)
    if "saved_model" in fmts:
        sig = loaded.signatures["serve_crops"]
        for b in args.batches:
            bench.run("saved_model", b,
                      lambda b=b: {k: v.numpy() for k, v in
                                   sig(images=tf.constant(crops[b])).items()})

    for q in TFLITE:
        if f"tflite_{q}" not in fmts:
            continue
        from prtr_tf.export import tflite
        extra = {"xnnpack": bool(args.xnnpack)}
        rep = None
        if q == "int8_full":
            extra.update(calibration=args.num_calibration,
                         calibration_data=args.calibration_data)
        for b in args.batches:
            try:
                t = time.perf_counter()
                suffix = (f"_cal{args.num_calibration}{args.calibration_data}"
                          if q == "int8_full" else "")
                path = os.path.join(workdir, f"keypoints_{q}{suffix}_b{b}.tflite")
                if not os.path.exists(path):
                    if q == "int8_full" and rep is None:
                        rep = tflite.representative_crops(config, args.num_calibration,
                                                          args.calibration_data,
                                                          seed=args.seed)
                        if len(rep) < b:  # at least one calibration batch
                            rep = np.concatenate([rep] * (-(-b // len(rep))))
                    tflite.save_tflite(tflite.convert_keypoint_model(
                        model, config, q, batch_size=b,
                        representative_crops=rep if q == "int8_full" else None), path)
                print(f"tflite {q} b={b} converted in {time.perf_counter() - t:.1f}s "
                      f"({os.path.getsize(path) / 2**20:.2f} MiB)", flush=True)
                interp = tflite.make_interpreter(path, use_xnnpack=args.xnnpack,
                                                 num_threads=args.threads)
                runner = interp.get_signature_runner()
                name = list(runner.get_input_details())[0]
            except Exception as e:  # noqa: BLE001
                print(f"tflite_{q} b={b} FAILED to convert: {type(e).__name__}: {e}",
                      flush=True)
                continue
            bench.run(f"tflite_{q}", b,
                      lambda b=b, runner=runner, name=name: runner(**{name: crops[b]}),
                      extra=extra)

    if "onnx" in fmts:
        import onnxruntime as ort
        onnx_path = os.path.join(workdir, "serve_crops.onnx")
        try:
            t = time.perf_counter()
            if not os.path.exists(onnx_path):
                sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
                from export.onnx import convert
                convert(sm_dir, onnx_path, "serve_crops")
            print(f"ONNX converted in {time.perf_counter() - t:.1f}s", flush=True)
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
            in_name = sess.get_inputs()[0].name
            for b in args.batches:
                bench.run("onnx", b, lambda b=b: sess.run(None, {in_name: crops[b]}))
        except Exception as e:  # noqa: BLE001
            print(f"onnx FAILED: {type(e).__name__}: {e}", flush=True)

    image = rng.integers(0, 256, args.image_size + (3,), dtype=np.uint8)
    pipe_extra = {"image_hw": list(args.image_size), "det_test_size": args.det_test_size,
                  "det_max_size": args.det_max_size}
    if any(f in fmts for f in ("detector", "pipeline_estimator", "pipeline_breakdown")):
        from prtr_tf.detector.predict import DetrPersonDetector
        from prtr_tf.serving.estimator import PoseEstimator
        det = DetrPersonDetector(detector, det_config, score_threshold=0.0)
        k = args.persons
        boxes_in = []

        def top_k(img):
            boxes, scores = det(img)
            order = np.argsort(-scores)[:k]
            boxes_in.append(len(order))
            return boxes[order], scores[order]
    if "detector" in fmts:
        bench.run("detector", 1, lambda: det(image), unit="image", extra=pipe_extra)
    if "pipeline_estimator" in fmts:

        estimator = PoseEstimator(model, config, detector=top_k, flip_test=False,
                                  box_threshold=0.0)
        n = len(estimator(image))
        bench.run("pipeline_estimator", 1, lambda: estimator(image), unit="image",
                  extra=dict(pipe_extra, crops=boxes_in[-1], persons_out=n))
    if "pipeline_breakdown" in fmts:
        pipeline_breakdown(bench, model, config, top_k, image, boxes_in,
                           dict(pipe_extra, persons=args.persons))
    if "pipeline_saved_model" in fmts:
        sig = loaded.signatures["serving_default"]
        out = sig(image=tf.constant(image))
        n = int(out["num_persons"].numpy())
        bench.run("pipeline_saved_model", 1,
                  lambda: {k: v.numpy() for k, v in sig(image=tf.constant(image)).items()},
                  unit="image", extra=dict(pipe_extra, crops=args.persons, persons_out=n))
    print(f"loadavg at end: {os.getloadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
