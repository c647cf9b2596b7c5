"""``prtr-export FORMAT [flags]``: exports a trained model; FORMAT is one of

* ``saved_model``: the two-stage (or end-to-end) pipeline as a TensorFlow SavedModel;
* ``tflite``: the keypoint model (readout in-graph) and optionally the person
  detector as TFLite files;
* ``onnx``: signatures of an exported SavedModel as ONNX.

``prtr-export FORMAT --help`` lists that format's flags. The scripts
``export/to_saved_model.py``, ``export/to_tflite.py`` and ``export/to_onnx.py`` are the same
tools (`run_format`).
"""
import contextlib
import os
import sys

from prtr_tf.cli import common
from prtr_tf.files.outputs import check_output  # light: no TensorFlow
from prtr_tf.models import registry  # light: no TensorFlow

SAVED_MODEL_DOC = r"""Exports the two-stage (or end-to-end) PRTR pipeline as a TensorFlow SavedModel.

    prtr-export saved_model --config=configs/coco_res50_384x288.py \
        --checkpoint=res50_384x288.weights.h5 --detector_config=configs/detr_r50_person.py \
        --detector_checkpoint=detr_person.weights.h5 --output=exported/prtr_res50

(or python export/to_saved_model.py with the same flags). --checkpoint and
--detector_checkpoint take a *.weights.h5 file or a training workdir (its
best.weights.h5, else last.weights.h5).

Signatures (see `prtr_tf.models.keypoint.serving`):

* ``serving_default``: image uint8 (H, W, 3) -> boxes (N, 4) x1y1x2y2 pixels, scores (N,)
  (rescored), box_scores (N,) (P(person)), keypoints (N, J, 2) pixels, keypoint_scores
  (N, J), num_persons () int32;
* ``serve_encoded``: image_bytes string () (JPEG/PNG/...) -> the same;
* ``serve_crops``: images float32 (B, H, W, 3) normalised crops -> keypoints (B, J, 2)
  crop pixels, keypoint_scores (B, J), query int32 (B, J).

The box threshold, the person cap and the flip test are fixed at export.
``--onnx_compatible`` makes ``serving_default`` convertible by ``prtr-export onnx``.
An existing non-empty --output is an error unless --overwrite; the SavedModel is
written to a temporary folder next to it and moved there when complete.

An end-to-end config (``model.kind`` 'prtr_e2e', e.g. configs/e2e_r50_coco.py) needs
no detector flags (its detector is part of the model):

    prtr-export saved_model --config=configs/e2e_r50_coco.py \
        --checkpoint=runs/e2e_r50 --output=exported/prtr_e2e_r50

writes ``serving_default`` and ``serve_encoded`` (`prtr_tf.models.end_to_end.serving`: the same
outputs; ``--max_persons`` replaces the config's ``model.max_persons``;
``--onnx_compatible`` works the same way, and ``prtr-export onnx`` converts its
serving_default).
"""

TFLITE_DOC = r"""Exports the keypoint model (readout in-graph) and optionally the person detector to TFLite.

    prtr-export tflite --config=configs/coco_res50_384x288.py \
        --checkpoint=res50_384x288.weights.h5 --output=out/ --quantization=fp32,fp16,int8 \
        [--flip_test] [--detector_config=configs/detr_r50_person.py \
         --detector_checkpoint=detr.weights.h5 --detector_size=800,1216]

(or python export/to_tflite.py with the same flags). Writes OUTPUT/keypoints_{q}.tflite
(+ keypoints_{q}.json, the metadata that is also embedded in the .tflite) for every
quantization q and, with a detector, OUTPUT/detector_{q}.tflite (+ .json); prints each
file's size. The detector's input size is fixed: --detector_size, by default the
detector config's data.test_size by data.max_size (landscape, e.g. 800,1333 for
configs/detr_r50_person.py; images are resized to it without padding). Builtin TFLite
ops only: the export fails, naming the ops, if the model would need Flex/select TF
ops. int8 is dynamic-range quantisation (int8 weights); int8_full is full-integer int8
(weights and activations) calibrated on --num_calibration representative crops
(--calibration_data: "train" = ground-truth person boxes of the config's training set,
"synthetic" = generated stick-figure images), with the readout kept in float32 (see
prtr_tf/export/tflite/convert.py). int8_full applies to the keypoint model only: for
the detector it is skipped (with a note); use int8 there.
"""

