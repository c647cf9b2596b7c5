"""Exports the keypoint model (readout in-graph) and optionally the person detector to TFLite.

    python export/tflite.py --config=configs/coco_res50_384x288.py \
        --checkpoint=res50_384x288.weights.h5 --output=out/ --quantization=fp32,fp16,int8 \
        [--flip_test] [--detector_config=configs/detr_r50_person.py \
         --detector_checkpoint=detr.weights.h5 --detector_size=800,1216]

Writes OUTPUT/keypoints_{q}.tflite (+ keypoints_{q}.json, the metadata that is also
embedded in the .tflite) for every quantization q and, with a detector,
OUTPUT/detector_{q}.tflite (+ .json); prints each file's size. Builtin TFLite ops
only: the export fails, naming the ops, if the model would need Flex/select TF ops.
int8 is dynamic-range quantisation (int8 weights); int8_full is full-integer int8
(weights and activations) calibrated on --num_calibration representative crops
(--calibration_data: "train" = ground-truth person boxes of the config's training set,
"synthetic" = generated stick-figure images), with the readout kept in float32 (see
prtr_tf/tflite.py). int8_full applies to the keypoint model only: for the detector it
is skipped (with a note); use int8 there.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Keypoint model config (configs/*.py).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "Keypoint weights (*.weights.h5) or a training workdir; "
                                  "omitted: random initial weights (smoke tests only).")
_OUTPUT = flags.DEFINE_string("output", None, "Output directory.")
_QUANT = flags.DEFINE_list("quantization", ["fp32"], "Comma-separated: fp32, fp16, int8 "
                           "(dynamic range), int8_full (calibrated int8 activations).")
_NUM_CAL = flags.DEFINE_integer("num_calibration", 200, "int8_full: number of representative "
                                "crops for the activation ranges.", lower_bound=1)
_CAL_DATA = flags.DEFINE_enum("calibration_data", "train", ["train", "synthetic"],
                              "int8_full: crops of the config's training set (ground-truth "
                              "boxes) or of generated synthetic stick figures.")
_FLIP = flags.DEFINE_bool("flip_test", False, "Average with the mirrored crop in-graph.")
_BATCH = flags.DEFINE_integer("batch_size", 1, "Fixed batch size of the exported models.")
_DET_CONFIG = config_flags.DEFINE_config_file("detector_config", None,
                                              "Detector config (configs/detr_*.py).")
_DET_CHECKPOINT = flags.DEFINE_string("detector_checkpoint", None,
                                      "Detector weights (*.weights.h5) or workdir.")
_DET_SIZE = flags.DEFINE_list("detector_size", None, "Detector input H,W (fixed).")
flags.mark_flags_as_required(["config", "output"])


def main(argv):
    del argv
    from prtr_tf.export import tflite
    from prtr_tf.keypoint.model import build_model
    from prtr_tf.detector.model import build_detector

    quants = [q.strip() for q in _QUANT.value]
    bad = [q for q in quants if q not in tflite.QUANTIZATIONS]
    if bad:
        raise app.UsageError(f"--quantization: unknown {bad}; choose from {tflite.QUANTIZATIONS}")
    detector = _DET_CONFIG.value is not None
    if detector and not _DET_SIZE.value:
        raise app.UsageError("--detector_config needs --detector_size=H,W")
    if detector and len(_DET_SIZE.value) != 2:
        raise app.UsageError("--detector_size must be H,W")
    os.makedirs(_OUTPUT.value, exist_ok=True)

    from prtr_tf.weights import resolve_weights
    config = _CONFIG.value
    model = build_model(config.model)
    if _CHECKPOINT.value:
        model.load_weights(resolve_weights(_CHECKPOINT.value))
    else:
        print("warning: no --checkpoint, exporting random initial weights")
    representative = None
    if "int8_full" in quants:
        try:
            representative = tflite.representative_crops(config, _NUM_CAL.value,
                                                         _CAL_DATA.value)
        except (FileNotFoundError, ValueError) as e:
            raise app.UsageError(f"int8_full calibration (--calibration_data="
                                 f"{_CAL_DATA.value}): {e}; or use "
                                 "--calibration_data=synthetic") from e
        print(f"int8_full: {len(representative)} {_CAL_DATA.value} calibration crops")
    written = []
    for q in quants:
        fb = tflite.convert_keypoint_model(model, config, q,
                                           representative if q == "int8_full" else None,
                                           flip_test=_FLIP.value, batch_size=_BATCH.value)
        written.append(tflite.save_tflite(fb, os.path.join(_OUTPUT.value,
                                                           f"keypoints_{q}.tflite")))
    if detector:
        det_config = _DET_CONFIG.value
        det = build_detector(det_config.model)
        if _DET_CHECKPOINT.value:
            det.load_weights(resolve_weights(_DET_CHECKPOINT.value))
        else:
            print("warning: no --detector_checkpoint, exporting random initial weights")
        size = tuple(int(v) for v in _DET_SIZE.value)
        for q in quants:
            if q == "int8_full":
                print("detector: int8_full is not offered (no calibration images for it "
                      "here); skipped, use int8 (dynamic range)")
                continue
            fb = tflite.convert_detector(det, det_config, size, q, batch_size=_BATCH.value)
            written.append(tflite.save_tflite(fb, os.path.join(_OUTPUT.value,
                                                               f"detector_{q}.tflite")))
    for path, sidecar in written:
        print(f"{path}: {os.path.getsize(path) / 2**20:.2f} MiB (metadata: {sidecar})")


if __name__ == "__main__":
    app.run(main)
