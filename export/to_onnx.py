"""`prtr-export onnx`: exports SavedModel signatures as ONNX.

A shell over `prtr_tf.cli.export` (named to_onnx.py so that running it from this folder
shadows no package); its flags: --help.
"""
from prtr_tf.cli.export import run_format

if __name__ == "__main__":
    run_format("onnx")
