"""`prtr-export tflite`: exports the keypoint model (and optionally the person detector) as TFLite.

A shell over `prtr_tf.cli.export` (named to_tflite.py so that running it from this folder
shadows no package); its flags: --help.
"""
from prtr_tf.cli.export import run_format

if __name__ == "__main__":
    run_format("tflite")
