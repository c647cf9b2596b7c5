"""The demo's pictures of a trained two-stage model on held-out images.

`demo_pictures` writes, into a folder: annotated held-out images (the two-stage
pipeline with the detector's boxes, and the keypoint Transformer on the ground-truth
boxes, `prtr_tf.drawing.visualize.draw_poses`), a learning
curve per model and both models' held-out AP against minutes (`prtr_tf.drawing.plots`),
and the paper's Figure 4 for one held-out person (`prtr_tf.drawing.visualize.
plot_decoder_refinement`). Every file is written atomically (`prtr_tf.files.atomic`).
"""
import json
import os

import numpy as np
from PIL import Image

from prtr_tf.files import atomic
from prtr_tf.drawing import plots
from prtr_tf.drawing import visualize
from prtr_tf.data.keypoint_sets import DATASETS
from prtr_tf.models.keypoint.data import build_eval_dataset
from prtr_tf.data.splits import load_records
from prtr_tf.data.splits import split_files
from prtr_tf.models.detector.predict import DetrPersonDetector
from prtr_tf.serving.estimator import PoseEstimator


def _save_png(image, path):
    with atomic.atomic_output(path) as temp:
        image.save(temp, format="PNG")
    return path


def _figure(plot, path, *args, **kwargs):
    """Runs ``plot(*args, path=temp, **kwargs)`` into a temporary file, then moves it
    to ``path``; returns what ``plot`` returned."""
    with atomic.atomic_output(path) as temp:
        result = plot(*args, path=temp, **kwargs)
    return result


def annotated_images(estimator, image_paths, folder, skeleton, joint_names=None,
                     kpt_thr=0.3, box_thr=0.0, upscale=2, boxes=None, prefix="heldout_"):
    """Draws ``estimator``'s persons on each image (enlarged ``upscale`` times so that
    the drawing is readable on small images) into ``folder/{prefix}{stem}.png``; the
    person boxes are the estimator's detector's, or ``boxes`` (a list of [x, y, w, h]
    lists per image). Returns the PNG paths written."""
    written = []
    for i, path in enumerate(image_paths):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        persons = estimator(rgb) if boxes is None else estimator(rgb, boxes=boxes[i])
        big = Image.fromarray(rgb).resize((rgb.shape[1] * upscale, rgb.shape[0] * upscale),
                                          Image.BICUBIC)
        scaled = [dict(p, box=[float(v) * upscale for v in p["box"]],
                       keypoints=np.asarray(p["keypoints"]) * [upscale, upscale, 1.0])
                  for p in persons]
        drawing = visualize.draw_poses(big, scaled, skeleton, kpt_thr=kpt_thr,
                                       box_thr=box_thr, joint_names=joint_names)
        stem = os.path.splitext(os.path.basename(path))[0]
        written.append(_save_png(drawing, os.path.join(folder, f"{prefix}{stem}.png")))
    return written


def refinement_figure(model, config, path, split="val", max_crops=64):
    """Figure 4 for the held-out person (ground-truth box) with the most labelled
    joints among the first ``max_crops``; returns `plot_decoder_refinement`'s dict."""

    records = load_records(config, split)[:max_crops]
    batch = next(iter(build_eval_dataset(records, config, batch=len(records))))
    index = int(np.argmax(batch["target_weight"].numpy().reshape(len(records), -1).sum(1)))
    outputs = {k: v.numpy() for k, v in model(batch["image"], training=False).items()}
    crop = visualize.denormalize_crop(batch["image"][index].numpy(), config)
    title = (f"held-out person (image {int(batch['image_id'][index])}): matched queries "
             f"over {config.model.dec_layers} decoder layers")
    return _figure(visualize.plot_decoder_refinement, path, crop, outputs, index=index,
                   title=title)


def demo_pictures(keypoint_model, kpt_config, detector_model, det_config, folder, workdirs,
                  kpt_thr=0.3, num_images=6, box_thr=0.3):
    """The demo's pictures in ``folder`` (see the module docstring); ``workdirs``:
    {model label: training workdir with metrics.csv}. Persons of the annotated images
    come from the detector's boxes scoring at least ``box_thr``. Returns {what: path}."""

    os.makedirs(folder, exist_ok=True)
    written = {}
    for label, workdir in workdirs.items():
        name = os.path.basename(os.path.normpath(workdir))
        path = os.path.join(folder, f"learning_curve_{name}.png")
        _figure(plots.plot_learning_curve, path, os.path.join(workdir, "metrics.csv"),
                title=f"{label}: training loss and held-out AP per epoch")
        written[f"learning curve, {label}"] = path
    path = os.path.join(folder, "heldout_ap_against_minutes.png")
    _figure(plots.plot_ap_against_minutes, path,
            {label: (os.path.join(w, "metrics.csv"), "AP") for label, w in workdirs.items()})
    written["held-out AP against minutes"] = path

    path = os.path.join(folder, "figure4_decoder_refinement.png")
    refinement_figure(keypoint_model, kpt_config, path)
    written["Figure 4 (decoder-layer refinement)"] = path

    ann, image_dir = split_files(kpt_config, "val")
    with open(ann, encoding="utf-8") as f:
        data = json.load(f)
    images = data["images"][:num_images]
    paths = [os.path.join(image_dir, im["file_name"]) for im in images]
    gt_boxes = [[a["bbox"] for a in data["annotations"]
                 if a["image_id"] == im["id"] and a.get("num_keypoints", 1) > 0
                 and not a.get("iscrowd", 0)] for im in images]
    estimator = PoseEstimator(
        keypoint_model, kpt_config, flip_test=False,
        detector=DetrPersonDetector(detector_model, det_config, score_threshold=box_thr))
    spec = DATASETS[kpt_config.data.dataset]
    for what, boxes, prefix in (("detector boxes", None, "heldout_"),
                                ("ground-truth boxes", gt_boxes, "heldout_gt_")):
        for path in annotated_images(estimator, paths, folder, spec["skeleton"],
                                     spec["joints"], kpt_thr=kpt_thr, boxes=boxes,
                                     prefix=prefix):
            written[f"held-out image {os.path.basename(path)} ({what})"] = path
    return written