ONNX_DOC = r"""Converts signatures of an exported SavedModel (`prtr-export saved_model`) to ONNX.

    prtr-export onnx --saved_model=exported/prtr_res50 \
        --output=exported/prtr_res50_crops.onnx
    prtr-export onnx --saved_model=exported/prtr_res50 --signature=serving_default \
        --output=exported/prtr_res50_full.onnx

(or python export/to_onnx.py with the same flags). tf2onnx (opset 17 by default) reads
the frozen signature graph; the model is then checked with ``onnx.checker`` and,
unless ``--nocheck``, run once with ONNX Runtime on a zero input of the signature's
shape. ``serve_crops`` (keypoint model + readout on normalised crops, float32
(B, H, W, 3) -> keypoints, keypoint_scores, query) converts; ONNX inputs and outputs
keep the signature's names. ``serving_default`` (the whole two-stage pipeline, image
uint8 (H, W, 3)) converts when the SavedModel was exported with ``--onnx_compatible``;
otherwise DETR's antialiased resize (``tf.image.resize(..., antialias=True)``, the TF op
ScaleAndTranslate) has no tf2onnx conversion and the conversion stops with an error
naming the op (re-export with ``--onnx_compatible``). ``serve_encoded`` (DecodeImage)
does not convert. A failed conversion writes no --output.
"""

_DETECTOR_FLAGS = ("detector_config", "detector_checkpoint")
# Marked in each format's --help (checked by `_required` when it runs).
REQUIRED = {"saved_model": ("output",), "tflite": ("output",),
            "onnx": ("saved_model", "output")}  # and --model or --config (said in the help)


def _no_arguments(argv):
    if len(argv) > 1:
        raise common.usage_error(f"unexpected arguments: {argv[1:]}")


def _required(v, *names):
    missing = [f"--{n}" for n in names if v[n] in (None, "")]
    if missing:
        raise common.usage_error(f"{' and '.join(missing)} "
                                 f"{'is' if len(missing) == 1 else 'are'} required")


# ----------------------------------------------------------------------- SavedModel


def define_saved_model_flags():
    from absl import flags
    from ml_collections import config_flags
    from prtr_tf.serving.defaults import PERSON_SCORE_THRESHOLD  # light: no TensorFlow
    return dict(
        config=config_flags.DEFINE_config_file(
            "config", None, "Keypoint config, or end-to-end config (file or name in "
            "configs/; --config.FIELD=VALUE overrides, e.g. a custom set's data.root).",
            lock_config=False),
        checkpoint=flags.DEFINE_string("checkpoint", None, "Model weights (.weights.h5) or "
                                       "a training workdir."),
        detector_config=config_flags.DEFINE_config_file(
            "detector_config", None, "DETR person detector config (file or name); "
            "two-stage models only.", lock_config=False),
        detector_checkpoint=flags.DEFINE_string("detector_checkpoint", None,
                                                "Detector weights (.weights.h5) or a "
                                                "training workdir; two-stage models only."),
        output=flags.DEFINE_string("output", None, "SavedModel directory to write."),
        score_threshold=flags.DEFINE_float(
            "score_threshold", PERSON_SCORE_THRESHOLD, "Minimum P(person) of a detected "
            "box (>=); the default is every prediction path's (prtr_tf.serving.defaults), "
            "recorded in the export's metadata."),
        max_persons=flags.DEFINE_integer("max_persons", None, "At most this many boxes per "
                                         "image (best first; default 20; end-to-end: the "
                                         "config's model.max_persons).", lower_bound=1),
        flip_test=flags.DEFINE_bool("flip_test", None, "Average with the mirrored crop "
                                    "(default: the config's test.flip_test)."),
        onnx_compatible=flags.DEFINE_bool("onnx_compatible", False, "Resize the detector "
                                          "input with matrix products instead of "
                                          "tf.image.resize's ScaleAndTranslate op, so that "
                                          "tf2onnx converts serving_default too (equal up "
                                          "to the rounding of a few pixels)."),
        overwrite=flags.DEFINE_bool("overwrite", False, "Replace an existing --output."),
        precision=common.define_precision_flag(),
        **common.define_model_flags(detector=True),
    )


