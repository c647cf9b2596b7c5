"""TFLite export of the keypoint model (with its readout) and of the DETR person
detector, builtin ops only; one concern a module:

* `convert`: the conversion (`convert_keypoint_model`, `convert_detector`,
  quantisations, `UnsupportedOpsError`);
* `flatbuffer`: reading and rewriting flatbuffers (`list_ops`,
  `merge_network_and_readout`, schema helpers);
* `metadata`: the JSON metadata embedded in a model (`read_metadata`);
* `calibration`: representative crops for "int8_full";
* `runtime`: running a model (`make_interpreter`, `run_tflite`);
* `files`: writing models and their sidecars (`save_tflite`, `export_tflite`).

The names below are the package's public interface.
"""
from prtr_tf.export.tflite.calibration import CALIBRATION_SOURCES, representative_crops
from prtr_tf.export.tflite.convert import (QUANTIZATIONS, UnsupportedOpsError,
                                           check_builtin_only, convert_detector,
                                           convert_keypoint_model)
from prtr_tf.export.tflite.files import export_tflite, file_names, save_tflite
from prtr_tf.export.tflite.flatbuffer import list_ops, merge_network_and_readout
from prtr_tf.export.tflite.metadata import (METADATA_NAME, detector_metadata, embed_metadata,
                                            keypoint_metadata, read_metadata)
from prtr_tf.export.tflite.runtime import make_interpreter, run_tflite

__all__ = ["CALIBRATION_SOURCES", "METADATA_NAME", "QUANTIZATIONS", "UnsupportedOpsError",
           "check_builtin_only", "convert_detector", "convert_keypoint_model",
           "detector_metadata", "embed_metadata", "export_tflite", "file_names",
           "keypoint_metadata",
           "list_ops", "make_interpreter", "merge_network_and_readout", "read_metadata",
           "representative_crops", "run_tflite", "save_tflite"]
