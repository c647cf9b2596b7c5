"""The one weights loader: a ``*.weights.h5`` file or a training workdir, one error
policy for every CLI and task.

* `resolve`: a file (``*.weights.h5``, or a self-contained model file ``*.keras``:
  `prtr_tf.checkpoints.artifact`), or a workdir's ``best.weights.h5`` (else
  ``last.weights.h5``);
* `load_into`: loads it into a built model; a file that does not fit names the file,
  the config and what it describes (eval, predict, export: strict);
* `load_fitting`: training's ``init_weights``: every tensor whose name and shape fit
  is loaded, the rest keeps its initial values (fine-tuning onto another keypoint
  set or query count), unless almost nothing fits (another backbone: an error);
* `load_model`: config (name, path, ConfigDict, or None: the one recorded with the
  checkpoint) + checkpoint -> (model, config), optionally checking the config's kind;
  a given config that computes differently from the recorded one is refused
  (`prtr_tf.checkpoints.artifact.check_same`) unless forced.

Errors: FileNotFoundError for what does not exist, ValueError for what does not fit.
"""
import os
import tempfile
import weakref

import h5py

from prtr_tf.checkpoints import artifact
from prtr_tf.data import keypoint_sets
from prtr_tf.files.keras_saving import cache_attr_skipsets
from prtr_tf.models import registry
from prtr_tf.nn import precision as precisions
from prtr_tf.training import keypoint_record

SUFFIX = ".weights.h5"
WORKDIR_FILES = ("best.weights.h5", "last.weights.h5")
# `load_fitting` refuses a file that fills less than this share of the model's values:
# a keypoint set's or a query count's tensors are a few percent of any model.
MIN_FITTING_SHARE = 0.5


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
    if not path.endswith((SUFFIX, artifact.SUFFIX)):
        raise ValueError(f"{what} {path!r} is not a prtr-tf model file (*{artifact.SUFFIX}), "
                         f"a Keras weights file (*{SUFFIX}) or a training workdir; convert "
                         "official .pth files with prtr-convert")
    return path


def load_into(model, path, what="checkpoint", config_name=None, description=None):
    """Loads the weights ``path`` names (`resolve`) into the built ``model``; returns
    the file. ``config_name`` and ``description`` go into the error of a misfit."""
    file = resolve(path, what)
    cache_attr_skipsets()
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


def _datasets(h5):
    """{path: dataset} of every array in an open .weights.h5 (Keras' layout: one path
    per variable, named by the layers that hold it)."""
    found = {}
    h5.visititems(lambda name, obj: found.__setitem__(name, obj)
                  if isinstance(obj, h5py.Dataset) else None)
    return found


def _short(path):
    return path.replace("/vars/", ":").replace("layers/", "")


class FitReport:
    """What `load_fitting` did: ``loaded`` and ``reinitialised`` lists of (path, shape
    in the model, shape in the file or None), ``unused`` (paths of the file the model
    has no variable for), the file."""

    def __init__(self, file, loaded, reinitialised, unused):
        self.file, self.loaded = file, loaded
        self.reinitialised, self.unused = reinitialised, unused

    def summary(self, limit=6):
        """One line: how much was loaded, and what was re-initialised and why."""
        n = len(self.loaded) + len(self.reinitialised)
        line = f"loaded {len(self.loaded)} of the model's {n} tensors"
        if not self.reinitialised:
            return line + " (all)"
        parts = [f"{_short(p)} {list(shape)} (file: {list(old) if old else 'none'})"
                 for p, shape, old in self.reinitialised[:limit]]
        more = len(self.reinitialised) - limit
        return (f"{line}; re-initialised {len(self.reinitialised)}: {', '.join(parts)}"
                + (f" and {more} more" if more > 0 else "")
                + (f"; {len(self.unused)} tensors of the file unused" if self.unused else ""))


def load_fitting(model, path, what="checkpoint", description=None, reinitialise=()):
    """Loads into the built ``model`` every tensor of the weights ``path`` names
    (`resolve`) whose name and shape match the model's; the others keep their initial
    values, as do the tensors under the layer names of ``reinitialise`` (e.g. a class
    head whose joints mean something else). Returns a `FitReport`. ValueError when
    less than `MIN_FITTING_SHARE` of the model's values, or of its backbone's (the
    variables under a layer named ``backbone``), fit: another backbone or
    architecture, nothing to fine-tune from."""
    file = resolve(path, what)
    cache_attr_skipsets()
    forced = tuple(str(name).strip("/") + "/" for name in reinitialise)
    with tempfile.TemporaryDirectory(prefix="prtr-init-") as folder:
        if artifact.is_model_file(file):  # its model's own weights file
            source_model = artifact.load(file, fold=False)[0]
            source_file = os.path.join(folder, "source" + SUFFIX)
            source_model.save_weights(source_file)
            del source_model
        else:
            source_file = file
        merged = os.path.join(folder, "merged" + SUFFIX)
        model.save_weights(merged)  # the model's own layout and initial values
        loaded, redone = [], []
        values = {"all": [0, 0], "backbone": [0, 0]}  # [fitting, total] values
        with h5py.File(source_file, "r") as source, h5py.File(merged, "r+") as target:
            theirs, ours = _datasets(source), _datasets(target)
            for name, dataset in ours.items():
                other = theirs.get(name)
                fits = other is not None and other.shape == dataset.shape
                for part in ("all", "backbone") if "backbone" in name.split("/") else ("all",):
                    values[part][0] += dataset.size if fits else 0
                    values[part][1] += dataset.size
                if not fits or name.startswith(forced):
                    redone.append((name, dataset.shape, None if other is None else other.shape))
                    continue
                dataset[...] = other[...]
                loaded.append((name, dataset.shape, other.shape))
            unused = sorted(set(theirs) - set(ours))
        for part, (fitting, total) in values.items():
            if total and fitting < MIN_FITTING_SHARE * total:
                desc = f" ({description})" if description else ""
                raise ValueError(
                    f"{what} {file!r} does not fit the model{desc}: "
                    f"{100.0 * fitting / total:.1f}% of the values of "
                    f"{'its backbone' if part == 'backbone' else 'the model'} have a tensor "
                    f"of the same name and shape in the file ({len(loaded)} of the model's "
                    f"{len(ours)} tensors fit). It is a model of another architecture "
                    "(another backbone?): fine-tuning starts from a model of the same "
                    "architecture with another keypoint set or query count; ImageNet "
                    "backbones go in config.train.init_backbone")
        model.load_weights(merged)
    return FitReport(file, loaded, redone, unused)


