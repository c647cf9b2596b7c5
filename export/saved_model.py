"""`prtr-export saved_model`: exports the two-stage (or end-to-end) pipeline as a
TensorFlow SavedModel.

Its docs and flags: prtr_tf/cli/export.py, or run with --help.
"""
import os
import sys

# Run as a script, this directory comes first on sys.path, where export/onnx.py would
# shadow the onnx package (also for tf2onnx): put the repository root there instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__":
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    sys.path.insert(0, os.path.dirname(_HERE))

from prtr_tf.cli.export import run_format  # noqa: E402

if __name__ == "__main__":
    run_format("saved_model")
