"""The one weights loader: a ``*.weights.h5`` file or a training workdir, one error
policy for every CLI and task.

* `resolve`: a file, or a workdir's ``best.weights.h5`` (else ``last.weights.h5``);
* `load_into`: loads it into a built model; a file that does not fit names the file,
  the config and what it describes;
* `load_model`: config (name, path or ConfigDict) + checkpoint -> (model, config),
  optionally checking the config's kind.

Errors: FileNotFoundError for what does not exist, ValueError for what does not fit.
"""
import os

from prtr_tf.models import registry
from prtr_tf.nn import precision as precisions
from prtr_tf.training import keypoint_record

SUFFIX = ".weights.h5"
WORKDIR_FILES = ("best.weights.h5", "last.weights.h5")


def resolve(path, what="checkpoint"):
    """The weights file that ``path`` (a *.weights.h5 file or a workdir) names."""
    if not path:
        raise FileNotFoundError(f"no {what} given (a *.weights.h5 file or a training "
                                "workdir)")
    path = str(path)
    if os.path.isdir(path):
        for name in WORKDIR_FILES:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise FileNotFoundError(f"{what} {path!r} is a folder without {WORKDIR_FILES[0]} or "
                                f"{WORKDIR_FILES[1]} (not a training workdir, or its first "
                                "epoch has not finished)")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    if not path.endswith(SUFFIX):
        raise ValueError(f"{what} {path!r} is not a Keras weights file (*{SUFFIX}) or a "
                         "training workdir; convert official .pth files with python -m "
                         "prtr_tf.checkpoints.convert")
    return path


def load_into(model, path, what="checkpoint", config_name=None, description=None):
    """Loads the weights ``path`` names (`resolve`) into the built ``model``; returns
    the file. ``config_name`` and ``description`` go into the error of a misfit."""
    file = resolve(path, what)
    try:
        model.load_weights(file)
    except Exception as e:  # noqa: BLE001 - re-raised with the file and the config
        of = (f" of {config_name}" if str(config_name).startswith("--") else
              f" of config {config_name!r}") if config_name else ""
        desc = f" ({description})" if description else ""
        first = str(e).strip().splitlines()[0].rstrip(":") if str(e).strip() else type(e).__name__
        raise ValueError(f"{what} {file!r} does not fit the model{of}{desc}; check that "
                         f"the config is the one it was trained with ({first})") from e
    return file


def config_and_name(config, what="config"):
    """(ConfigDict, name for messages) of a config name, path or ConfigDict."""
    if isinstance(config, str):
        from prtr_tf.config import load_config
        return load_config(config), config
    return config, None


def load_model(config, checkpoint, what="checkpoint", role=None, export_format=None,
               config_flag=None, fold=True, precision="float32"):
    """Builds the model of ``config`` (name, path or ConfigDict) and loads
    ``checkpoint`` into it, for inference: with ``fold``, frozen BatchNorm is folded
    into the convolutions (`prtr_tf.nn.fold`; the same outputs within float rounding,
    fewer ops in exported graphs; not for a model that trains further). ``precision``:
    'float32' or 'bfloat16' compute (`prtr_tf.nn.precision`; float32 outputs either
    way). ``role``, ``export_format``: what the config's family must be and offer
    (`prtr_tf.models.registry.require`; None: anything); ``config_flag``: the flag that
    gave the config, for messages. Returns (model, config, weights file)."""

    precision = precisions.check(precision, "--precision")

    config, name = config_and_name(config)
    label = config_flag or (f"config {name!r}" if name else "the config")
    kind = registry.require(config, label, what, role=role, export_format=export_format)
    if precision != "float32" and not kind.bfloat16_inference:
        raise ValueError(f"--precision={precision} is not available for the {kind.title} "
                         "(it runs in float32); use --precision=float32")
    resolve(checkpoint, what)  # a missing or misnamed file fails before the model builds
    with precisions.dtype_policy(precision):
        model = kind.build(config.model)
    file = load_into(model, checkpoint, what, config_flag or name, kind.describe(config))
    keypoint_record.check(checkpoint, config, label)
    if fold:
        from prtr_tf.nn.fold import fold_frozen_batchnorm
        fold_frozen_batchnorm(model)
    return model, config, file
