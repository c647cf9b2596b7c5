"""The self-contained model file: one ``.keras`` file that holds a model's architecture
config, weights, keypoint set, preprocessing and provenance, and the Markdown model
card written beside it.

    prtr-convert --config=coco_res50_384x288 --checkpoint=pose_transformer_res50_384x288.pth \\
        --output=res50_384x288.keras                # + res50_384x288.md (the card)
    prtr-predict --model=res50_384x288.keras --detector=detr_person.keras --source=photos/ ...

    import prtr_tf
    pose, detector = prtr_tf.load("res50_384x288.keras"), prtr_tf.load("detr_person.keras")
    persons = prtr_tf.PoseEstimator(pose, detector=detector)(image)

The file is a Keras 3 archive (`keras.saving.load_model` opens it once this module is
imported: ``keras.saving.load_model(path)`` after ``import prtr_tf.checkpoints.artifact``):
its top object is a `PrtrModel`, whose Keras config is `INFO` (the prtr-tf fields below)
and which rebuilds the family's model from them (`prtr_tf.models.registry`) before
Keras loads the weights. Measured against a ``.weights.h5`` + ``--config`` (docs/
checkpoints.md, ``python -m tools.artifact_benchmark``): the same size within a few KB
and the same load time within noise, since both are one HDF5 of the same tensors plus
a model build; a KerasHub-style preset folder would add a second thing to copy.

The fields (``info``): ``format`` (`FORMAT`), ``config`` (the whole ConfigDict, tuples
tagged so they come back as tuples), ``kind``, ``keypoint_set`` (names, skeleton, flip
pairs, sigmas; also inside the config for custom sets), ``preprocessing`` (input size,
colour order, mean/std, pixel_std, box padding), ``provenance`` (tool, source file and
its SHA-256, date, prtr-tf version, licence as given) and ``metrics`` (when known).

Every training workdir also records the config it was trained with (`CONFIG_FILE`,
``config.json`` in the workdir), so a workdir loads without ``--config`` too, and a
``--config`` that differs from the recorded one in anything that changes the computation
(`computation_fields`) is refused naming the fields (`check_same`), unless forced.
"""
import datetime
import functools
import hashlib
import json
import os
import zipfile

import ml_collections

FORMAT = "prtr_tf.model/1"
SUFFIX = ".keras"
CONFIG_FILE = "config.json"  # a workdir's record of its config (`record_config`)
# Fields of config.model that only training reads: a config differing there computes
# the same outputs from the same weights.
TRAINING_ONLY = ("dropout", "kpt_dropout", "frozen_backbone", "max_train_persons",
                 "detach_boxes")
# Fields of config.data that change what the model sees at inference.
DATA_FIELDS = ("color_rgb", "mean", "std", "pixel_std", "box_padding", "test_size",
               "max_size", "pad_size", "pad_multiple")


# ------------------------------------------------------------------ config <-> JSON

def _encode(value):
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # NumPy scalars
        return value.item()
    return value


def _decode(value):
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(_decode(v) for v in value["__tuple__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def config_to_json(config):
    """The ConfigDict as JSON-ready data (tuples tagged)."""
    return _encode(config.to_dict())


def config_from_json(data):
    """The ConfigDict of `config_to_json`'s data."""
    return ml_collections.ConfigDict(_decode(data))


# ---------------------------------------------------------------------- comparisons

def computation_fields(config):
    """{dotted name: value} of the fields that change what a model computes from its
    weights: config.model (but `TRAINING_ONLY`) and the preprocessing of config.data."""
    out = {}

    def walk(prefix, section):
        for key, value in section.items():
            if key in TRAINING_ONLY:
                continue
            name = f"{prefix}.{key}"
            if isinstance(value, ml_collections.ConfigDict):
                walk(name, value)
            else:
                out[name] = value
    walk("model", config.model)
    data = config.get("data") or {}
    for key in DATA_FIELDS:
        if key in data:
            out[f"data.{key}"] = data[key]
    return out


def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return a == b


def differences(config, recorded):
    """[(field, value in ``config``, recorded value)] of the computation fields where
    the two differ (fields only one of them has are not compared: older records)."""
    ours, theirs = computation_fields(config), computation_fields(recorded)
    return [(k, ours[k], theirs[k]) for k in sorted(ours)
            if k in theirs and not _same(ours[k], theirs[k])]


LOAD_HINT = ("drop --config to use the recorded one, or pass --force_config to load it "
             "anyway")


def check_same(config, recorded, label, where, force=False, log=None, hint=LOAD_HINT):
    """ValueError naming the fields when ``config`` (given as ``label``) computes
    differently from the ``recorded`` config of ``where`` (a model file or workdir);
    with ``force`` a warning through ``log`` instead. ``hint``: what to do."""
    diff = differences(config, recorded)
    if not diff:
        return
    shown = ", ".join(f"{k}={_plain(a)!r} (recorded {_plain(b)!r})" for k, a, b in diff[:6])
    more = f" and {len(diff) - 6} more" if len(diff) > 6 else ""
    if force:
        if log:
            log(f"warning: {label} differs from {where} in {shown}{more}; loading anyway "
                "(--force_config)")
        return
    raise ValueError(f"{label} differs from the config {where} was trained with: "
                     f"{shown}{more}. These change what the model computes from its "
                     f"weights (its outputs would be wrong); {hint}")


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


# ------------------------------------------------------------------- workdir record

def record_config(workdir, config):
    """Writes (atomically) ``workdir``/config.json: the config a run trains with."""
    from prtr_tf.files import atomic
    path = os.path.join(workdir, CONFIG_FILE)
    data = {"format": FORMAT, "config": config_to_json(config)}
    atomic.write_text(path, json.dumps(data, indent=1) + "\n")
    return path


def recorded_config(checkpoint):
    """(path, ConfigDict) of the config recorded for ``checkpoint``: a model file's own,
    or the ``config.json`` of the workdir it is or lies in; (None, None) without one
    (a ``config.json`` that is not a prtr-tf record, e.g. another tool's beside a
    weights file, is not one)."""
    if not checkpoint:
        return None, None
    checkpoint = str(checkpoint)
    if is_model_file(checkpoint):  # its keypoint set resolved from the file
        return checkpoint, prepared_config(read_info(checkpoint)[0])
    folder = checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint)
    path = os.path.join(folder or ".", CONFIG_FILE)
    if not os.path.isfile(path):
        return None, None
    try:  # a config.json of something else beside a weights file is not a record
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict) or data.get("format") != FORMAT or "config" not in data:
        return None, None
    return path, config_from_json(data["config"])


