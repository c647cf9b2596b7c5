"""In-graph checks of what a client sends to an exported endpoint.

A SavedModel signature called through TF Serving, ``saved_model_cli`` or
``loaded.signatures[...]`` does not check shapes against its input signature: a batch,
an RGBA or a grayscale image would otherwise fail deep in the graph (``input must be
4-dimensional ... node resize/ScaleAndTranslate``), and ``saved_model_cli`` casts a
float image in [0, 1] to uint8 without a word (every pixel becomes 0 or 1). These
checks fail first, with an ``InvalidArgumentError`` that says what was sent and what to
send instead. (tf2onnx drops the Assert ops: an ONNX model does not check.)

The [0, 1] check catches such an image when some pixel was exactly 1.0 (white: every
pixel becomes 0 or 1, some 1); with none, the cast image is all black, which nothing can
tell from a black frame (which is valid input: no persons).
"""
import tensorflow as tf


def _checked(value, checks):
    """``value`` after the asserts ``checks``: (condition function, message parts), in
    order. Each condition is built after the previous assert, so it may rely on it."""
    deps = []
    for cond, data in checks:
        with tf.control_dependencies(deps):
            deps = [tf.debugging.Assert(cond(), data, summarize=8)]
    with tf.control_dependencies(deps):
        return tf.identity(value)


def checked_image(image, endpoint="serving_default"):
    """uint8 ``image`` asserted to be one (H, W, 3) RGB image of pixels in [0, 255].
    Declare the endpoint's input of unknown rank (``tf.TensorSpec(None, tf.uint8)``):
    with a static rank, TensorFlow folds the rank check away."""
    shape = tf.shape(image)
    checked = _checked(image, [
        (lambda: tf.equal(tf.rank(image), 3),
         [f"{endpoint}: `image` must be one (height, width, 3) uint8 RGB image; got a "
          "tensor of shape", shape, "(send a batch one image at a time; a grayscale "
          "image as 3 equal channels)"]),
        (lambda: tf.equal(shape[-1], 3),
         [f"{endpoint}: `image` must have 3 channels (RGB); got shape", shape,
          "(drop the alpha channel of RGBA)"]),
        (lambda: tf.reduce_all(shape > 0), [f"{endpoint}: `image` is empty: shape", shape]),
        (lambda: tf.not_equal(tf.reduce_max(image), 1),
         [f"{endpoint}: every pixel of `image` is 0 or 1: a float image in [0, 1] cast to "
          "uint8? (saved_model_cli casts inputs to the signature's dtype) Send uint8 RGB "
          "pixels in [0, 255], e.g. np.uint8(np.round(x * 255))"]),
    ])
    # The static shape for what follows; not tf.ensure_shape, whose shape TensorFlow's
    # graph optimiser carries back to the input (and folds the rank check away).
    checked.set_shape([None, None, 3])
    return checked


def checked_crops(images, size_hw, endpoint="serve_crops"):
    """float32 (B, H, W, 3) ``images`` asserted to be crops of ``size_hw``. (The
    signature's static rank 4 lets TensorFlow fold rank checks away: the size check
    comes first, so that the per-axis reads below stay within the actual shape.)"""
    height, width = size_hw
    shape = tf.shape(images)
    message = [f"{endpoint}: `images` must be float32 crops of shape (batch, {height}, "
               f"{width}, 3), normalised as in training; got shape", shape]
    return _checked(images, [
        (lambda: tf.equal(tf.size(images), shape[0] * height * width * 3), message),
        (lambda: tf.reduce_all(tf.stack([shape[1], shape[2], shape[3], shape[-1]])
                               == [height, width, 3, 3]), message),
    ])
