"""CPU inference latency of PRTR (two-stage) in every export format (`run_benchmark`).

Keypoint model (``Options.config``, default R50 384x288, readout in the graph, no
flip test) on random normalised crops, per format: ``eager`` (Keras eager,
`predict_crops`), ``function`` (tf.function), ``xla`` (tf.function(jit_compile=True)),
``saved_model`` (signature serve_crops of an exported SavedModel), ``function_bf16``,
``saved_model_bf16`` and ``pipeline_saved_model_bf16`` (the same weights computing in
bfloat16, `prtr_tf.nn.precision`: fast with oneDNN on CPUs with AVX512-BF16 or AMX),
``tflite_fp32``,
``tflite_fp16``, ``tflite_int8`` (dynamic range), ``tflite_int8_full`` (full-integer,
calibrated on ``num_calibration`` ``calibration_data`` crops; ai-edge-litert,
``threads`` threads, builtin kernels or ``xnnpack``), ``onnx`` (tf2onnx of
serve_crops, ONNX Runtime CPU, intra_op_num_threads=``threads``), ``pytorch`` (the
official model's forward, `tools.torch_reference`, or for a deformable config
`tools.torch_reference_deformable` with the official pure-PyTorch sampling core;
without the readout; needs the torch extra). The keypoint model is the config's family's
(``configs/coco_deform_res50_384x288.py``: the deformable one; a family whose
``bfloat16_inference`` is off has its bfloat16 rows skipped). With ``fold``
(default) frozen BatchNorm is folded into the
convolutions first, as `prtr_tf.checkpoints.weights.load_model` does. And the whole
two-stage pipeline per image (DETR person detector at shortest side
``det_test_size``, then the keypoint crops of the top ``persons`` boxes):
``pipeline_estimator`` (`PoseEstimator` + `DetrPersonDetector`) and
``pipeline_saved_model`` (SavedModel serving_default); ``detector`` times
`DetrPersonDetector` alone on the same image; ``pipeline_breakdown`` times the stages
inside the same `PoseEstimator` calls (detector, crops -> keypoints, the rest = box
handling, rescoring, OKS-NMS), so that the parts add up to the total by construction.
With random weights every kept box gets its crop read out, and OKS-NMS then usually
leaves one person (near-identical boxes).

Weights are random (latency only). For each (format, batch): ``warmup`` untimed runs
(the first includes tracing/compilation), then ``repeats`` timed runs
(``slow_repeats`` for eager and batch > 1); the median, min and max are reported in
ms per batch and per crop, with os.getloadavg() at measurement time and, over the
timed runs, this process's CPU seconds per wall second (``own_cpu_per_wall``:
~``threads`` when it had the cores) and the cores other processes kept busy
(``others_cores``, from /proc/stat; `prtr_tf.training.timing`). Results are printed as
a table (`Bench`) and appended to ``output`` (JSON lines) as they come, so a partial
run still leaves numbers; at the end every row's ratio to ONNX Runtime and PyTorch
at the same batch (`ratio_table`). The command line is ``benchmark.py``
(`tools.benchmark`).
"""
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time

from prtr_tf.training.timing import time_fn

TFLITE = ("fp32", "fp16", "int8", "int8_full")
FORMATS = ("eager", "function", "xla", "saved_model", "function_bf16", "saved_model_bf16",
           "pipeline_saved_model_bf16", "tflite_fp32", "tflite_fp16",
           "tflite_int8", "tflite_int8_full", "onnx", "pytorch", "detector",
           "pipeline_estimator", "pipeline_saved_model", "pipeline_breakdown")
SLOW = ("eager",)
CALIBRATION_DATA = ("synthetic", "train")
DETECTOR_FORMATS = ("detector", "pipeline_estimator", "pipeline_saved_model",
                    "pipeline_breakdown", "pipeline_saved_model_bf16")
