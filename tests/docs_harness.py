"""The machinery of tests/test_docs_commands.py (the tables are there): the shell blocks
of the docs split into commands, the tiny stand-in configs, the input files made at
test time, and the script that runs a page's blocks.

Imported by the stand-in config files written into the test's folders (so that the
command-line tools, run in subprocesses, load the tiny configs): this module imports
neither pytest nor TensorFlow at module level.
"""
import dataclasses
import os
import pathlib
import re
import struct
import zipfile

REPO = pathlib.Path(__file__).resolve().parents[1]
SHELL_LANGS = ("sh", "bash", "shell", "console")
FENCE = re.compile(r"^```(\w*)")


# ------------------------------------------------------------------ docs parsing

@dataclasses.dataclass
class Command:
    first_line: str   # the command's first line as printed (comment stripped): its key
    text: str         # the whole command: continuations joined, comments stripped
    line: int         # 1-based line in the docs file


@dataclasses.dataclass
class Block:
    file: str         # relative to the repository: README.md, docs/data.md
    line: int         # 1-based line of the opening fence
    text: str         # the block as printed
    commands: list

    @property
    def first(self):
        return self.commands[0].first_line if self.commands else ""

    def where(self):
        return f"{self.file}:{self.line}"


def strip_comment(line):
    """``line`` without a shell comment (``#`` at the start or after whitespace,
    outside quotes), right-stripped."""
    quote, prev = None, " "
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and prev.isspace():
            return line[:i].rstrip()
        prev = ch
    return line.rstrip()


def split_commands(text, first_line_no=1):
    """The commands of a shell block: backslash continuations joined (also inside
    quotes, as bash joins them), comments and blank lines dropped."""
    commands, parts, start = [], [], None
    for k, raw in enumerate(text.splitlines()):
        line = strip_comment(raw)
        if not parts and not line.strip():
            continue
        if not parts:
            start = k
        continued = line.endswith("\\")
        parts.append(line[:-1] if continued else line)
        if not continued:
            first = parts[0].strip()
            joined = " ".join(p.strip() for p in parts if p.strip())
            commands.append(Command(first, joined, first_line_no + start))
            parts = []
    if parts:
        commands.append(Command(parts[0].strip(), " ".join(p.strip() for p in parts),
                                first_line_no + start))
    return commands


def shell_blocks(rel_path):
    """The fenced shell blocks (```sh, bash, shell, console) of one docs file."""
    lines = (REPO / rel_path).read_text(encoding="utf-8").splitlines()
    blocks, inside, body, opened = [], None, [], 0
    for i, line in enumerate(lines, 1):
        m = FENCE.match(line)
        if inside is None and m:
            inside, body, opened = m.group(1), [], i
        elif inside is not None and line.startswith("```"):
            if inside in SHELL_LANGS:
                text = "\n".join(body)
                blocks.append(Block(rel_path, opened, text, split_commands(text, opened + 1)))
            inside = None
        elif inside is not None:
            body.append(line)
    return blocks


def docs_files():
    return ["README.md"] + sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))


def all_blocks():
    return [b for f in docs_files() for b in shell_blocks(f)]


def assigned_variables(command_text):
    """Names assigned by a command made only of assignments (``D="..."``)."""
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=.*", command_text)
    return [m.group(1)] if m else []


# ------------------------------------------------------------ tiny stand-in configs

# The tiny config of each model family: a full-size config keeps its task (data, keypoint
# set, classes, schedule) and takes the twin's model sizes and image sizes.
TWINS = {"prtr": "tiny", "prtr_deformable": "deform_tiny", "detr": "synthetic_detector_tiny",
         "deformable_detr": "deformable_detr_tiny", "prtr_e2e": "e2e_tiny"}
KEEP_MODEL = ("kind", "num_joints", "num_classes")
DATA_SIZES = ("scales", "max_size", "test_size", "crop_resize_scales", "crop_min_size",
              "crop_max_size")
# One short epoch: two steps of two samples, validated at its end.
TRAIN = dict(epochs=1, steps_per_epoch=2, batch_size=2, eval_every_epochs=1,
             log_every_steps=1)
MIN_JOINT_QUERIES = 25  # the keypoint queries: at least one per joint (21 hand joints)
SYNTHETIC = {"train": (4, 1), "val": (4, 2)}  # images, persons (see prtr_tf.data.synthetic)


def _copy_fields(dst, src, keep=KEEP_MODEL):
    for key in src:
        if key in keep or key not in dst:
            continue
        if hasattr(src[key], "keys") and hasattr(dst[key], "keys"):
            _copy_fields(dst[key], src[key], keep)
        else:
            dst[key] = src[key]


def tiny_config(path):
    """The config of the file ``path`` at tiny sizes (see `TWINS`, `TRAIN`)."""
    from prtr_tf.config import load_config
    from prtr_tf.models import registry

    config = load_config(path)
    twin = load_config(TWINS[registry.kind_name(config)])
    _copy_fields(config.model, twin.model)
    for key in ("num_queries", "kpt_num_queries"):
        if registry.kind_name(config).startswith("prtr") and key in config.model:
            config.model[key] = max(config.model[key], MIN_JOINT_QUERIES)
    for key in DATA_SIZES:
        if key in config.data and key in twin.data:
            config.data[key] = twin.data[key]
    if config.data.get("synthetic"):
        config.data.synthetic = dict(SYNTHETIC)
    for key, value in TRAIN.items():
        if key in config.train:
            config.train[key] = value
    if "test" in config and "batch_size" in config.test:
        config.test.batch_size = 2
    return config


