"""Evaluates a trained PRTR model: COCO OKS AP/AR or MPII PCKh@0.5 for keypoint models,
COCO person box AP for a DETR person detector.

    prtr-eval --model=res50_384x288.keras --det_json=COCO_val2017_detr_detections.json
    prtr-eval --config=coco_res50_384x288 --checkpoint=res50_384x288.weights.h5 \\
        --det_json=COCO_val2017_detr_detections.json
    python eval.py --config=configs/synthetic_tiny.py --checkpoint=runs/demo --use_gt_bbox
    python eval.py --config=configs/e2e_r50_coco.py --checkpoint=runs/e2e_r50
    python eval.py --config=configs/synthetic_detector_tiny.py --checkpoint=runs/det

--model is a prtr-tf model file (*.keras, from prtr-convert or train.py) or a training
workdir: no --config is needed (the recorded one is used; data paths as recorded: give
--config with --config.data.* overrides to read the data elsewhere, it must compute as
the recorded one). --checkpoint is a Keras weights file (*.weights.h5, e.g. from
prtr-convert), a model file or a training workdir (its best.weights.h5, else
last.weights.h5). An end-to-end config
is evaluated with the persons the model itself detects: the box flags, the flip test
and --gt_mat do not apply (nor to a detector). COCO results (keypoints, or the
detector's boxes in the format of --det_json) are written as a COCO results JSON
(--output) and scored with pycocotools.
"""
from prtr_tf.cli import common

REQUIRED = ()  # --model, or --config and --checkpoint (said in the flags' help)


def define_flags():
    from absl import flags
    from ml_collections import config_flags
    return dict(
        config=config_flags.DEFINE_config_file(
            "config", None, "Config file or name in configs/ (with --checkpoint; optional "
        "with --model).", lock_config=False),
        checkpoint=flags.DEFINE_string("checkpoint", None, "*.weights.h5 file, model file "
                                       "(*.keras) or training workdir."),
        use_gt_bbox=flags.DEFINE_bool(
            "use_gt_bbox", None, "Keypoint model: crop ground-truth person boxes (default: "
            "config.test.use_gt_bbox unless --det_json is given)."),
        det_json=flags.DEFINE_string("det_json", None, "Keypoint model: COCO results JSON "
                                     "of person detections."),
        flip_test=flags.DEFINE_bool("flip_test", None, "Keypoint model: average with the "
                                    "mirrored crop (default: config.test.flip_test)."),
        split=flags.DEFINE_enum("split", "val", ["val", "train"], "Which configured split."),
        gt_mat=flags.DEFINE_string("gt_mat", None, "MPII: the official gt_valid.mat (true "
                                   "head boxes); without it PCKh uses an approximate head "
                                   "size."),
        output=flags.DEFINE_string("output", None, "Where to write the COCO results JSON "
                                   "(default: next to the checkpoint). An existing file "
                                   "is kept unless --overwrite."),
        overwrite=flags.DEFINE_bool("overwrite", False, "Replace an existing --output."),
        precision=common.define_precision_flag(),
        **common.define_model_flags(),
    )


def main(argv, f):
    import os

    from prtr_tf.models import registry
    from prtr_tf.evaluation.checkpoint import evaluate_checkpoint
    if len(argv) > 1:
        raise common.usage_error(f"unexpected arguments: {argv[1:]}")
    v = common.values(f)
    common.apply_model_flags(v, log=print)
    if v["config"] is None or not v["checkpoint"]:
        raise common.usage_error("--model, or --config and --checkpoint, are required")
    if v["use_gt_bbox"] and v["det_json"]:
        raise common.usage_error("--use_gt_bbox and --det_json exclude each other")
    for name in ("det_json", "gt_mat"):
        if v[name] and not os.path.exists(v[name]):
            raise common.usage_error(f"--{name} {v[name]!r} does not exist")
    options = {k: v[k] for k in ("use_gt_bbox", "det_json", "flip_test", "gt_mat")}
    kind = registry.get(v["config"])
    given = [f"--{k}" for k, value in options.items()
             if value is not None and k not in kind.eval_options]
    if given:
        raise common.usage_error(f"{', '.join(given)} does not apply to {kind.title} "
                                 "configs")
    if v["output"]:  # checked before the model is built and the split evaluated
        from prtr_tf.files.outputs import check_output
        check_output(v["output"], "--output", v["overwrite"],
                     inputs=[("--checkpoint", v["checkpoint"]), ("--model", v["model"]),
                             ("--det_json", v["det_json"]),
                             ("--gt_mat", v["gt_mat"])])
    common.note_precision(v["precision"])
    scores, table, weights_file, results = evaluate_checkpoint(
        v["config"], v["checkpoint"], v["split"], v["output"], precision=v["precision"],
        **options)
    print(table)
    if os.path.exists(results):
        print(f"results: {results}")
    return 0


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
