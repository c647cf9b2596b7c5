"""`prtr-export saved_model`: exports the two-stage (or end-to-end) pipeline as a
TensorFlow SavedModel.

A shell over `prtr_tf.cli.export` (named to_saved_model.py so that running it from this folder
shadows no package); its flags: --help.
"""
from prtr_tf.cli.export import run_format

if __name__ == "__main__":
    run_format("saved_model")
