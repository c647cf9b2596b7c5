"""Held-out keypoint AP of every TFLite variant of a trained keypoint model, against the
Keras model itself (`measure_variants`; the command line is
``tools/measure_tflite.py``).

The held-out crops (ground-truth boxes, `prtr_tf.models.keypoint.data.build_eval_dataset`,
no augmentation) are made once (`eval_crops`). The Keras model reads them with the
evaluation's own `prtr_tf.models.keypoint.predict.predict_dataset` (model -> readout ->
crop -> image); every TFLite variant (`prtr_tf.export.tflite.convert_keypoint_model`:
the readout, `read_crops`, is in the graph) runs them one by one (batch 1) through
`prtr_tf.export.tflite.make_interpreter` with XNNPACK or the builtin kernels, its
``keypoints`` / ``keypoint_scores`` outputs mapped back to the image by the same
`crop_to_image`. Both are scored by the same `prtr_tf.models.keypoint.evaluate.coco_metrics`
(rescoring, OKS-NMS, pycocotools). The latency is the median wall time of one
``runner(images=crop)`` call over the held-out crops (after ``warmup`` untimed calls),
on whatever else the machine is doing (``loadavg`` and ``others_cores`` are recorded).
"""
import collections
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from prtr_tf.export.tflite.convert import QUANTIZATIONS

KERNELS = ("xnnpack", "builtin")
FIELDS = ("variant", "kernels", "AP", "AP50", "AP_delta", "size_mb", "ms_per_crop")
META = ("center", "scale", "box_score", "image_id", "index")


def eval_crops(config, split="val"):
    """The crops of ``split``'s ground-truth boxes as the evaluation makes them
    (`prtr_tf.models.keypoint.evaluate.predict_split`'s records and dataset): a dict of NumPy
    arrays ``image`` (N, H, W, 3) float32 and the `META` fields, plus ``records``."""
    from prtr_tf.models.keypoint.data import build_eval_dataset
    from prtr_tf.data.skips import SkipCounter
    from prtr_tf.data.splits import load_records

    skips = SkipCounter()
    records = load_records(config, split, skip_counter=skips)
    parts = collections.defaultdict(list)
    for batch in build_eval_dataset(records, config, batch=config.test.batch_size,
                                    skip_counter=skips):
        for key in ("image",) + META:
            parts[key].append(batch[key].numpy())
    data = {k: np.concatenate(v) for k, v in parts.items()}
    data["records"] = records
    return data


def _batches(data, batch):
    """``data`` as the batched eval elements `predict_dataset` iterates over."""
    import tensorflow as tf
    fields = {k: data[k] for k in ("image",) + META}
    return tf.data.Dataset.from_tensor_slices(fields).batch(batch)


def keras_predictions(model, config, data, flip_test=False):
    """The Keras path: `predict_dataset` (as `validate`) over the crops of ``data``."""
    from prtr_tf.data import keypoint_sets
    from prtr_tf.models.keypoint.predict import predict_dataset
    return predict_dataset(model, _batches(data, config.test.batch_size),
                           tuple(config.model.image_size),
                           keypoint_sets.flip_pairs_of(config, flip_test), config.data.pixel_std)


def tflite_predictions(flatbuffer, config, data, use_xnnpack, threads=2, warmup=3):
    """Runs every crop of ``data`` (batch 1) through the model; returns (predictions as
    `predict_dataset`'s, the per-call seconds, a function timing one more call)."""
    import tensorflow as tf
    from prtr_tf.export.tflite.runtime import make_interpreter
    from prtr_tf.models.keypoint.predict import crop_to_image

    runner = make_interpreter(flatbuffer, use_xnnpack=use_xnnpack,
                              num_threads=threads).get_signature_runner()
    (name,) = list(runner.get_input_details())
    images = data["image"]
    for _ in range(warmup):
        runner(**{name: images[:1]})
    coords, scores, times = [], [], []
    for i in range(len(images)):
        t = time.perf_counter()
        out = runner(**{name: images[i:i + 1]})
        times.append(time.perf_counter() - t)
        coords.append(np.asarray(out["keypoints"]))
        scores.append(np.asarray(out["keypoint_scores"]))
    coords, scores = np.concatenate(coords), np.concatenate(scores)
    xy = crop_to_image(tf.constant(coords), tf.constant(data["center"]),
                       tf.constant(data["scale"]), tuple(config.model.image_size),
                       config.data.pixel_std).numpy()
    preds = {k: data[k] for k in META}
    preds["keypoints"] = np.concatenate([xy, scores[..., None]], axis=-1)

    def timed_call(i):
        t = time.perf_counter()
        runner(**{name: images[i % len(images)][None]})
        return time.perf_counter() - t
    return preds, times, timed_call


