"""The two-stage pipeline rows of `tools.inference_benchmark`: ``detector``,
``pipeline_estimator``, ``pipeline_breakdown`` and ``pipeline_saved_model`` (one image
through the DETR person detector and the keypoint crops of its top boxes)."""
import time

from prtr_tf.training.timing import CpuMeter


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
    medians over the same ``repeats`` calls."""
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
    o = bench.options
    runs = {"total": [], "detector": [], "keypoints": [], "rest": []}
    t0 = time.perf_counter()
    for _ in range(o.warmup):
        estimator(image)
    first = time.perf_counter() - t0
    with CpuMeter() as meter:
        for _ in range(o.repeats):
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


def bench_pipeline(bench, model, config, detector, det_config, loaded, image):
    """detector, pipeline_estimator, pipeline_breakdown, pipeline_saved_model: one
    image through the two-stage pipeline (``loaded``: the SavedModel, or None)."""
    import numpy as np
    import tensorflow as tf

    o, fmts = bench.options, bench.options.formats
    pipe_extra = {"image_hw": list(o.image_size), "det_test_size": o.det_test_size,
                  "det_max_size": o.det_max_size}
    if any(f in fmts for f in ("detector", "pipeline_estimator", "pipeline_breakdown")):
        from prtr_tf.models.detector.predict import DetrPersonDetector
        from prtr_tf.serving.estimator import PoseEstimator
        det = DetrPersonDetector(detector, det_config, score_threshold=0.0)
        boxes_in = []

        def top_k(img):
            boxes, scores = det(img)
            order = np.argsort(-scores)[:o.persons]
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
                           dict(pipe_extra, persons=o.persons))
    if "pipeline_saved_model" in fmts:
        bench_saved_pipeline(bench, "pipeline_saved_model", loaded, image)


def bench_saved_pipeline(bench, fmt, loaded, image):
    """Row ``fmt``: ``image`` through a loaded two-stage SavedModel's serving_default."""
    import tensorflow as tf

    o = bench.options
    sig = loaded.signatures["serving_default"]
    n = int(sig(image=tf.constant(image))["num_persons"].numpy())
    bench.run(fmt, 1, lambda: {k: v.numpy() for k, v in sig(image=tf.constant(image)).items()},
              unit="image", extra={"image_hw": list(o.image_size),
                                   "det_test_size": o.det_test_size,
                                   "det_max_size": o.det_max_size, "crops": o.persons,
                                   "persons_out": n})
