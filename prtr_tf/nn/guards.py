"""The empty-batch guard.

TensorFlow's Conv2D mishandles an empty batch and the readout's while loops would be
built with zero sizes; where a batch may be empty at run time (no person detected),
one filler row goes through instead and the results are sliced back with ``[:n]``.
"""
import tensorflow as tf


def nonempty(x, fill=0.0):
    """``x`` (N, ...) with one row of ``fill`` appended when N is 0 (else unchanged).
    Slice what comes out of it with ``[:tf.shape(x)[0]]``."""
    x = tf.convert_to_tensor(x)
    pad = tf.maximum(1 - tf.shape(x)[0], 0)
    shape = tf.concat([[pad], tf.shape(x)[1:]], 0)
    return tf.concat([x, tf.fill(shape, tf.cast(fill, x.dtype))], 0)
