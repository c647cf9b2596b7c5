"""Import of official Deformable-DETR / deformable PRTR tensors into the deformable
building blocks of `prtr_tf.nn` (`prtr_tf.nn.deformable_transformer`,
`prtr_tf.nn.ms_deform_attn`): ``official_mapping`` names every official tensor of a
built model, ``copy_official`` assigns a state_dict with one error naming every
missing, unknown or mis-shaped tensor."""
import keras
import numpy as np

from prtr_tf.checkpoints.torch_import import attention_mapping, torch_mapping
from prtr_tf.nn.deformable_position import LevelEmbedding


class OfficialWeightsError(ValueError):
    """An official state_dict and a deformable block disagree; the message names every
    missing, unknown and mis-shaped tensor."""


def _dense(layer, p):
    out = {f"{p}.weight": (tuple(layer.kernel.shape)[::-1], [(layer.kernel, np.transpose)])}
    if layer.use_bias:
        out[f"{p}.bias"] = (tuple(layer.bias.shape), [(layer.bias, None)])
    return out


def _layer_norm(layer, p):
    c = tuple(layer.gamma.shape)
    return {f"{p}.weight": (c, [(layer.gamma, None)]), f"{p}.bias": (c, [(layer.beta, None)])}


def _project_mapping(layer):
    """Other tagged layers (convs, GroupNorm, Embedding, ... of a whole model) through the
    project's importer, (`prtr_tf.checkpoints.torch_import`)."""
    return torch_mapping(layer)


def official_mapping(model):
    """{official name: (shape, [(keras variable, numpy transform or None)])} for every
    official tensor of a built model or layer containing deformable blocks.

    Dense (torch Linear: weight transposed), LayerNormalization, GroupNormalization
    (``input_proj.{i}.1``), MultiHeadAttention (torch
    packed ``nn.MultiheadAttention``) and `LevelEmbedding` (``transformer.level_embed``, a
    bare parameter, as is) are converted here; any other layer carrying ``torch_name``
    (convs, GroupNorm, Embedding of a whole model) goes through the project's
    ``torch_mapping``. Raises if a weight of ``model`` has no official counterpart."""
    mapping = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, LevelEmbedding):
            if layer.official_name is None:
                continue
            items = {layer.official_name: (tuple(layer.embeddings.shape),
                                           [(layer.embeddings, None)])}
        elif getattr(layer, "torch_name", None) is None:
            continue
        elif isinstance(layer, keras.layers.MultiHeadAttention):
            items = attention_mapping(layer, layer.torch_name)
        elif isinstance(layer, keras.layers.Dense):
            items = _dense(layer, layer.torch_name)
        elif isinstance(layer, (keras.layers.LayerNormalization,
                                keras.layers.GroupNormalization)):
            items = _layer_norm(layer, layer.torch_name)
        else:
            items = _project_mapping(layer)
        for key, targets in items.items():
            if key in mapping:
                raise RuntimeError(f"two layers claim official tensor {key!r}")
            mapping[key] = targets
    covered = {id(v) for _, targets in mapping.values() for v, _ in targets}
    stray = [v.path for v in model.weights if id(v) not in covered]
    if stray:
        raise RuntimeError(f"model weights with no official counterpart: {stray[:10]}")
    return mapping


def _strip_module(state_dict):
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def official_transformer_weights(state_dict, prefix="transformer."):
    """The entries of an official state_dict (DataParallel ``module.`` stripped) under
    ``prefix``, as NumPy arrays."""
    state_dict = _strip_module(dict(state_dict))
    return {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            for k, v in state_dict.items() if k.startswith(prefix)}


def copy_official(mapping, state_dict, what="the model"):
    """Checks ``state_dict`` against ``mapping`` (`official_mapping`) and copies it:
    unknown, missing or mis-shaped tensors raise one `OfficialWeightsError` listing them
    all, and then nothing is assigned. Returns the names copied (mapping order)."""
    unknown = sorted(k for k in state_dict if k not in mapping)
    missing = sorted(k for k in mapping if k not in state_dict)
    assignments, misshaped = [], []
    for key, (shape, targets) in mapping.items():
        if key not in state_dict:
            continue
        value = np.asarray(state_dict[key])
        if tuple(value.shape) != tuple(shape):
            misshaped.append(f"{key}: checkpoint {tuple(value.shape)}, model {tuple(shape)}")
            continue
        for variable, transform in targets:
            array = transform(value) if transform is not None else value
            if tuple(array.shape) != tuple(variable.shape):
                misshaped.append(f"{key} -> {variable.path}: {tuple(array.shape)} vs "
                                 f"{tuple(variable.shape)}")
                continue
            assignments.append((variable, array))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): " + ", ".join(missing))
    if unknown:
        problems.append(f"{len(unknown)} unknown tensor(s): " + ", ".join(unknown))
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped tensor(s): " + "; ".join(misshaped))
    if problems:
        raise OfficialWeightsError(
            f"the official state_dict does not match {what}. " + " | ".join(problems) +
            ". Check d_model, dim_feedforward (deformable PRTR 2048, Deformable DETR 1024), "
            "the number of layers, feature levels, heads and points.")
    for variable, array in assignments:
        variable.assign(array.astype(variable.dtype))
    return [key for key in mapping if key in state_dict]


def load_official(layer, state_dict, prefix="transformer."):
    """Copies the official ``{prefix}*`` tensors (``transformer.level_embed``,
    ``transformer.encoder.layers.{i}.self_attn.sampling_offsets.weight``, ...,
    ``transformer.reference_points.*``) into a built `DeformableTransformer` (with the
    transposes of `official_mapping`). Entries outside ``prefix`` are ignored (the
    model's heads, ``query_embed``, ``input_proj``, backbone). A missing, unknown or
    mis-shaped ``{prefix}*`` tensor raises one `OfficialWeightsError` naming them all,
    and then nothing is assigned. Returns the names copied."""
    if not layer.built or not layer.weights:
        raise ValueError("load_official needs a built layer: call it once on inputs of "
                         "the model's shapes first")
    mapping = official_mapping(layer)
    outside = sorted(k for k in mapping if not k.startswith(prefix))
    if outside:
        raise OfficialWeightsError(
            f"the layer holds tensors outside prefix {prefix!r}: {outside[:10]}")
    return copy_official(mapping, official_transformer_weights(state_dict, prefix),
                         f"the deformable transformer ({prefix}*)")
