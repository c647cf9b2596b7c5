"""Configs: `load_config`, and the config sections every kind shares.

Each file in ``configs/`` is an ml-collections config file whose ``get_config()``
calls its kind's builder (`prtr_tf.models.keypoint.config.two_stage`,
`prtr_tf.models.detector.config.detector`, `prtr_tf.models.end_to_end.config.end_to_end`) with
the values of one configuration, so that every field exists in every config of a
kind and overrides such as ``--config.train.epochs=3`` work the same everywhere. The
builders share `data_config` and `train_config`.
"""
import ml_collections

# The Transformer fields of a DETR-style model (``config.model``) and their defaults
# (DETR's and the official PRTR's; the detector's dropout is 0.1).
TRANSFORMER_DEFAULTS = dict(hidden_dim=256, nheads=8, enc_layers=6, dec_layers=6,
                            dim_feedforward=2048, num_queries=100, dropout=0.0)


def transformer_fields(**values):
    """The Transformer fields of ``config.model``: `TRANSFORMER_DEFAULTS` with
    ``values`` (which may only name those fields)."""
    unknown = set(values) - set(TRANSFORMER_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown Transformer field(s): {sorted(unknown)}; expected "
                        f"{sorted(TRANSFORMER_DEFAULTS)}")
    return dict(TRANSFORMER_DEFAULTS, **values)


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
        warmup_steps=0,  # >0: the LR ramps up linearly over these first steps
        weight_decay=1e-4,
        adam_epsilon=1e-8,
        clip_norm=0.1,
        # --mixed_precision=float16 only: the dynamic loss scale's start and how many
        # finite steps in a row double it (prtr_tf.training.loss_scale; Keras' defaults).
        loss_scale_initial=2.0 ** 15,
        loss_scale_growth_steps=2000,
        seed=seed,
        log_every_steps=50,
        checkpoint_every_steps=500,
        eval_every_epochs=1,
        steps_per_epoch=0,  # 0: one pass over the training set
        init_weights="",  # *.weights.h5 to start from (e.g. from prtr-convert)
        # An ImageNet classification checkpoint for the backbone, as the official recipe
        # starts from (torchvision resnet50/101/152 .pth, hrnetv2_w32/w48_imagenet_pretrained
        # .pth, or an .npz of the same names); loaded after init_weights. A placeholder:
        # None, and --config.train.init_backbone=FILE sets a string.
        init_backbone=ml_collections.config_dict.placeholder(str),
    ))


def config_names():
    """The names of the shipped configs (``configs/``, the package ``prtr_tf.configs``)."""
    import importlib.resources
    shipped = importlib.resources.files("prtr_tf.configs")
    return sorted(r.name[:-3] for r in shipped.iterdir()
                  if r.name.endswith(".py") and not r.name.startswith("_"))


def find_config(name_or_path):
    """The file of a config: an existing path as it is; anything else is the name of a
    shipped config (``coco_res50_384x288``, ``coco_res50_384x288.py`` and
    ``configs/coco_res50_384x288.py`` all work from any folder). FileNotFoundError
    listing the known names otherwise."""
    import importlib.resources
    import os

    path = os.fspath(name_or_path)
    if os.path.exists(path):
        return path
    folder, name = os.path.split(path)
    if name.endswith(".py"):
        name = name[:-3]
    resource = importlib.resources.files("prtr_tf.configs") / f"{name}.py"
    # A bare name, or one in a configs/ folder (configs/tiny.py, ../configs/tiny.py)
    if (folder and os.path.basename(os.path.normpath(folder)) != "configs") \
            or not name or name.startswith(("_", ".")) or not resource.is_file():
        raise FileNotFoundError(f"config {name_or_path!r} not found (no such file, nor a "
                                f"config name); known configs: {', '.join(config_names())}")
    return os.fspath(resource)  # the package is a folder (wheel or editable install)


def load_config(name_or_path):
    """Loads ``get_config()`` from a config file path or the name of a shipped config
    (`find_config`)."""
    import importlib.util

    path = find_config(name_or_path)
    spec = importlib.util.spec_from_file_location("_prtr_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} has no get_config() function")
    return module.get_config()