def score(preds, config, data, split="val"):
    """COCO keypoint stats of predictions (`prtr_tf.models.keypoint.evaluate.coco_metrics`)."""
    from prtr_tf.models.keypoint.evaluate import coco_metrics
    return coco_metrics(preds, config, split, records=data["records"])[0]


def convert_variant(model, config, quantization, calibration=None, flip_test=False,
                    folder=None):
    """`convert_keypoint_model` (batch 1), saved as ``folder``/keypoints_{q}.tflite
    (+ .json) when ``folder`` is given. Returns the flatbuffer bytes."""
    from prtr_tf.export.tflite.convert import convert_keypoint_model
    from prtr_tf.export.tflite.files import save_tflite
    fb = convert_keypoint_model(model, config, quantization,
                                calibration if quantization == "int8_full" else None,
                                flip_test=flip_test, batch_size=1)
    if folder:
        os.makedirs(folder, exist_ok=True)
        save_tflite(fb, os.path.join(folder, f"keypoints_{quantization}.tflite"))
    return fb


def measure_variants(model, config, split="val", data=None, quantizations=QUANTIZATIONS,
                     kernels=KERNELS, threads=2, flip_test=False, calibration=None,
                     num_calibration=200, calibration_data="train", folder=None, warmup=3,
                     rounds=3, calls=30, stream=None):
    """Converts the trained keypoint ``model`` (of ``config``) to every TFLite variant
    in ``quantizations`` and scores each, with each of ``kernels`` ("xnnpack",
    "builtin"), on the held-out crops of ``split`` (ground-truth boxes; or ``data``,
    from `eval_crops`) against the Keras model.

    ``calibration``: float32 crops for "int8_full" (default: ``num_calibration``
    `representative_crops` of ``calibration_data``: the training set, never the
    held-out one). ``folder``: where the .tflite files are written (default: not kept).
    Latency: after the scoring, ``rounds`` rounds of ``calls`` batch-1 calls of every
    variant in turn (so that a change of the machine's load affects all alike).

    Returns rows (dicts, the Keras one first) with `FIELDS`: ``AP`` / ``AP50`` as
    fractions, ``AP_delta`` = (AP - Keras AP) in AP points (x100), ``size_mb`` the
    file in MB (1e6 bytes), ``ms_per_crop`` the median of the interleaved calls
    (``ms_eval_loop``: the median over the scoring pass); and ``mean_px``/``max_px``:
    the joints' distance to the Keras ones (image pixels), ``ms_min``, ``threads``,
    ``crops``, ``loadavg``, ``others_cores`` (of the scoring pass), and with XNNPACK
    `xnnpack_coverage`'s ``xnnpack_ops``, ``xnnpack_partitions``, ``not_delegated``.
    """
    from prtr_tf.training.timing import CpuMeter

    stream = stream or sys.stdout
    bad = [k for k in kernels if k not in KERNELS] + \
        [q for q in quantizations if q not in QUANTIZATIONS]
    if bad:
        raise ValueError(f"unknown kernels/quantizations {bad}: choose from {KERNELS} and "
                         f"{QUANTIZATIONS}")

    def say(message):
        print(message, file=stream, flush=True)

    if data is None:
        data = eval_crops(config, split)
    n = len(data["image"])
    keras_preds = keras_predictions(model, config, data, flip_test)
    keras_stats = score(keras_preds, config, data, split)
    keras_ap = keras_stats["AP"]
    say(f"keras: AP {100 * keras_ap:.2f} (AP .5 {100 * keras_stats['AP .5']:.2f}) on {n} "
        f"held-out crops of {split}")
    rows = [{"variant": "keras", "kernels": "tensorflow", "AP": keras_ap,
             "AP50": keras_stats["AP .5"], "AP_delta": 0.0, "size_mb": None,
             "ms_per_crop": None, "crops": n}]
    if "int8_full" in quantizations and calibration is None:
        from prtr_tf.export.tflite.calibration import representative_crops
        calibration = representative_crops(config, num_calibration, calibration_data)
    timers = []
    with tempfile.TemporaryDirectory() as tmp:
        for q in quantizations:
            t = time.perf_counter()
            fb = convert_variant(model, config, q, calibration, flip_test, folder or tmp)
            say(f"{q}: converted in {time.perf_counter() - t:.0f} s, {len(fb) / 1e6:.2f} MB")
            for k in kernels:
                with CpuMeter() as meter:
                    preds, times, timed = tflite_predictions(fb, config, data,
                                                             k == "xnnpack", threads, warmup)
                timers.append(timed)
                stats = score(preds, config, data, split)
                dev = np.linalg.norm(preds["keypoints"][..., :2]
                                     - keras_preds["keypoints"][..., :2], axis=-1)
                row = {"variant": q, "kernels": k, "AP": stats["AP"], "AP50": stats["AP .5"],
                       "AP_delta": 100.0 * (stats["AP"] - keras_ap),
                       "size_mb": len(fb) / 1e6,
                       "ms_per_crop": 1e3 * statistics.median(times),
                       "ms_eval_loop": 1e3 * statistics.median(times),
                       "ms_min": 1e3 * min(times), "mean_px": float(dev.mean()),
                       "max_px": float(dev.max()), "threads": threads, "crops": n,
                       "loadavg": round(os.getloadavg()[0], 2), **meter.stats}
                if k == "xnnpack":
                    cover = xnnpack_coverage(fb, threads)
                    row.update(xnnpack_partitions=cover["partitions"],
                               xnnpack_ops=f"{cover['delegated']}/{cover['ops']}",
                               not_delegated=cover["left"])
                rows.append(row)
                say(f"  {q:9s} {k:8s} AP {100 * row['AP']:6.2f} ({row['AP_delta']:+.2f}) "
                    f"{row['ms_per_crop']:7.2f} ms/crop  joints {row['mean_px']:.3f} px "
                    f"(max {row['max_px']:.2f}) from Keras  load {row['loadavg']}")
    if rounds and calls:
        say(f"latency: {rounds} rounds of {calls} calls of each variant in turn")
        spent = [[] for _ in timers]
        for _ in range(rounds):
            for timed, out in zip(timers, spent):
                out.extend(timed(i) for i in range(calls))
        for row, out in zip(rows[1:], spent):
            row.update(ms_per_crop=1e3 * statistics.median(out), ms_min=1e3 * min(out),
                       loadavg_latency=round(os.getloadavg()[0], 2))
            say(f"  {row['variant']:9s} {row['kernels']:8s} {row['ms_per_crop']:7.2f} ms/crop "
                f"(min {row['ms_min']:.2f})")
    return rows


