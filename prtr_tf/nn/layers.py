"""Building blocks shared by the backbones and transformers.

Every layer that owns weights of an official PyTorch module carries a
``torch_name`` attribute: the dotted module path of that module in the official
``state_dict`` (e.g. ``backbone.0.body.layer1.0.conv1``). The checkpoint importer
(`prtr_tf.checkpoints.torch_import`) walks the model, finds these layers and converts the
tensors ``{torch_name}.weight`` etc. by layer type. Use `named` to set it.
"""
import keras
import tensorflow as tf

BN_EPS = 1e-5
LN_EPS = 1e-5


def named(layer, torch_name):
    """Tags `layer` with the official module path whose tensors it holds."""
    layer.torch_name = torch_name
    return layer


class Composite(keras.layers.Layer):
    """A layer made of other layers (assigned in ``__init__``), which create their
    weights at the first call. Without a ``build`` of its own, Keras 3 would build such
    a layer by first tracing its ``call`` symbolically, which also runs every weight
    initialiser as graph ops: building HRNet-W32 took 39 s instead of ~6 s."""

    def build(self, *args, **kwargs):
        pass


class TorchConv2D(keras.layers.Conv2D):
    """Conv2D with PyTorch's symmetric zero padding (``padding=p`` in torch).

    Keras' ``'same'`` pads asymmetrically for stride 2, so official weights would
    land one pixel off; this pads explicitly and convolves with ``'valid'``.
    """

    def __init__(self, filters, kernel_size, strides=1, torch_padding=0, use_bias=False, **kw):
        super().__init__(filters, kernel_size, strides=strides, padding="valid",
                         use_bias=use_bias, **kw)
        self.torch_padding = int(torch_padding)

    def call(self, inputs):
        p = self.torch_padding
        if p:
            inputs = tf.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]])
        return super().call(inputs)

    def compute_output_shape(self, input_shape):
        p = 2 * self.torch_padding
        b, h, w, c = input_shape
        return super().compute_output_shape(
            (b, None if h is None else h + p, None if w is None else w + p, c))

    def get_config(self):
        config = super().get_config()
        config["torch_padding"] = self.torch_padding
        config.pop("padding", None)
        return config


def conv(filters, kernel_size, strides=1, padding=None, use_bias=False, torch_name=None,
         trainable=True):
    """A torch-style conv; ``padding`` defaults to ``kernel_size // 2``."""
    if padding is None:
        padding = kernel_size // 2
    layer = TorchConv2D(filters, kernel_size, strides=strides, torch_padding=padding,
                        use_bias=use_bias, trainable=trainable,
                        kernel_initializer="he_normal")
    return named(layer, torch_name) if torch_name else layer


class FrozenBatchNorm(keras.layers.Layer):
    """BatchNorm with fixed statistics and affine parameters (DETR's FrozenBatchNorm2d).

    All four tensors are buffers in the official code: they are never trained and
    are not counted as parameters. y = (x - mean) / sqrt(var + eps) * gamma + beta.
    ``folded`` (`prtr_tf.nn.fold`): the scale is in the convolution before it, the
    norm is a BiasAdd of beta.
    """

    def __init__(self, epsilon=BN_EPS, **kw):
        kw.setdefault("trainable", False)
        super().__init__(**kw)
        self.epsilon = epsilon
        self.folded = False

    def build(self, input_shape):
        c = (input_shape[-1],)
        self.gamma = self.add_weight(name="gamma", shape=c, initializer="ones", trainable=False)
        self.beta = self.add_weight(name="beta", shape=c, initializer="zeros", trainable=False)
        self.moving_mean = self.add_weight(name="moving_mean", shape=c, initializer="zeros",
                                           trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=c,
                                               initializer="ones", trainable=False)

    def call(self, x):
        if self.folded:
            return tf.nn.bias_add(x, tf.cast(self.beta, x.dtype))
        scale = self.gamma * tf.math.rsqrt(self.moving_variance + self.epsilon)
        shift = self.beta - self.moving_mean * scale
        return x * tf.cast(scale, x.dtype) + tf.cast(shift, x.dtype)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def batch_norm(torch_name=None, frozen=False):
    """BatchNorm matching torch's (eps 1e-5, torch momentum 0.1 = Keras 0.9)."""
    if frozen:
        layer = FrozenBatchNorm()
    else:
        layer = keras.layers.BatchNormalization(momentum=0.9, epsilon=BN_EPS)
    return named(layer, torch_name) if torch_name else layer


def layer_norm(torch_name=None):
    layer = keras.layers.LayerNormalization(epsilon=LN_EPS)
    return named(layer, torch_name) if torch_name else layer


def dense(units, torch_name=None, activation=None, use_bias=True, kernel_initializer=None):
    layer = keras.layers.Dense(units, activation=activation, use_bias=use_bias,
                               kernel_initializer=kernel_initializer or "glorot_uniform")
    return named(layer, torch_name) if torch_name else layer


def is_statistic(layer, variable):
    """True for tensors the official code keeps as buffers, not parameters.

    Those are every tensor of a FrozenBatchNorm and the moving statistics of a
    BatchNormalization; the official parameter counts exclude them.
    """
    if isinstance(layer, FrozenBatchNorm):
        return True
    if isinstance(layer, keras.layers.BatchNormalization):
        return variable is layer.moving_mean or variable is layer.moving_variance
    return False


def count_parameters(model):
    """Parameter count as the official code reports it (``sum(p.numel())``)."""
    seen = set()
    total = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for v in layer._trainable_variables + layer._non_trainable_variables:
            if id(v) in seen:
                continue
            seen.add(id(v))
            if not is_statistic(layer, v):
                total += int(v.numpy().size) if not v.shape.is_fully_defined() else int(
                    tf.TensorShape(v.shape).num_elements())
    return total
