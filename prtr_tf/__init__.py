"""prtr-tf: PRTR (Pose Recognition with Cascade Transformers) in TensorFlow/Keras."""

__version__ = "0.1.0"
