"""Configs: `load_config`, and the config sections every kind shares.

Each file in ``configs/`` is an ml-collections config file whose ``get_config()``
calls its kind's builder (`prtr_tf.keypoint.config.two_stage`,
`prtr_tf.detector.config.detector`, `prtr_tf.end_to_end.config.end_to_end`) with
the values of one configuration, so that every field exists in every config of a
kind and overrides such as ``--config.train.epochs=3`` work the same everywhere. The
builders share `data_config` and `train_config`.
"""
import ml_collections

def data_config(fields, overrides):
    """``config.data``: the dataset's ``fields``, the loader fields every pipeline reads,
    then ``overrides`` (which may only name existing fields)."""
    data = dict(
        fields,
        num_parallel_calls=-1,  # tf.data.AUTOTUNE
        skip_bad_samples=True,  # warn and count; False makes a bad sample fatal
        synthetic=None,  # {'train': (num_images, seed), 'val': ...}: generate on first use
    )
    unknown = set(overrides) - set(data)
    if unknown:
        raise ValueError(f"unknown data field(s): {sorted(unknown)}")
    data.update(overrides)
    return ml_collections.ConfigDict(data)


def train_config(batch_size, epochs, lr, lr_backbone, lr_steps, lr_factor, seed=0):
    """``config.train``: AdamW with a backbone LR, clipping, MultiStepLR (spec §7)."""
    return ml_collections.ConfigDict(dict(
        batch_size=batch_size,  # global batch
        epochs=epochs,
        lr=lr,
        lr_backbone=lr_backbone,
        lr_steps=tuple(lr_steps),  # epochs at which the LR is multiplied by lr_factor
        lr_factor=lr_factor,
        weight_decay=1e-4,
        adam_epsilon=1e-8,
        clip_norm=0.1,
        seed=seed,
        log_every_steps=50,
        checkpoint_every_steps=500,
        eval_every_epochs=1,
        steps_per_epoch=0,  # 0: one pass over the training set
        init_weights="",  # *.weights.h5 to start from (e.g. from python -m prtr_tf.convert)
    ))


def load_config(path_or_name):
    """Loads ``get_config()`` from a config file path or a name in ``configs/``.

    ``coco_res50_384x288`` and ``configs/coco_res50_384x288.py`` both work.
    """
    import importlib.util
    import os

    path = path_or_name
    if not os.path.exists(path):
        repo_configs = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")
        candidate = os.path.join(repo_configs, os.path.basename(path))
        if not candidate.endswith(".py"):
            candidate += ".py"
        if not os.path.exists(candidate):
            names = sorted(f[:-3] for f in os.listdir(repo_configs) if f.endswith(".py")) \
                if os.path.isdir(repo_configs) else []
            raise FileNotFoundError(f"config {path_or_name!r} not found; known configs: "
                                    + ", ".join(names))
        path = candidate
    spec = importlib.util.spec_from_file_location("_prtr_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} has no get_config() function")
    return module.get_config()
