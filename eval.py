"""Evaluates a PRTR model: COCO OKS AP/AR or MPII PCKh@0.5.

    python eval.py --config=configs/coco_res50_384x288.py \
        --checkpoint=res50_384x288.weights.h5 --det_json=COCO_val2017_detr_detections.json
    python eval.py --config=configs/synthetic_tiny.py --checkpoint=runs/demo --use_gt_bbox
    python eval.py --config=configs/e2e_r50_coco.py --checkpoint=runs/e2e_r50

An end-to-end config (model.kind 'prtr_e2e') is evaluated with the persons the model
itself detects (`prtr_tf.end_to_end.predict`); box flags and the flip test do not apply.

--checkpoint is a Keras weights file (*.weights.h5, e.g. from prtr_tf.convert) or
a training workdir (its best.weights.h5, else last.weights.h5). COCO results are
written as a COCO results JSON (--output) and scored with pycocotools.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).",
                                          lock_config=False)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "*.weights.h5 file, or a training workdir.")
_GT_BBOX = flags.DEFINE_bool("use_gt_bbox", None, "Crop ground-truth person boxes "
                             "(default: config.test.use_gt_bbox unless --det_json is given).")
_DET_JSON = flags.DEFINE_string("det_json", None, "COCO results JSON of person detections.")
_FLIP = flags.DEFINE_bool("flip_test", None, "Average with the mirrored crop (default: "
                          "config.test.flip_test).")
_SPLIT = flags.DEFINE_enum("split", "val", ["val", "train"], "Which configured split.")
_GT_MAT = flags.DEFINE_string("gt_mat", None, "MPII: the official gt_valid.mat (true head "
                              "boxes); without it PCKh uses an approximate head size.")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the COCO results JSON "
                              "(default: next to the checkpoint).")


def _output_path(weights):
    return _OUTPUT.value or os.path.splitext(os.path.splitext(weights)[0])[0] + \
        f"_{_SPLIT.value}_results.json"


def evaluate_end_to_end(config):
    """The end-to-end branch of `main`."""
    for flag in ("use_gt_bbox", "det_json", "flip_test", "gt_mat"):
        if flags.FLAGS[flag].value:
            raise app.UsageError(f"--{flag} does not apply to an end-to-end config (it "
                                 "detects the persons itself, without flip test)")
    from prtr_tf.weights import resolve_weights
    from prtr_tf.end_to_end.evaluate import evaluate
    from prtr_tf.weights import load_end_to_end
    from prtr_tf.evaluation.coco import format_table
    try:
        weights = resolve_weights(_CHECKPOINT.value)
        model, config = load_end_to_end(config, weights)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    output = _output_path(weights)
    print(f"evaluating end-to-end {weights} on {config.data.dataset} {_SPLIT.value} "
          f"(persons with P >= {config.model.person_threshold}, at most "
          f"{config.model.max_persons} per image)")
    try:
        scores = evaluate(model, config, _SPLIT.value, results_path=output)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_table(scores, name=os.path.basename(weights)))
    print(f"results: {output}")
    return 0


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None or not _CHECKPOINT.value:
        raise app.UsageError("--config and --checkpoint are required")
    config = _CONFIG.value
    if config.model.get("kind", "prtr") == "prtr_e2e":
        return evaluate_end_to_end(config)
    if config.model.get("kind", "prtr") == "detr":
        raise app.UsageError("--config is a DETR detector config; eval.py scores keypoints "
                             "(the detector's box AP is reported by train.py)")
    if _GT_BBOX.value and _DET_JSON.value:
        raise app.UsageError("--use_gt_bbox and --det_json exclude each other")
    det_json = _DET_JSON.value or (None if (_GT_BBOX.value or config.test.use_gt_bbox)
                                   else config.data.det_json or None)
    if det_json and not os.path.exists(det_json):
        raise app.UsageError(f"--det_json {det_json!r} does not exist")
    from prtr_tf.weights import resolve_weights
    try:
        weights = resolve_weights(_CHECKPOINT.value)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from prtr_tf.keypoint.model import build_model
    from prtr_tf.keypoint.evaluate import validate
    model = build_model(config.model)
    try:
        model.load_weights(weights)
    except ValueError as e:
        print(f"error: {weights} does not fit the model of --config "
              f"({config.model.backbone}, {config.model.num_joints} joints): {e}",
              file=sys.stderr)
        return 1
    output = _output_path(weights)
    flip = config.test.flip_test if _FLIP.value is None else _FLIP.value
    boxes = f"detections {det_json}" if det_json else "ground-truth boxes"
    print(f"evaluating {weights} on {config.data.dataset} {_SPLIT.value} with {boxes}"
          f"{', flip test' if flip else ''}")
    try:
        scores = validate(model, config, _SPLIT.value, flip_test=flip, det_json=det_json,
                          results_path=None if config.data.dataset == "mpii" else output,
                          gt_mat=_GT_MAT.value)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    name = os.path.basename(weights)
    if config.data.dataset == "mpii":
        from prtr_tf.evaluation.mpii import format_table
        scores.pop("PCKh", None)
        print(format_table(scores, name=name))
    else:
        from prtr_tf.evaluation.coco import format_table
        print(format_table(scores, name=name))
        print(f"results: {output}")
    return 0


if __name__ == "__main__":
    app.run(main)