# ------------------------------------------------------------------------- the file

def is_model_file(path):
    return str(path).endswith(SUFFIX) and os.path.isfile(str(path))


def read_info(path):
    """(info dict, ConfigDict) of a model file, read without building anything;
    ValueError for a file that is no prtr-tf model file."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    stat = os.stat(path)
    try:
        data = json.loads(_archive_config(os.path.abspath(path), stat.st_mtime_ns,
                                          stat.st_size))
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError) as e:
        raise ValueError(f"{path!r} is not a Keras model file (.keras archive): {e}; a "
                         "truncated copy?") from None
    info = (data.get("config") or {}).get("prtr") if isinstance(data, dict) else None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        name = data.get("class_name") if isinstance(data, dict) else None
        raise ValueError(f"{path!r} is a Keras model file but not a prtr-tf model "
                         f"(top object {name!r}, expected PrtrModel with format {FORMAT}); "
                         "write one with prtr-convert --output=X.keras or train.py")
    return info, config_from_json(info["config"])


@functools.lru_cache(maxsize=8)
def _archive_config(path, mtime_ns, size):
    """The archive's config.json bytes (read once per file version: the tools ask for
    a model's config several times before loading it)."""
    with zipfile.ZipFile(path) as archive:
        return archive.read("config.json")


def sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def make_info(config, tool, source=None, metrics=None, licence=None):
    """The prtr-tf fields of a model file of ``config`` (see the module docstring)."""
    import prtr_tf
    from prtr_tf.data import keypoint_sets
    from prtr_tf.models import registry
    family = registry.get(config)
    data = config.get("data") or ml_collections.ConfigDict()
    pre = {k: _plain(data[k]) for k in DATA_FIELDS if k in data}
    if config.model.get("image_size"):
        pre["input_size_hw"] = list(config.model.image_size)
    kset = None
    if config.model.get("num_joints") or data.get("dataset") == keypoint_sets.CUSTOM:
        kset = keypoint_sets.metadata(config)
    provenance = {"tool": tool, "prtr_tf_version": prtr_tf.__version__,
                  "created": datetime.datetime.now(datetime.timezone.utc)
                  .replace(microsecond=0).isoformat(),
                  "licence": licence or "not recorded: the licence of the source "
                                        "checkpoint's project (or of the training data) applies"}
    if source:
        provenance.update(source=os.path.basename(str(source)),
                          source_sha256=sha256(source) if os.path.isfile(str(source)) else None)
    return {"format": FORMAT, "kind": family.name, "title": family.describe(config),
            "config": config_to_json(config), "keypoint_set": kset,
            "preprocessing": pre, "provenance": provenance,
            "metrics": {k: float(v) for k, v in (metrics or {}).items()
                        if isinstance(v, (int, float)) or hasattr(v, "item")}}


def _wrapper_class():
    import keras

    from prtr_tf.files.keras_saving import cache_attr_skipsets
    cache_attr_skipsets()  # every save and load of a model file comes here first

    @keras.saving.register_keras_serializable(package="prtr_tf")
    class PrtrModel(keras.Model):
        """The top object of a prtr-tf ``.keras`` file: ``model`` is the family's Keras
        model, ``info`` the prtr-tf fields (`make_info`)."""

        def __init__(self, prtr, model=None, **kwargs):
            super().__init__(**kwargs)
            self._prtr_json = json.dumps(prtr)
            if model is None:
                from prtr_tf.models import registry
                config = prepared_config(prtr)
                model = registry.get(config).build(config.model)
            self.model = model
            self.built = True

        @property
        def info(self):
            return json.loads(self._prtr_json)

        def call(self, inputs, training=False):
            return self.model(inputs, training=training)

        def get_config(self):
            return {"prtr": json.loads(self._prtr_json), "name": self.name}

        @classmethod
        def from_config(cls, config):
            return cls(config["prtr"], name=config.get("name"))

        def get_build_config(self):
            return None

        def build_from_config(self, config):
            pass

    return PrtrModel