BF16_FORMATS = ("function_bf16", "saved_model_bf16", "pipeline_saved_model_bf16")
SAVED_MODEL_FORMATS = ("saved_model", "onnx", "pipeline_saved_model")


@dataclasses.dataclass
class Options:
    """What `run_benchmark` measures (see the module docstring); the defaults are the
    command line's."""
    config: str = "configs/coco_res50_384x288.py"  # keypoint config
    detector_config: str = "configs/detr_r50_person.py"
    formats: tuple = FORMATS
    batches: tuple = (1, 8)  # keypoint batch sizes
    repeats: int = 5  # timed runs
    slow_repeats: int = 3  # timed runs for eager and for batches > 1
    warmup: int = 1  # untimed runs first
    threads: int = 2  # CPU threads for TF (intra-op), TFLite and ONNX Runtime
    xnnpack: bool = True  # TFLite with the XNNPACK delegate (else builtin kernels)
    num_calibration: int = 16  # tflite_int8_full: calibration crops
    calibration_data: str = "synthetic"  # ... of stick figures, or "train": the config's
    det_test_size: int = 512  # detector shortest side
    det_max_size: int = 853  # detector longest side cap
    image_size: tuple = (480, 640)  # H, W of the synthetic pipeline image
    persons: int = 4  # persons kept per image in the pipeline (top boxes)
    workdir: str = None  # where exported models go (None: a temporary directory)
    output: str = None  # append results as JSON lines here
    seed: int = 0
    fold: bool = True  # frozen BatchNorm folded into the convolutions, as load_model does

    def __post_init__(self):
        self.formats = tuple(self.formats)
        self.batches = tuple(int(b) for b in self.batches)
        self.image_size = tuple(int(v) for v in self.image_size)
        bad = [f for f in self.formats if f not in FORMATS]
        if bad:
            raise ValueError(f"formats: unknown {bad}; choose from {', '.join(FORMATS)}")
        if self.num_calibration < 1:
            raise ValueError(f"num_calibration must be >= 1, got {self.num_calibration}")
        if self.calibration_data not in CALIBRATION_DATA:
            raise ValueError(f"calibration_data must be one of {CALIBRATION_DATA}, got "
                             f"{self.calibration_data!r}")
        if not self.batches or min(self.batches) < 1:
            raise ValueError(f"batches must be sizes >= 1, got {list(self.batches)}")
        if len(self.image_size) != 2:
            raise ValueError(f"image_size must be H,W, got {list(self.image_size)}")


class Bench:
    """The rows measured so far: each printed as a table line as it comes and appended
    to ``options.output`` (JSON lines)."""

    def __init__(self, options):
        self.options = options
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
        self.write(row)

    def write(self, row):
        if self.options.output:
            with open(self.options.output, "a") as f:
                f.write(json.dumps(row) + "\n")

    def repeats(self, fmt, batch):
        o = self.options
        return o.slow_repeats if (fmt in SLOW or batch > 1) else o.repeats

    def run(self, fmt, batch, fn, unit="crop", extra=None):
        try:
            first, times, cpu = time_fn(fn, self.options.warmup, self.repeats(fmt, batch))
        except Exception as e:  # noqa: BLE001
            print(f"{fmt:22s} b={batch:<2d} FAILED: {type(e).__name__}: {e}", flush=True)
            return
        self.record(fmt, batch, first, times, unit, dict(extra or {}, **cpu))


def bench_keypoint_functions(bench, model, crops):
    """eager, function, xla: `predict_crops` as it is, in a tf.function, under XLA."""
    import tensorflow as tf
    from prtr_tf.models.keypoint.predict import predict_crops

    def predict(x):
        return predict_crops(model, x)

    variants = {"eager": predict, "function": tf.function(predict),
                "xla": tf.function(predict, jit_compile=True)}
    for fmt, fn in variants.items():
        if fmt not in bench.options.formats:
            continue
        for b in bench.options.batches:
            bench.run(fmt, b, lambda b=b, fn=fn: [t.numpy() for t in fn(tf.constant(crops[b]))])


