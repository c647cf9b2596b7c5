

# The ONNX opset of `prtr_tf.export.onnx` (here, so that the CLI's --help reads it without
# importing TensorFlow).
DEFAULT_OPSET = 17