def xnnpack_coverage(flatbuffer, threads=2):
    """What XNNPACK takes of a model's main subgraph: {"ops", "delegated", "partitions",
    "left": {"OP(dtype of output 0)": count}} of the ops it leaves to the builtin
    kernels. From the interpreter with the delegate applied (`_get_ops_details()`
    lists the original ops and one DELEGATE op per partition): an op is delegated
    when a partition's outputs depend on it without passing the partition's inputs."""
    from prtr_tf.export.tflite.runtime import make_interpreter

    interp = make_interpreter(flatbuffer, use_xnnpack=True, num_threads=threads)
    ops = interp._get_ops_details()  # noqa: SLF001 - the only op-level view it offers
    dtype = {t["index"]: np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    original = [o for o in ops if o["op_name"] != "DELEGATE"]
    producer = {int(t): o for o in original for t in o["outputs"]}
    delegated, partitions = set(), [o for o in ops if o["op_name"] == "DELEGATE"]
    for part in partitions:
        stop, todo = {int(t) for t in part["inputs"]}, [int(t) for t in part["outputs"]]
        while todo:
            t = todo.pop()
            op = producer.get(t)
            if t in stop or op is None or op["index"] in delegated:
                continue
            delegated.add(op["index"])
            todo.extend(int(x) for x in op["inputs"] if x >= 0)
    left = collections.Counter(
        f"{o['op_name']}({dtype.get(int(o['outputs'][0]), '?')})"
        for o in original if o["index"] not in delegated)
    return {"ops": len(original), "delegated": len(delegated), "partitions": len(partitions),
            "left": dict(sorted(left.items()))}


def markdown_table(rows):
    """The rows as a markdown table (AP in points)."""
    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    lines = ["| variant | kernels | AP (%) | AP .5 (%) | AP delta vs Keras (points) | "
             "size (MB) | ms/crop "
             "(median) | joints vs Keras, mean / max px | XNNPACK: ops delegated, "
             "partitions |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        px = (f"{r['mean_px']:.3f} / {r['max_px']:.2f}" if "mean_px" in r else "-")
        lines.append(f"| {r['variant']} | {r['kernels']} | {100 * r['AP']:.2f} | "
                     f"{100 * r['AP50']:.2f} | {r['AP_delta']:+.2f} | "
                     f"{fmt(r['size_mb'], '.2f')} | {fmt(r['ms_per_crop'], '.2f')} | {px} | "
                     + (f"{r['xnnpack_ops']}, {r['xnnpack_partitions']} |"
                        if "xnnpack_ops" in r else "- |"))
    return "\n".join(lines)


def fastest_within(rows, max_drop=0.5):
    """The fastest TFLite row whose AP is at most ``max_drop`` AP points below Keras."""
    ok = [r for r in rows if r["ms_per_crop"] is not None and r["AP_delta"] >= -max_drop]
    return min(ok, key=lambda r: r["ms_per_crop"]) if ok else None