def bench_bfloat16(bench, model, config, detector, det_config, crops, image, workdir):
    """function_bf16, saved_model_bf16, pipeline_saved_model_bf16: copies of ``model``
    and ``detector`` (their weights, folded or not) built under the bfloat16 policy, in
    a tf.function and as a two-stage SavedModel (serve_crops; serving_default)."""
    wanted = [f for f in BF16_FORMATS if f in bench.options.formats]
    if not wanted:
        return
    from prtr_tf.models.registry import get
    family = get(config)
    if not family.bfloat16_inference:
        print(f"{', '.join(wanted)} skipped: the {family.title} runs in float32 only "
              "(load_model refuses --precision=bfloat16)", flush=True)
        return
    import tensorflow as tf
    from prtr_tf.models.keypoint.predict import predict_crops
    from prtr_tf.nn.fold import fold_frozen_batchnorm
    from prtr_tf.nn.precision import bfloat16_note, dtype_policy
    from tools.benchmark_pipeline import bench_saved_pipeline

    print(bfloat16_note() or "bfloat16: oneDNN with AVX512-BF16 or AMX-BF16", flush=True)
    copies = []
    for original, model_config in ((model, config), (detector, det_config)):
        if original is None:
            copies.append(None)
            continue
        with dtype_policy("bfloat16"):  # the config's family's model (vanilla, deformable)
            copy = get(model_config).build(model_config.model)
        copy.set_weights(original.get_weights())  # folded weights also read as unfolded
        fold_frozen_batchnorm(copy)  # the same graph as the float32 model's
        copies.append(copy)
    bf16, bf16_detector = copies
    fns = {}
    if "function_bf16" in wanted:
        fns["function_bf16"] = tf.function(lambda x: predict_crops(bf16, x))
    loaded = None
    if "saved_model_bf16" in wanted or "pipeline_saved_model_bf16" in wanted:
        from prtr_tf.serving.saved_model import export_saved_model
        from prtr_tf.models.keypoint.serving import PoseServing
        path = os.path.join(workdir, "saved_model_bf16")
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            export_saved_model(PoseServing(bf16, config, bf16_detector, det_config,
                                           score_threshold=0.0,
                                           max_persons=bench.options.persons,
                                           flip_test=False), path)
        loaded = tf.saved_model.load(path)
    if "saved_model_bf16" in wanted:
        sig = loaded.signatures["serve_crops"]
        fns["saved_model_bf16"] = lambda x: sig(images=x)
    for fmt, fn in fns.items():
        for b in bench.options.batches:
            bench.run(fmt, b, lambda b=b, fn=fn: tf.nest.map_structure(
                lambda t: t.numpy(), fn(tf.constant(crops[b]))))
    if "pipeline_saved_model_bf16" in wanted:
        bench_saved_pipeline(bench, "pipeline_saved_model_bf16", loaded, image)