WRAPPER = '''"""configs/{name} of the checkout at the docs test's tiny sizes
(written by tests/test_docs_commands.py; tests/docs_harness.py: tiny_config)."""
import sys

sys.path.insert(0, {repo!r})
from tests.docs_harness import tiny_config  # noqa: E402


def get_config():
    return tiny_config({path!r})
'''


def write_tiny_configs(folder):
    """``folder``/configs/: a stand-in for every config of the checkout."""
    out = pathlib.Path(folder) / "configs"
    out.mkdir()
    for path in sorted((REPO / "configs").glob("*.py")):
        if path.name.startswith("_"):
            continue
        (out / path.name).write_text(WRAPPER.format(name=path.name, repo=str(REPO),
                                                   path=str(path)))


# ----------------------------------------------------- torch checkpoints without torch

def _unicode(s):
    b = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i):
    return b"J" + struct.pack("<i", i)


def _tuple(items):
    return b"(" + b"".join(items) + b"t"


def _ordered_dict(pairs):
    return (b"ccollections\nOrderedDict\n)R" +
            b"".join(k + v + b"s" for k, v in pairs))


def _tensor_pickle(key, array):
    pid = _tuple([_unicode("storage"), b"ctorch\nFloatStorage\n", _unicode(key),
                  _unicode("cpu"), _int(array.size)]) + b"Q"
    stride, acc = [], 1
    for n in reversed(array.shape):
        stride.insert(0, acc)
        acc *= n
    return (b"ctorch._utils\n_rebuild_tensor_v2\n" +
            _tuple([pid, _int(0), _tuple([_int(n) for n in array.shape]),
                    _tuple([_int(s) for s in stride]), b"\x89", _ordered_dict([])]) + b"R")


def write_torch_file(path, state_dict, training_args=None):
    """``state_dict`` ({name: float array}) as ``torch.save`` writes it (zip format,
    float32 storages). With ``training_args`` (a dict), a DETR-style training
    checkpoint {'model': state dict, 'epoch', 'args': argparse.Namespace}."""
    import numpy as np
    arrays = {k: np.ascontiguousarray(v, dtype="<f4") for k, v in state_dict.items()}
    keys = {name: str(i) for i, name in enumerate(arrays)}
    sd = _ordered_dict([(_unicode(n), _tensor_pickle(keys[n], a)) for n, a in arrays.items()])
    if training_args is None:
        body = sd
    else:
        namespace = (b"cargparse\nNamespace\n)\x81}" +
                     b"".join(_unicode(k) + _unicode(str(v)) + b"s"
                              for k, v in training_args.items()) + b"b")
        body = (b"}" + _unicode("model") + sd + b"s" + _unicode("epoch") + _int(49) + b"s"
                + _unicode("args") + namespace + b"s")
    stem = pathlib.Path(path).stem.replace(".", "_") or "archive"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{stem}/data.pkl", b"\x80\x02" + body + b".")
        z.writestr(f"{stem}/byteorder", "little")
        for name, array in arrays.items():
            z.writestr(f"{stem}/data/{keys[name]}", array.tobytes())


def official_state_dict(config, seed=0):
    """Random tensors with the names and shapes of the official checkpoint for the
    (tiny) ``config``'s model; detectors with the official 91-class COCO head."""
    import copy

    import numpy as np

    from prtr_tf.models import registry

    kind = registry.kind_name(config)
    config = copy.deepcopy(config)
    if kind in ("detr", "deformable_detr"):
        config.model.num_classes = 91
    model = registry.build_model(config)
    rng = np.random.default_rng(seed)
    if kind == "prtr":
        from prtr_tf.checkpoints.torch_import import official_shapes
        shapes = official_shapes(model)
        heads = ()
    elif kind == "detr":
        from prtr_tf.checkpoints.torch_import import official_shapes
        shapes = official_shapes(model)
        heads = ()
    elif kind == "prtr_deformable":
        from prtr_tf.checkpoints.deformable_import import official_mapping
        shapes = {k: s for k, (s, _) in official_mapping(model).items()}
        heads = ("class_embed.0.", "kpt_embed.0.")
    elif kind == "deformable_detr":
        shapes = {k: s for k, (s, _) in model.official_mapping().items()}
        heads = ("class_embed.0.", "bbox_embed.0.")
    else:
        raise ValueError(f"no official checkpoint layout for {kind}")
    sd = {k: rng.normal(scale=0.1, size=s).astype(np.float32) for k, s in shapes.items()}
    for key in [k for k in sd if k.endswith("running_var")]:
        sd[key] = np.abs(sd[key]) + 0.5
    layers = config.model.dec_layers
    for key in [k for k in sd if k.startswith(heads)]:
        for i in range(1, layers):
            sd[key.replace(".0.", f".{i}.", 1)] = sd[key].copy()
    return sd


def write_weights(config, path, seed=0):
    """A freshly initialised model of ``config`` saved as a Keras weights file."""
    import keras

    from prtr_tf.models import registry

    keras.utils.set_random_seed(seed)
    model = registry.build_model(config)
    model.save_weights(str(path))
