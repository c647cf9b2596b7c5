"""Frames per second of ``predict.py`` on a video, per backend, batch and with or
without tracking (docs/inference.md, "Video").

    python -m tools.video_benchmark                      # keras, saved_model, tflite
    python -m tools.video_benchmark --backends=keras --batches=1,2,4,8

The models are the demo's (configs/demo_keypoints.py + configs/demo_detector.py: the
tiny ResNet and 2+2-layer Transformers, 128x96 crops, 10 detector queries) with random
weights: the throughput is that of the trained models, the poses are not. The
detector's class head is set to P(person) = 0.9 for every query, so each frame has
10 boxes and 10 keypoint crops (then OKS-NMS), an upper bound for this detector. The
clip: ``--frames`` frames of 640x480 moving stick figures
(`prtr_tf.inference.synthetic_clip`) as an H.264 mp4.

Each run is `prtr_tf.inference.video_predict.predict_video` as ``predict.py`` runs it:
decoding, the models (``--batch`` frames per call: `PoseEstimator.predict_batch` batches
the DETR call and the crops of all frames; the TFLite detector is exported with that
batch; a SavedModel runs one frame per call), drawing, H.264 encoding and the JSON
Lines. After one untimed warm-up run on ``--warmup`` frames (at least two batches:
tracing), fps = frames /
wall seconds of the timed run, and "CPU ms/frame" this process's CPU time (all its
threads) per frame, less disturbed than the wall time by other processes on a shared
machine; "tracker ms/frame" times `PoseTracker.update` alone on the persons of that
run. The load average is printed with each row.
"""
import json
import os
import tempfile
import time

import numpy as np
from absl import app, flags

from prtr_tf.config import load_config
from prtr_tf.export import tflite
from prtr_tf.inference.synthetic_clip import make_clip
from prtr_tf.inference.tracking import PoseTracker
from prtr_tf.inference.video import open_source
from prtr_tf.inference.video_out import VideoWriter
from prtr_tf.inference.video_predict import VideoOptions, predict_video
from prtr_tf.models.detector.model import build_detector
from prtr_tf.models.detector.records import person_label
from prtr_tf.models.detector.resize import resize_size
from prtr_tf.models.detector.predict import DetrPersonDetector
from prtr_tf.models.keypoint.model import build_model
from prtr_tf.models.keypoint.serving import PoseServing
from prtr_tf.serving.backends import SavedModelEstimator, TFLiteDetector, TFLiteEstimator
from prtr_tf.serving.estimator import PoseEstimator
from prtr_tf.serving.saved_model import export_saved_model
from tools.machine import cpu_model

BACKENDS = ("keras", "saved_model", "tflite")
FLAGS = flags.FLAGS
flags.DEFINE_list("backends", list(BACKENDS), "Subset of: " + ", ".join(BACKENDS))
flags.DEFINE_list("batches", ["1", "4"], "Frames per model call to measure.")
flags.DEFINE_integer("frames", 40, "Frames of the timed clip.")
flags.DEFINE_integer("warmup", 8, "Frames of the untimed first run (tracing; at least "
                     "two batches).")
flags.DEFINE_integer("width", 640, "Clip width.")
flags.DEFINE_integer("height", 480, "Clip height.")
flags.DEFINE_string("output", None, "Also append the rows to this JSON Lines file.")


def confident_detector(det_config):
    """The demo detector with random weights and P(person) = 0.9 for every query."""
    detector = build_detector(det_config.model)
    kernel, bias = detector.class_embed.weights
    kernel.assign(np.zeros(kernel.shape))
    logits = np.zeros(bias.shape)
    logits[person_label(det_config)] = np.log(0.9 * (len(logits) - 1) / 0.1)
    bias.assign(logits)
    return detector


def build(backend, batch, models, tmp):
    """The estimator of ``backend`` (the exports written into ``tmp`` once)."""
    model, config, detector, det_config = models
    if backend == "keras":
        return PoseEstimator(model, config, DetrPersonDetector(detector, det_config, 0.1),
                             box_threshold=0.1)
    if backend == "saved_model":
        path = os.path.join(tmp, "saved_model")
        if not os.path.isdir(path):
            export_saved_model(PoseServing(model, config, detector, det_config,
                                           score_threshold=0.1, max_persons=10), path)
        return SavedModelEstimator(path)
    kp = os.path.join(tmp, "kp.tflite")
    if not os.path.isfile(kp):
        tflite.save_tflite(tflite.convert_keypoint_model(model, config, "fp32", batch_size=16),
                           kp)
    det = os.path.join(tmp, f"det_b{batch}.tflite")
    if not os.path.isfile(det):
        size = [int(v) for v in resize_size(FLAGS.height, FLAGS.width,
                                            det_config.data.test_size,
                                            det_config.data.max_size)]
        tflite.save_tflite(tflite.convert_detector(detector, det_config, size, "fp32",
                                                   batch_size=batch), det)
    return TFLiteEstimator(kp, config, TFLiteDetector(det, 0.1), box_threshold=0.1)