def _model_flags(v, needs_checkpoint=True):
    """--model/--detector into their config and checkpoint flags
    (`prtr_tf.cli.common.apply_model_flags`); a usage error without a model."""
    common.apply_model_flags(v, log=print)
    if v["config"] is None or (needs_checkpoint and not v["checkpoint"]):
        raise common.usage_error("the model is needed: --model (a .keras model file or a "
                                 "training workdir), or --config and --checkpoint")


def _check_detector_flags(kind, v):
    if kind.role != registry.POSE or "saved_model" not in kind.export_formats:
        return  # weights.load_model says what is wrong with the config
    given = [n for n in _DETECTOR_FLAGS if v[n] is not None]
    if kind.needs_detector and len(given) < len(_DETECTOR_FLAGS):
        raise common.usage_error(f"a {kind.title} export needs the person detector: "
                                 "--detector (a .keras model file or a training workdir), "
                                 "or --detector_config and --detector_checkpoint")
    if not kind.needs_detector and given:
        raise common.usage_error(f"--{given[0]} does not apply to {kind.title} configs "
                                 "(the model detects the persons itself)")


def _describe_signatures(serving):
    def shape(spec):  # an image is declared of unknown rank and checked in the graph
        return spec.shape.as_list() if spec.shape.rank is not None else "[H, W, 3]"
    return "; ".join(
        f"{name} (" + ", ".join(f"{s.name} {s.dtype.name} {shape(s)}" for s in sig)
        + ")" for name, (_, sig) in serving.functions().items())


def main_saved_model(argv, f):
    from prtr_tf.checkpoints import weights
    from prtr_tf.data import keypoint_sets
    from prtr_tf.files.atomic import atomic_output
    from prtr_tf.serving.saved_model import export_saved_model

    _no_arguments(argv)
    v = common.values(f)
    _required(v, "output")
    _model_flags(v)
    common.check_number(v["score_threshold"], "score_threshold", 0.0, 1.0)
    weights.recorded_set(v["config"], v["checkpoint"])  # a custom set without data flags
    kind = registry.get(v["config"])
    _check_detector_flags(kind, v)
    common.note_precision(v["precision"])
    check_output(v["output"], "--output", v["overwrite"], folder=True,
                 inputs=[("--checkpoint", v["checkpoint"]),
                         ("--detector_checkpoint", v["detector_checkpoint"])])
    with contextlib.ExitStack() as stack:
        try:
            tmp = stack.enter_context(atomic_output(v["output"], folder=True,
                                                    overwrite=v["overwrite"]))
        except FileExistsError as e:
            raise FileExistsError(f"--output: {e} (--overwrite replaces it)") from None
        model, config, _ = weights.load_model(v["config"], v["checkpoint"], "--checkpoint",
                                              role=registry.POSE,
                                              export_format="saved_model",
                                              config_flag="--config",
                                              precision=v["precision"])
        detector = det_config = None
        if kind.needs_detector:
            keypoint_sets.adopt(v["detector_config"], config, "--config")  # one set
            detector, det_config, _ = weights.load_model(
                v["detector_config"], v["detector_checkpoint"], "--detector_checkpoint",
                role=registry.DETECTOR, export_format="saved_model",
                config_flag="--detector_config",
                precision=v["precision"])
        serving = kind.serving(model, config, detector, det_config,
                               score_threshold=v["score_threshold"],
                               max_persons=v["max_persons"], flip_test=v["flip_test"],
                               resize="matmul" if v["onnx_compatible"] else "tf")
        export_saved_model(serving, tmp)
    fixed = ", ".join(f"{k} {getattr(serving, k)}" for k in
                      ("score_threshold", "max_persons", "flip_test", "resize")
                      if hasattr(serving, k))
    print(f"wrote {v['output']}: {kind.describe(config)}; signatures "
          f"{_describe_signatures(serving)}; {fixed}")
    return 0


# --------------------------------------------------------------------------- TFLite


