"""The importer's tensor layouts, checked by what the layers compute: every 1x1
convolution and every linear layer of an imported model gives, on a random input,
what the official (PyTorch-layout) weights give in NumPy."""
import numpy as np

from prtr_tf.config import load_config
from prtr_tf.models.keypoint.model import build_model
from prtr_tf.nn.layers import TorchConv2D
from prtr_tf.checkpoints.torch_import import load_state_dict, official_shapes


def _imported_tiny():
    model = build_model(load_config("tiny").model)
    rng = np.random.default_rng(0)
    state = {k: rng.normal(size=s).astype(np.float32) for k, s in official_shapes(model).items()}
    load_state_dict(model, state)
    return model, state


def test_1x1_convolutions_compute_the_official_weights():
    model, state = _imported_tiny()
    rng = np.random.default_rng(1)
    checked = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not isinstance(layer, TorchConv2D) or layer.kernel.shape[:2] != (1, 1) \
                or layer.strides != (1, 1):
            continue
        w = state[f"{layer.torch_name}.weight"]                     # (cout, cin, 1, 1)
        x = rng.normal(size=(1, 3, 4, w.shape[1])).astype(np.float32)
        expected = np.einsum("bhwi,oi->bhwo", x, w[:, :, 0, 0])
        if layer.use_bias:
            expected = expected + state[f"{layer.torch_name}.bias"]
        np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4, atol=1e-4)
        checked += 1
    assert checked >= 5  # bottleneck 1x1 convs and the input projection


def test_linear_layers_compute_the_official_weights():
    model, state = _imported_tiny()
    x = np.random.default_rng(2).normal(size=(2, model.class_embed.kernel.shape[0]))
    w, b = state["class_embed.weight"], state["class_embed.bias"]   # torch (out, in)
    np.testing.assert_allclose(model.class_embed(x.astype(np.float32)).numpy(),
                               x @ w.T + b, rtol=1e-4, atol=1e-4)
