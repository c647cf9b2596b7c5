"""What the set criteria of every kind share: the per-layer stacks of a model's
outputs and the losses dict.

Layer order everywhere: aux layers first, in the order of ``aux_pred_*``, then the
final layer (``indices[-1]`` belongs to ``pred_*``).
"""
import tensorflow as tf


def stack_layers(outputs, names):
    """The per-layer predictions of a model output dict, e.g. ``names=("logits",
    "coords")`` for keypoints or ("logits", "boxes") for boxes.

    Params:
        outputs: dict with ``pred_NAME`` (B, Q, ...) of the final layer and optionally
            ``aux_pred_NAME`` (L-1, B, Q, ...) (L-1 may be 0), or DETR's
            ``aux_outputs`` list of dicts with ``pred_NAME``.

    Returns:
        One (L, B, Q, ...) tensor per name, aux layers first, final last, in the
        dtype of the final layer's (the losses cast to float32).
    """
    finals = [outputs[f"pred_{n}"][None] for n in names]
    if f"aux_pred_{names[0]}" in outputs:
        aux = [tf.cast(outputs[f"aux_pred_{n}"], f.dtype) for n, f in zip(names, finals)]
    elif outputs.get("aux_outputs"):
        aux = [tf.stack([tf.cast(a[f"pred_{n}"], f.dtype) for a in outputs["aux_outputs"]])
               for n, f in zip(names, finals)]
    else:
        return tuple(finals)
    return tuple(tf.concat([a, f], axis=0) for a, f in zip(aux, finals))


def loss_dict(terms):
    """{name: (weight, per-layer values (L,))} -> the losses dict of a set criterion.

    "loss" is the weighted sum over terms and layers (aux layers weigh as the final
    one); "loss_NAME" is the final layer's unweighted term and "loss_NAME_i" aux layer
    i's (these need a static layer count).
    """
    losses = {"loss": tf.add_n([tf.reduce_sum(w * v) for w, v in terms.values()])}
    for name, (_, values) in terms.items():
        losses[f"loss_{name}"] = values[-1]
    num_layers = next(iter(terms.values()))[1].shape[0] or 1
    for i in range(num_layers - 1):
        for name, (_, values) in terms.items():
            losses[f"loss_{name}_{i}"] = values[i]
    return losses
