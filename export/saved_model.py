r"""Exports the two-stage (or end-to-end) PRTR pipeline as a TensorFlow SavedModel.

    python export/saved_model.py --config=configs/coco_res50_384x288.py \
        --checkpoint=res50_384x288.weights.h5 --detector_config=configs/detr_r50_person.py \
        --detector_checkpoint=detr_person.weights.h5 --output=exported/prtr_res50

Signatures (see `prtr_tf.serving.two_stage`):

* ``serving_default``: image uint8 (H, W, 3) -> boxes (N, 4) x1y1x2y2 pixels, scores (N,)
  (rescored), box_scores (N,) (P(person)), keypoints (N, J, 2) pixels, keypoint_scores
  (N, J), num_persons () int32;
* ``serve_encoded``: image_bytes string () (JPEG/PNG/...) -> the same;
* ``serve_crops``: images float32 (B, H, W, 3) normalised crops -> keypoints (B, J, 2)
  crop pixels, keypoint_scores (B, J), query int32 (B, J).

The box threshold, the person cap and the flip test are fixed at export.
``--onnx_compatible`` makes ``serving_default`` convertible by `export/onnx.py`.

An end-to-end config (``model.kind`` 'prtr_e2e', e.g. configs/e2e_r50_coco.py) needs
no detector flags (its detector is part of the model):

    python export/saved_model.py --config=configs/e2e_r50_coco.py \
        --checkpoint=runs/e2e_r50/best.weights.h5 --output=exported/prtr_e2e_r50

writes ``serving_default`` and ``serve_encoded`` (`prtr_tf.serving.end_to_end`: the same
outputs; ``--max_persons`` replaces the config's ``model.max_persons``;
``--onnx_compatible`` works the same way, and export/onnx.py converts its
serving_default).
"""
import os
import sys

# Run as a script, this directory comes first on sys.path, where export/onnx.py would
# shadow the onnx package: put the repository root there instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__":
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    sys.path.insert(0, os.path.dirname(_HERE))

from absl import app, flags  # noqa: E402

_CONFIG = flags.DEFINE_string("config", None, "Keypoint config, or end-to-end config (file "
                              "or name in configs/).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Model weights (.weights.h5).")
_DET_CONFIG = flags.DEFINE_string("detector_config", None,
                                  "DETR person detector config (file or name); two-stage "
                                  "models only.")
_DET_CHECKPOINT = flags.DEFINE_string("detector_checkpoint", None,
                                      "Detector weights (.weights.h5); two-stage models only.")
_OUTPUT = flags.DEFINE_string("output", None, "SavedModel directory to write.")
_THRESHOLD = flags.DEFINE_float("score_threshold", 0.5,
                                "Minimum P(person) of a detected box (>=).")
_MAX_PERSONS = flags.DEFINE_integer("max_persons", None, "At most this many boxes per image "
                                    "(best first; default 20; end-to-end: the config's "
                                    "model.max_persons).", lower_bound=1)
_FLIP = flags.DEFINE_bool("flip_test", None, "Average with the mirrored crop (default: the "
                          "config's test.flip_test).")
_ONNX = flags.DEFINE_bool("onnx_compatible", False, "Resize the detector input with matrix "
                           "products instead of tf.image.resize's ScaleAndTranslate op, so "
                           "that tf2onnx converts serving_default too (equal up to the "
                           "rounding of a few pixels).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --output.")

for _name in ("config", "checkpoint", "output"):
    flags.mark_flag_as_required(_name)


def export_end_to_end(output):
    """The end-to-end branch of `main`."""
    for flag, value in (("detector_config", _DET_CONFIG.value),
                        ("detector_checkpoint", _DET_CHECKPOINT.value),
                        ("flip_test", _FLIP.value)):
        if value is not None:
            raise app.UsageError(f"--{flag} does not apply to an end-to-end config (its "
                                 "detector is part of the model; no flip test)")
    try:
        from prtr_tf.serving.end_to_end import EndToEndServing
        from prtr_tf.weights import load_end_to_end
        from prtr_tf.serving.saved_model import export_saved_model
        from prtr_tf.config import load_config
        config = load_config(_CONFIG.value)
        if _MAX_PERSONS.value:
            config.model.max_persons = _MAX_PERSONS.value
        model, config = load_end_to_end(config, _CHECKPOINT.value)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    serving = EndToEndServing(model, config, score_threshold=_THRESHOLD.value,
                              resize="matmul" if _ONNX.value else "tf")
    export_saved_model(serving, output)
    print(f"wrote {output}: end-to-end signatures serving_default (image uint8 [H, W, 3]), "
          f"serve_encoded (image_bytes string); score_threshold {serving.score_threshold}, "
          f"max_persons {config.model.max_persons}")
    return 0


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    output = _OUTPUT.value
    if os.path.exists(output) and os.listdir(output) and not _OVERWRITE.value:
        raise app.UsageError(f"--output {output!r} exists and is not empty (--overwrite)")
    from prtr_tf.config import load_config
    try:
        kind = load_config(_CONFIG.value).model.get("kind", "prtr")
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if kind == "prtr_e2e":
        return export_end_to_end(output)
    if not _DET_CONFIG.value or not _DET_CHECKPOINT.value:
        raise app.UsageError("a two-stage export needs --detector_config and "
                             "--detector_checkpoint (the person detector)")
    try:
        from prtr_tf.serving.two_stage import PoseServing
        from prtr_tf.serving.saved_model import export_saved_model
        from prtr_tf.weights import load_models
        model, config, detector, det_config = load_models(
            _CONFIG.value, _CHECKPOINT.value, _DET_CONFIG.value, _DET_CHECKPOINT.value)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    serving = PoseServing(model, config, detector, det_config,
                          score_threshold=_THRESHOLD.value,
                          max_persons=_MAX_PERSONS.value or 20,
                          flip_test=_FLIP.value,
                          resize="matmul" if _ONNX.value else "tf")
    export_saved_model(serving, output)
    print(f"wrote {output}: signatures serving_default (image uint8 [H, W, 3]), "
          f"serve_encoded (image_bytes string), serve_crops (images float32 "
          f"[B, {config.model.image_size[0]}, {config.model.image_size[1]}, 3]); "
          f"score_threshold {serving.score_threshold}, max_persons {serving.max_persons}, "
          f"flip_test {serving.flip_test}")
    return 0


if __name__ == "__main__":
    app.run(main)