def recorded_set(config, checkpoint):
    """A custom ``config`` whose keypoint set cannot come from itself (no annotation
    file where its data fields point: `prtr_tf.data.keypoint_sets.has_own_set`)
    takes the set recorded in ``checkpoint``'s workdir (keypoint_set.json), when there
    is one; returns whether it did."""
    if not checkpoint or keypoint_sets.has_own_set(config):
        return False
    path, saved = keypoint_record.recorded(str(checkpoint))
    return saved is not None and keypoint_sets.adopt(config, saved, path)


def config_and_name(config, what="config"):
    """(ConfigDict, name for messages) of a config name, path or ConfigDict."""
    if isinstance(config, str):
        from prtr_tf.config import load_config
        return load_config(config), config
    return config, None


# Configs whose differences from their record were accepted (--force_config), by id:
# a CLI checks its config once (`prtr_tf.cli.common`) and loads with it later; weak, so
# a config that is gone leaves no entry (nor can a new object at its address inherit it).
_FORCED = weakref.WeakValueDictionary()


def config_of(config, checkpoint, label="--config", force=False, log=None):
    """The config to load ``checkpoint`` with: ``config`` (name, path or ConfigDict)
    checked against the config recorded with the checkpoint (a model file's, or its
    workdir's config.json: `prtr_tf.checkpoints.artifact.recorded_config`), or, when
    ``config`` is None, the recorded one. ValueError when a given config computes
    differently from the recorded one (unless ``force``) or when there is neither."""
    where, recorded = artifact.recorded_config(checkpoint) if checkpoint else (None, None)
    if config is None:
        if recorded is None:
            raise ValueError(f"no config for {checkpoint!r}: it records none (a "
                             "*.weights.h5 outside a workdir of this version); give "
                             f"{label}, or a model file (*{artifact.SUFFIX})")
        return recorded
    config, _ = config_and_name(config)
    if recorded is not None and _FORCED.get(id(config)) is not config:
        # A custom config's joints (num_joints 0: "from the set") before comparing: from
        # its annotation file, else from the record.
        if keypoint_sets.has_own_set(config):
            keypoint_sets.resolve(config)
        else:
            keypoint_sets.adopt(config, recorded, where)
        artifact.check_same(config, recorded, label, where, force=force, log=log)
        if force:  # loaded later with this config: not checked (nor warned) again
            _FORCED[id(config)] = config
    return config


def load_model(config, checkpoint, what="checkpoint", role=None, export_format=None,
               config_flag=None, fold=True, precision="float32", force_config=False,
               log=None):
    """Builds the model of ``config`` (name, path, ConfigDict, or None: the config
    recorded with ``checkpoint``, `config_of`) and loads ``checkpoint`` into it, for
    inference: with ``fold``, frozen BatchNorm is folded
    into the convolutions (`prtr_tf.nn.fold`; the same outputs within float rounding,
    fewer ops in exported graphs; not for a model that trains further). ``precision``:
    'float32' or 'bfloat16' compute (`prtr_tf.nn.precision`; float32 outputs either
    way). ``role``, ``export_format``: what the config's family must be and offer
    (`prtr_tf.models.registry.require`; None: anything); ``config_flag``: the flag that
    gave the config, for messages. A custom config whose annotation files are absent
    takes the keypoint set recorded in the checkpoint's workdir (keypoint_set.json).
    A self-contained model file (``*.keras``) brings its own config and weights.
    ``force_config``: load with a config that differs from the recorded one (a warning
    through ``log``). Returns (model, config, weights file)."""

    precision = precisions.check(precision, "--precision")
    name = config if isinstance(config, str) else None
    if config is None:
        resolve(checkpoint, what)  # the config comes from it: it must exist
    config = config_of(config, checkpoint, config_flag or "the config", force_config, log)
    label = config_flag or (f"config {name!r}" if name else "the config")
    recorded_set(config, checkpoint)
    kind = registry.require(config, label, what, role=role, export_format=export_format)
    if precision != "float32" and not kind.bfloat16_inference:
        raise ValueError(f"--precision={precision} is not available for the {kind.title} "
                         "(it runs in float32); use --precision=float32")
    file = resolve(checkpoint, what)  # a missing or misnamed file fails before the build
    if artifact.is_model_file(file):
        model, _, info = artifact.load(file, precision=precision, fold=fold)
        keypoint_record.check_same_set(config, info.get("keypoint_set"), label, file)
        artifact.attach(model, config, info)
        return model, config, file
    with precisions.dtype_policy(precision):
        model = kind.build(config.model)
    file = load_into(model, checkpoint, what, config_flag or name, kind.describe(config))
    keypoint_record.check(checkpoint, config, label)
    if fold:
        from prtr_tf.nn.fold import fold_frozen_batchnorm
        fold_frozen_batchnorm(model)
    artifact.attach(model, config)
    return model, config, file

