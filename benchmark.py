r"""CPU inference latency of PRTR (two-stage) in every export format.

    python benchmark.py --formats=all --batches=1,8 --repeats=5 --slow_repeats=3 \
        --output=benchmarks/results.json

Keypoint model (config --config, default R50 384x288, readout in the graph, no flip
test) on random normalised crops, per format: ``eager`` (Keras eager,
`predict_crops`), ``function`` (tf.function), ``xla`` (tf.function(jit_compile=True)),
``saved_model`` (signature serve_crops of an exported SavedModel), ``tflite_fp32``,
``tflite_fp16``, ``tflite_int8`` (ai-edge-litert, --threads threads), ``onnx``
(tf2onnx of serve_crops, ONNX Runtime CPU, intra_op_num_threads=--threads). And the
whole two-stage pipeline per image (DETR person detector at shortest side
--det_test_size, then the keypoint crops of the top --persons boxes):
``pipeline_estimator`` (`PoseEstimator` + `DetrPersonDetector`) and
``pipeline_saved_model`` (SavedModel serving_default); ``detector`` times
`DetrPersonDetector` alone on the same image. With random weights every kept box gets
its crop read out, and OKS-NMS then usually leaves one person (near-identical boxes).

Weights are random (latency only). For each (format, batch): --warmup untimed runs
(the first includes tracing/compilation), then --repeats timed runs (--slow_repeats
for eager and batch > 1 of slow formats); the median, min and max are reported in ms
per batch and per crop, with os.getloadavg() at measurement time. Results are printed
as a table and appended to --output (JSON lines) as they come, so a partial run
still leaves numbers.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

FORMATS = ("eager", "function", "xla", "saved_model", "tflite_fp32", "tflite_fp16",
           "tflite_int8", "onnx", "detector", "pipeline_estimator", "pipeline_saved_model")
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
                        "prtr_tf.tflite.run_tflite)")
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
    args.batches = [int(b) for b in args.batches.split(",")]
    args.image_size = tuple(int(v) for v in args.image_size.split(","))
    return args


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import tensorflow as tf
    info = {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "tensorflow": tf.__version__}
    for mod, dist in (("onnxruntime", "onnxruntime"), ("tf2onnx", "tf2onnx"),
                      ("keras", "keras")):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            info[mod] = None
    try:
        from importlib.metadata import version
        info["ai-edge-litert"] = version("ai-edge-litert")
    except Exception:  # noqa: BLE001
        info["ai-edge-litert"] = None
    return info


def time_fn(fn, warmup, repeats):
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return first, times


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
            first, times = time_fn(fn, self.args.warmup, self.repeats(fmt, batch))
        except Exception as e:  # noqa: BLE001
            print(f"{fmt:22s} b={batch:<2d} FAILED: {type(e).__name__}: {e}", flush=True)
            return
        self.record(fmt, batch, first, times, unit, extra)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from prtr_tf.config import load_config
    from prtr_tf.inference import predict_crops
    from prtr_tf.models import build_model

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
                                       "pipeline_saved_model"))
    detector = det_config = None
    if need_det:
        from prtr_tf.models.detr import build_detector
        det_config = load_config(args.detector_config)
        det_config.data.test_size = args.det_test_size
        det_config.data.max_size = args.det_max_size
        detector = build_detector(det_config.model)
        detector(tf.zeros((1, 64, 64, 3)), training=False)

    need_sm = any(f in fmts for f in ("saved_model", "onnx", "pipeline_saved_model"))
    sm_dir = os.path.join(workdir, "saved_model")
    if need_sm:
        from prtr_tf.serving import PoseServing, export_saved_model
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

    for q in ("fp32", "fp16", "int8"):
        if f"tflite_{q}" not in fmts:
            continue
        from prtr_tf import tflite
        for b in args.batches:
            try:
                t = time.perf_counter()
                path = os.path.join(workdir, f"keypoints_{q}_b{b}.tflite")
                if not os.path.exists(path):
                    tflite.save_tflite(tflite.convert_keypoint_model(
                        model, config, q, batch_size=b), path)
                print(f"tflite {q} b={b} converted in {time.perf_counter() - t:.1f}s",
                      flush=True)
                interp = tflite.make_interpreter(path, use_xnnpack=args.xnnpack,
                                                 num_threads=args.threads)
                runner = interp.get_signature_runner()
                name = list(runner.get_input_details())[0]
            except Exception as e:  # noqa: BLE001
                print(f"tflite_{q} b={b} FAILED to convert: {type(e).__name__}: {e}",
                      flush=True)
                continue
            bench.run(f"tflite_{q}", b,
                      lambda b=b, runner=runner, name=name: runner(**{name: crops[b]}))

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
    if "detector" in fmts or "pipeline_estimator" in fmts:
        from prtr_tf.detection.evaluate import DetrPersonDetector
        from prtr_tf.pipeline import PoseEstimator
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