_CLASS = []


def wrapper_class():
    """`PrtrModel` (defined and registered with Keras on first use)."""
    if not _CLASS:
        _CLASS.append(_wrapper_class())
    return _CLASS[0]


def prepared_config(info):
    """The ConfigDict of ``info``, its keypoint set resolved from the file (no
    annotation file is read)."""
    from prtr_tf.data import keypoint_sets
    config = config_from_json(info["config"])
    if info.get("keypoint_set") and not keypoint_sets.has_own_set(config):
        keypoint_sets.adopt(config, dict(info["keypoint_set"]), "the model file")
    return config


def save(model, config, path, tool, source=None, metrics=None, licence=None, card=True):
    """Writes ``model`` (built, weights loaded) of ``config`` as the model file ``path``
    (atomically) and, with ``card``, its model card beside it (``NAME.md``); returns
    (path, card path or None)."""
    from prtr_tf.files import atomic
    if not str(path).endswith(SUFFIX):
        raise ValueError(f"a model file's name ends with {SUFFIX}, got {path!r}")
    info = make_info(config, tool, source, metrics, licence)
    wrapper = wrapper_class()(info, model=model, name="prtr_model")
    with atomic.atomic_output(path) as tmp:
        wrapper.save(tmp)
    card_path = None
    if card:
        card_path = str(path)[:-len(SUFFIX)] + ".md"
        atomic.write_text(card_path, model_card(info, os.path.basename(str(path))))
    return path, card_path


def load(path, precision="float32", fold=True):
    """(the family's Keras model with the file's weights, its ConfigDict, info) of the
    model file ``path``; ``fold`` folds frozen BatchNorm (inference), ``precision``
    'float32' or 'bfloat16' compute (`prtr_tf.nn.precision`)."""
    import keras

    from prtr_tf.nn import precision as precisions
    info, _ = read_info(path)
    wrapper_class()
    with precisions.dtype_policy(precisions.check(precision, "--precision")):
        try:
            wrapper = keras.saving.load_model(str(path), compile=False)
        except (ValueError, KeyError, OSError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"model file {str(path)!r} could not be loaded ({first}); a "
                             "file of another prtr-tf version, or a damaged copy") from e
    model = wrapper.model
    if fold:
        from prtr_tf.nn.fold import fold_frozen_batchnorm
        fold_frozen_batchnorm(model)
    config = prepared_config(info)
    attach(model, config, info)
    return model, config, info


def attach(model, config, info=None):
    """Gives ``model`` its config (``model.prtr_config``, what `prtr_tf.PoseEstimator`
    reads when no config is given) and a model file's ``info`` (``model.prtr_info``),
    outside Keras' and TensorFlow's attribute tracking (exports save the model's
    variables only)."""
    object.__setattr__(model, "prtr_config", config)
    object.__setattr__(model, "prtr_info", info)
    return model


# ------------------------------------------------------------------------ the card

def model_card(info, file_name):
    """The Markdown model card of a model file."""
    config = config_from_json(info["config"])
    prov, pre, kset = info["provenance"], info["preprocessing"], info.get("keypoint_set")
    lines = [f"# {file_name}", "",
             f"{info['title']}: a prtr-tf model file ({FORMAT}, model.kind "
             f"`{info['kind']}`).", "",
             "## Use", "", "```python", "import prtr_tf",
             f"model = prtr_tf.load({file_name!r})", "```", "",
             "or `--model` (`--detector` for a person detector) of prtr-predict, "
             "prtr-eval and prtr-export; no `--config` is needed.", "",
             "## Architecture", ""]
    lines += [f"- `{k}`: {v!r}" for k, v in sorted(computation_fields(config).items())
              if k.startswith("model.")]
    lines += ["", "## Preprocessing", ""]
    lines += [f"- `{k}`: {v!r}" for k, v in sorted(pre.items())]
    if kset:
        lines += ["", "## Keypoints", "",
                  f"{len(kset['keypoint_names'])} joints ({kset['dataset']}): "
                  + ", ".join(kset["keypoint_names"]) + ".",
                  f"Flip pairs: {kset['flip_pairs']}."]
    lines += ["", "## Provenance", ""]
    lines += [f"- {k}: {v}" for k, v in prov.items() if v is not None]
    lines += ["", "## Metrics", ""]
    if info.get("metrics"):
        lines += [f"- {k}: {v:.4f}" for k, v in info["metrics"].items()]
    else:
        lines += ["Not measured when this file was written (prtr-eval --model=FILE "
                  "measures them)."]
    return "\n".join(lines) + "\n"