def define_tflite_flags():
    from absl import flags
    from ml_collections import config_flags
    return dict(
        config=config_flags.DEFINE_config_file("config", None,
                                               "Keypoint model config (configs/*.py)."),
        checkpoint=flags.DEFINE_string("checkpoint", None,
                                       "Keypoint weights (*.weights.h5) or a training "
                                       "workdir; omitted: random initial weights (smoke "
                                       "tests only)."),
        output=flags.DEFINE_string("output", None, "Output directory (keypoints_{q}.tflite, "
                                   "detector_{q}.tflite and their .json; existing ones are "
                                   "kept unless --overwrite)."),
        overwrite=flags.DEFINE_bool("overwrite", False, "Replace existing .tflite files."),
        **common.define_model_flags(detector=True),
        quantization=flags.DEFINE_list("quantization", ["fp32"], "Comma-separated: fp32, "
                                       "fp16, int8 (dynamic range), int8_full (calibrated "
                                       "int8 activations)."),
        num_calibration=flags.DEFINE_integer("num_calibration", 200, "int8_full: number of "
                                             "representative crops for the activation "
                                             "ranges.", lower_bound=1),
        calibration_data=flags.DEFINE_enum("calibration_data", "train", ["train", "synthetic"],
                                           "int8_full: crops of the config's training set "
                                           "(ground-truth boxes) or of generated synthetic "
                                           "stick figures."),
        flip_test=flags.DEFINE_bool("flip_test", False,
                                    "Average with the mirrored crop in-graph."),
        batch_size=flags.DEFINE_integer("batch_size", 1,
                                        "Fixed batch size of the exported models."),
        detector_config=config_flags.DEFINE_config_file(
            "detector_config", None, "Detector config (configs/detr_*.py)."),
        detector_checkpoint=flags.DEFINE_string("detector_checkpoint", None,
                                                "Detector weights (*.weights.h5) or workdir."),
        detector_size=flags.DEFINE_list("detector_size", None, "Detector input H,W (fixed; "
                                        "default: the detector config's data.test_size,"
                                        "data.max_size, e.g. 800,1333)."),
    )


def _detector_size(value, det_config):
    if value is None:
        return int(det_config.data.test_size), int(det_config.data.max_size)
    try:
        size = tuple(int(s) for s in value)
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise common.usage_error(f"--detector_size must be H,W (two positive integers), "
                                 f"got {','.join(value)!r}")
    return size


def _weights_or_random(config, checkpoint, config_flag, flag, role):
    """The model of ``config`` (given as ``config_flag``; its family of ``role`` and
    exported to TFLite) with ``checkpoint`` loaded, or with random initial weights when
    there is none (smoke tests)."""
    from prtr_tf.checkpoints import weights

    kind = registry.require(config, config_flag, "a TFLite export", role=role,
                            export_format="tflite")
    if checkpoint:
        return weights.load_model(config, checkpoint, flag, role=role, export_format="tflite",
                                  config_flag=config_flag)[0]
    print(f"warning: no {flag}, exporting random initial weights")
    return kind.build(config.model)


def main_tflite(argv, f):
    from prtr_tf.checkpoints import weights
    from prtr_tf.data import keypoint_sets
    from prtr_tf.export import tflite

    _no_arguments(argv)
    v = common.values(f)
    _required(v, "output")
    _model_flags(v, needs_checkpoint=False)
    quants = [q.strip() for q in v["quantization"]]
    bad = [q for q in quants if q not in tflite.QUANTIZATIONS]
    if bad:
        raise common.usage_error(f"--quantization: unknown {bad}; choose from "
                                 f"{tflite.QUANTIZATIONS}")
    config, det_config = v["config"], v["detector_config"]
    reads = [("--checkpoint", v["checkpoint"]), ("--detector_checkpoint", v["detector_checkpoint"])]
    check_output(v["output"], "--output", True, inputs=reads, folder=True)
    for name in tflite.file_names(quants, det_config is not None):
        check_output(os.path.join(v["output"], name), "--output", v["overwrite"], inputs=reads)
    size = None
    if det_config is not None:
        size = _detector_size(v["detector_size"], det_config)
    else:
        for name in ("detector_checkpoint", "detector_size"):
            if v[name]:
                raise common.usage_error(f"--{name} needs --detector_config")
    weights.recorded_set(config, v["checkpoint"])  # a custom set without data flags
    model = _weights_or_random(config, v["checkpoint"], "--config", "--checkpoint",
                               registry.POSE)
    detector = None
    if det_config is not None:
        keypoint_sets.adopt(det_config, config, "--config")  # the pose model's set
        detector = _weights_or_random(det_config, v["detector_checkpoint"],
                                      "--detector_config", "--detector_checkpoint",
                                      registry.DETECTOR)
    representative = None
    if "int8_full" in quants:
        try:
            representative = tflite.representative_crops(config, v["num_calibration"],
                                                         v["calibration_data"])
        except (FileNotFoundError, ValueError) as e:
            raise common.usage_error(f"int8_full calibration (--calibration_data="
                                     f"{v['calibration_data']}): {e}; or use "
                                     "--calibration_data=synthetic") from e
        print(f"int8_full: {len(representative)} {v['calibration_data']} calibration crops")
        if detector is not None:
            print("detector: int8_full is not offered (no calibration images for it "
                  "here); skipped, use int8 (dynamic range)")
    written = tflite.export_tflite(v["output"], model, config, quants, representative,
                                   flip_test=v["flip_test"], batch_size=v["batch_size"],
                                   detector=detector, detector_config=det_config,
                                   detector_size=size)
    for path, sidecar in written:
        print(f"{path}: {os.path.getsize(path) / 2**20:.2f} MiB (metadata: {sidecar})")
    return 0