def bench_tflite(bench, model, config, crops, workdir):
    """tflite_*: the keypoint model converted per quantization and batch (cached in
    ``workdir``), run by the TFLite interpreter."""
    quantizations = [q for q in TFLITE if f"tflite_{q}" in bench.options.formats]
    if not quantizations:
        return
    import numpy as np
    from prtr_tf.export.tflite.calibration import representative_crops
    from prtr_tf.export.tflite.convert import convert_keypoint_model
    from prtr_tf.export.tflite.files import save_tflite
    from prtr_tf.export.tflite.runtime import make_interpreter

    o = bench.options
    for q in quantizations:
        extra = {"xnnpack": bool(o.xnnpack)}
        rep = None
        if q == "int8_full":
            extra.update(calibration=o.num_calibration, calibration_data=o.calibration_data)
        for b in o.batches:
            try:
                t = time.perf_counter()
                suffix = (f"_cal{o.num_calibration}{o.calibration_data}"
                          if q == "int8_full" else "")
                path = os.path.join(workdir, f"keypoints_{q}{suffix}_b{b}.tflite")
                if not os.path.exists(path):
                    if q == "int8_full" and rep is None:
                        rep = representative_crops(config, o.num_calibration, o.calibration_data,
                                                   seed=o.seed)
                        if len(rep) < b:  # at least one calibration batch
                            rep = np.concatenate([rep] * (-(-b // len(rep))))
                    save_tflite(convert_keypoint_model(
                        model, config, q, batch_size=b,
                        representative_crops=rep if q == "int8_full" else None), path)
                print(f"tflite {q} b={b} converted in {time.perf_counter() - t:.1f}s "
                      f"({os.path.getsize(path) / 2**20:.2f} MiB)", flush=True)
                interp = make_interpreter(path, use_xnnpack=o.xnnpack, num_threads=o.threads)
                runner = interp.get_signature_runner()
                name = list(runner.get_input_details())[0]
            except Exception as e:  # noqa: BLE001
                print(f"tflite_{q} b={b} FAILED to convert: {type(e).__name__}: {e}",
                      flush=True)
                continue
            bench.run(f"tflite_{q}", b,
                      lambda b=b, runner=runner, name=name: runner(**{name: crops[b]}),
                      extra=extra)


def bench_onnx(bench, crops, sm_dir, workdir):
    """onnx: serve_crops of the SavedModel through tf2onnx, run by ONNX Runtime."""
    import onnxruntime as ort

    from prtr_tf.export.onnx import convert

    o = bench.options
    onnx_path = os.path.join(workdir, "serve_crops.onnx")
    try:
        t = time.perf_counter()
        if not os.path.exists(onnx_path):
            convert(sm_dir, onnx_path, "serve_crops")
        print(f"ONNX converted in {time.perf_counter() - t:.1f}s", flush=True)
        so = ort.SessionOptions()
        so.intra_op_num_threads = o.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name
        for b in o.batches:
            bench.run("onnx", b, lambda b=b: sess.run(None, {in_name: crops[b]}))
    except Exception as e:  # noqa: BLE001
        print(f"onnx FAILED: {type(e).__name__}: {e}", flush=True)


def bench_pytorch(bench, config, crops):
    """pytorch: the official two-stage model's forward (`tools.torch_reference`,
    checked against the official outputs in the tests) at the same sizes and threads;
    its readout (scipy in the official code) is not included."""
    try:
        import torch  # noqa: F401
    except ImportError as e:
        print(f"pytorch FAILED: the torch extra is not installed ({e}); "
              "pip install -e '.[torch]'", flush=True)
        return
    from tools.torch_reference import build_reference, time_reference

    m = config.model
    spec = {"backbone": m.backbone, "num_joints": m.num_joints,
            "image_size_hw": list(m.image_size), "hidden_dim": m.hidden_dim,
            "nheads": m.nheads, "enc_layers": m.enc_layers, "dec_layers": m.dec_layers,
            "dim_feedforward": m.dim_feedforward, "num_queries": m.num_queries}
    if m.get("num_feature_levels"):  # the deformable model's fields
        from tools.torch_reference_deformable import DEFORMABLE_FIELDS, build_reference
        spec.update({k: m[k] for k in DEFORMABLE_FIELDS})
    try:
        reference = build_reference(spec)
    except ValueError as e:
        print(f"pytorch FAILED: {e}", flush=True)
        return
    o = bench.options
    for b in o.batches:
        first = time.perf_counter()
        times = time_reference(reference, b, o.threads, bench.repeats("pytorch", b))
        bench.record("pytorch", b, time.perf_counter() - first - sum(times), times,
                     extra={"readout": False})


def ratio_table(rows):
    """Markdown: every keypoint row's median against ONNX Runtime's and PyTorch's at
    the same batch, from the same run (blank where that row was not measured)."""
    ref = {(r["format"], r["batch"]): r["median_ms"] for r in rows}
    lines = ["| format | batch | ms / batch | vs ONNX Runtime | vs PyTorch |",
             "|---|---|---|---|---|"]
    for r in rows:
        if r["per"] != "crop":
            continue
        cells = [f"{r['median_ms'] / ref[(other, r['batch'])]:.2f}x"
                 if (other, r["batch"]) in ref else "" for other in ("onnx", "pytorch")]
        lines.append(f"| {r['format']} | {r['batch']} | {r['median_ms']:.1f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_benchmark(options):
    """Measures every format of ``options`` (an `Options`; see the module docstring);
    returns the `Bench` with its rows."""
    import numpy as np
    import tensorflow as tf

    from prtr_tf.config import load_config
    from prtr_tf.models.registry import build_model
    from prtr_tf.nn.fold import fold_frozen_batchnorm
    from tools.benchmark_pipeline import bench_pipeline
    from tools.machine import machine_info

    o, fmts = options, options.formats
    tf.config.threading.set_intra_op_parallelism_threads(o.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    bench = Bench(o)
    info = machine_info()
    info.update(threads=o.threads, argv=sys.argv, loadavg_start=os.getloadavg())
    print(json.dumps(info), flush=True)
    bench.write({"machine": info})

    workdir = o.workdir or tempfile.mkdtemp(prefix="prtr_bench_")
    os.makedirs(workdir, exist_ok=True)
    config = load_config(o.config)
    h, w = (int(s) for s in config.model.image_size)
    tf.keras.utils.set_random_seed(o.seed)
    model = build_model(config)  # the config's family's keypoint model
    rng = np.random.default_rng(o.seed)
    crops = {b: rng.standard_normal((b, h, w, 3)).astype(np.float32) for b in o.batches}
    model(tf.constant(crops[o.batches[0]][:1]), training=False)  # build
    if o.fold:
        fold_frozen_batchnorm(model)
    bench_keypoint_functions(bench, model, crops)

    detector = det_config = None
    if any(f in fmts for f in DETECTOR_FORMATS):
        from prtr_tf.models.detector.model import build_detector
        det_config = load_config(o.detector_config)
        det_config.data.test_size = o.det_test_size
        det_config.data.max_size = o.det_max_size
        detector = build_detector(det_config.model)
        detector(tf.zeros((1, 64, 64, 3)), training=False)
        if o.fold:
            fold_frozen_batchnorm(detector)

    sm_dir = os.path.join(workdir, "saved_model")
    loaded = None
    if any(f in fmts for f in SAVED_MODEL_FORMATS):
        from prtr_tf.serving.saved_model import export_saved_model
        from prtr_tf.models.keypoint.serving import PoseServing
        t = time.perf_counter()
        serving = PoseServing(model, config, detector, det_config, score_threshold=0.0,
                              max_persons=o.persons, flip_test=False)
        if not os.path.exists(os.path.join(sm_dir, "saved_model.pb")):
            export_saved_model(serving, sm_dir)
        print(f"SavedModel exported in {time.perf_counter() - t:.1f}s", flush=True)
        loaded = tf.saved_model.load(sm_dir)
    if "saved_model" in fmts:
        sig = loaded.signatures["serve_crops"]
        for b in o.batches:
            bench.run("saved_model", b,
                      lambda b=b: {k: v.numpy() for k, v in
                                   sig(images=tf.constant(crops[b])).items()})
    bench_tflite(bench, model, config, crops, workdir)
    if "onnx" in fmts:
        bench_onnx(bench, crops, sm_dir, workdir)
    if "pytorch" in fmts:
        bench_pytorch(bench, config, crops)
    image = rng.integers(0, 256, o.image_size + (3,), dtype=np.uint8)
    bench_pipeline(bench, model, config, detector, det_config, loaded, image)
    bench_bfloat16(bench, model, config, detector, det_config, crops, image, workdir)
    print(f"loadavg at end: {os.getloadavg()}", flush=True)
    print(ratio_table(bench.rows), flush=True)
    return bench
