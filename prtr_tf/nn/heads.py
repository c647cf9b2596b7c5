"""Heads shared by the DETR-style models: DETR's MLP, the learned queries and
torch.nn.Linear's default initialisation."""
import keras
import tensorflow as tf

from prtr_tf.nn.layers import Composite, dense, named


def torch_linear_init():
    """torch.nn.Linear's default weight init, U(±1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def query_embedding(num_queries, d):
    """The learned queries (torch ``nn.Embedding``, N(0, 1) init), built."""
    layer = named(keras.layers.Embedding(
        num_queries, d, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0)),
        "query_embed")
    layer.build(None)
    return layer


class MLP(Composite):
    """DETR's MLP: Linear+ReLU layers, the last one linear."""

    def __init__(self, hidden_dim, output_dim, num_layers, torch_name, **kw):
        super().__init__(**kw)
        self.layers_ = [
            dense(hidden_dim if i < num_layers - 1 else output_dim, f"{torch_name}.layers.{i}",
                  kernel_initializer=torch_linear_init())
            for i in range(num_layers)]

    def call(self, x):
        for i, layer in enumerate(self.layers_):
            x = layer(x)
            if i < len(self.layers_) - 1:
                x = tf.nn.relu(x)
        return x