def run(estimator, clip_path, out, batch, track, frames):
    options = VideoOptions(batch=batch, progress_every_s=1e9,
                           make_tracker=(lambda: PoseTracker(score_key="box_score"))
                           if track else None)
    with open_source(clip_path, max_frames=frames) as source:
        start, cpu = time.perf_counter(), time.process_time()
        predict_video(estimator, source, out, "bench", options=options, log=lambda s: None)
        return time.perf_counter() - start, time.process_time() - cpu


def tracker_ms(jsonl_path, image_size):
    """ms per frame of `PoseTracker.update` on the persons of a run."""
    frames = [json.loads(line)["persons"] for line in open(jsonl_path)]
    persons = [[{"box": p["box"], "score": p["score"], "box_score": p["box_score"],
                 "keypoints": np.asarray(p["keypoints"])} for p in f] for f in frames]
    tracker = PoseTracker(score_key="box_score")
    start = time.perf_counter()
    for f in persons:
        tracker.update(f, image_size=image_size)
    return 1000.0 * (time.perf_counter() - start) / len(persons), np.mean([len(f) for f in frames])


def main(argv):
    del argv
    unknown = set(FLAGS.backends) - set(BACKENDS)
    if unknown:
        raise app.UsageError(f"--backends: unknown {sorted(unknown)}; choose from {BACKENDS}")
    batches = [int(b) for b in FLAGS.batches]
    config = load_config("demo_keypoints")
    det_config = load_config("demo_detector")
    models = (build_model(config.model), config, confident_detector(det_config), det_config)
    tmp = tempfile.mkdtemp(prefix="video_benchmark_")
    clip = make_clip(num_frames=FLAGS.frames, size=(FLAGS.width, FLAGS.height))
    clip_path = os.path.join(tmp, "clip.mp4")
    with VideoWriter(clip_path, fps=clip.fps) as writer:
        for frame in clip.frames:
            writer.write(frame)
    print(f"host: {cpu_model()}, {os.cpu_count()} CPUs; clip {FLAGS.width}x{FLAGS.height}, "
          f"{FLAGS.frames} frames; {time.strftime('%Y-%m-%d')}")
    header = ("| backend | batch | fps | CPU ms/frame | fps --track | CPU ms/frame --track | "
              "tracker ms/frame | persons/frame |")
    rows = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    print(header)
    for backend in FLAGS.backends:
        for batch in batches:
            estimator = build(backend, batch, models, tmp)
            out = os.path.join(tmp, f"{backend}_{batch}")
            # tracing: two full batches at least (the first full batch traces anew)
            run(estimator, clip_path, out, batch, False, max(FLAGS.warmup, 2 * batch))
            plain, plain_cpu = run(estimator, clip_path, out, batch, False, FLAGS.frames)
            tracked, tracked_cpu = run(estimator, clip_path, out, batch, True, FLAGS.frames)
            ms, persons = tracker_ms(os.path.join(out, "bench_pose.jsonl"),
                                     (FLAGS.width, FLAGS.height))
            row = (f"| {backend} | {batch} | {FLAGS.frames / plain:.2f} | "
                   f"{1000 * plain_cpu / FLAGS.frames:.0f} | {FLAGS.frames / tracked:.2f} | "
                   f"{1000 * tracked_cpu / FLAGS.frames:.0f} | {ms:.2f} | {persons:.1f} |")
            rows.append(row)
            print(row, f"(load {os.getloadavg()[0]:.1f})", flush=True)
            if FLAGS.output:
                with open(FLAGS.output, "a") as f:
                    f.write(json.dumps({"backend": backend, "batch": batch,
                                        "fps": FLAGS.frames / plain,
                                        "fps_track": FLAGS.frames / tracked,
                                        "cpu_ms": 1000 * plain_cpu / FLAGS.frames,
                                        "cpu_ms_track": 1000 * tracked_cpu / FLAGS.frames,
                                        "tracker_ms": ms, "persons": persons,
                                        "load": os.getloadavg()[0]}) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)