# ----------------------------------------------------------------------------- ONNX


def define_onnx_flags():
    from absl import flags

    from prtr_tf.export import DEFAULT_OPSET
    return dict(
        saved_model=flags.DEFINE_string("saved_model", None, "SavedModel directory to convert."),
        output=flags.DEFINE_string("output", None, "ONNX file to write (an existing file is "
                                   "kept unless --overwrite)."),
        overwrite=flags.DEFINE_bool("overwrite", False, "Replace an existing --output."),
        signature=flags.DEFINE_string("signature", "serve_crops", "Signature to convert."),
        opset=flags.DEFINE_integer("opset", DEFAULT_OPSET, "ONNX opset."),
        check=flags.DEFINE_bool("check", True, "Run the model once with ONNX Runtime."),
    )


def main_onnx(argv, f):
    from prtr_tf.export import onnx as onnx_export

    _no_arguments(argv)
    v = common.values(f)
    _required(v, "saved_model", "output")
    output, signature = v["output"], v["signature"]
    check_output(output, "--output", v["overwrite"], inputs=[("--saved_model", v["saved_model"])])
    onnx_export.convert(v["saved_model"], output, signature, v["opset"])
    print(f"wrote {output} (signature {signature}, opset {v['opset']})")
    if v["check"]:
        dynamic = 64 if signature == "serving_default" else 1
        out = onnx_export.run(output, onnx_export.zero_feeds(output, dynamic))
        print("onnxruntime: " + ", ".join(f"{k} {v.shape}" for k, v in out.items()))
    return 0


# ------------------------------------------------------------------------- dispatch

FORMATS = {
    "saved_model": (SAVED_MODEL_DOC, define_saved_model_flags, main_saved_model),
    "tflite": (TFLITE_DOC, define_tflite_flags, main_tflite),
    "onnx": (ONNX_DOC, define_onnx_flags, main_onnx),
}


def usage(prog="prtr-export"):
    lines = [f"usage: {prog} {{{','.join(FORMATS)}}} [flags]", ""]
    lines += [f"  {name:<12} {doc.splitlines()[0]}" for name, (doc, _, _) in FORMATS.items()]
    lines += ["", f"{prog} FORMAT --help lists the flags of FORMAT."]
    return "\n".join(lines)


def run_format(name, argv=None):
    """Runs the exporter of format ``name`` on ``argv`` (default sys.argv): its
    docstring is what --help prints, its flags the ones defined."""
    doc, define_flags, main = FORMATS[name]
    common.run(define_flags, main, argv, doc=doc, required=REQUIRED[name])


def run():
    """``prtr-export FORMAT [flags]`` (the console script)."""
    prog = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "--helpshort", "--helpfull", "help"):
        print(usage(prog), file=sys.stdout if args else sys.stderr)
        sys.exit(0 if args else 2)
    if args[0] not in FORMATS:
        print(f"error: unknown format {args[0]!r}: the first argument is one of "
              f"{', '.join(FORMATS)}\n(run {prog} --help)", file=sys.stderr)
        sys.exit(2)
    sys.argv[:] = [f"{prog} {args[0]}"] + args[1:]
    run_format(args[0])


if __name__ == "__main__":
    run()
