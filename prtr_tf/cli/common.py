"""What every command-line tool shares: absl flags defined when the tool runs (so
that importing a CLI module defines none), ``--help`` listing the tool's own flags
(also for the installed console scripts), and user mistakes reported in one line
with no traceback and no help dump.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class UserError(Exception):
    """A mistake of the user's (a file that does not exist, a config that does not
    fit): printed as ``error: ...``, exit status 1."""


def usage_error(message, exitcode=2):
    """An absl usage error (bad or missing flags): printed in one line, exit ``exitcode``."""
    from absl import app
    return app.UsageError(message, exitcode=exitcode)


def _config_flag_names(holders):
    """The names of the ml_collections config-file flags among ``holders``."""
    from absl import flags
    return [h.name for h in holders.values()
            if type(flags.FLAGS[h.name].parser).__name__ == "ConfigFileFlagParser"]


def resolve_config_args(argv, names):
    """``argv`` with the value of every config-file flag in ``names`` given as a config
    name (``--config=synthetic_tiny``) replaced by its file (`prtr_tf.config.find_config`),
    so that the config flags take a file or a name. FileNotFoundError for neither."""
    from prtr_tf.config import find_config
    out, i = list(argv), 1
    while i < len(out):
        arg = out[i]
        for name in names:
            if arg.startswith(f"--{name}="):
                out[i] = f"--{name}={find_config(arg.split('=', 1)[1])}"
            elif arg == f"--{name}" and i + 1 < len(out):
                out[i + 1] = find_config(out[i + 1])
                i += 1
        i += 1
    return out


def _short(error):
    """One line of an exception from flag parsing (ml_collections' messages are quoted
    reprs with embedded newlines)."""
    text = str(error).strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return " ".join(text.replace("\\n", " ").replace("\\'", "'").split())


def _parse_flags(argv):
    """absl's flag parsing, with every mistake (unknown flag, bad value, a typo in a
    ``--config.FIELD`` override, a config file that does not load) in one line."""
    from absl import flags
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = _short(e)
    except (AttributeError, KeyError) as e:  # a --config.FIELD override names no field
        if "get_config" in str(e):
            message = ("the --config file defines no get_config() (a config file is a "
                       "Python file whose get_config() returns the ConfigDict)")
        else:
            message = f"a --config override names an unknown field: {_short(e)}"
    except (TypeError, ValueError, OSError, SyntaxError) as e:
        message = f"{type(e).__name__}: {_short(e)}"
        not_python = [a.split("=", 1) for a in argv[1:] if a.startswith("--")
                      and "=" in a and a.split("=", 1)[0].endswith("config")
                      and os.path.isfile(a.split("=", 1)[1])
                      and not a.split("=", 1)[1].endswith(".py")]
        if not_python and isinstance(e, (SyntaxError, ValueError)):
            flag, path = not_python[0]
            message = (f"{flag} {path!r} is not a config file (a Python file whose "
                       "get_config() returns the ConfigDict): a weights or model file goes "
                       "in --checkpoint or --model")
    print(f"error: {message}\n(run with --help for the flags)", file=sys.stderr)
    sys.exit(2)


HELP_FLAGS = ("-h", "--help", "--helpshort")


def print_help(doc, holders, required=(), argv=()):
    """``doc`` and the tool's own flags (absl's text for them), the ``required`` ones
    marked, on stdout. A default that comes from the config (``config.test.flip_test``,
    "the detector config's data.test_size") is shown with its value when ``argv``
    gives that config (``--config=NAME --help``)."""
    from absl import flags
    for name in required:
        flag = flags.FLAGS[name]
        if not flag.help.startswith("(required)"):
            flag.help = f"(required) {flag.help}"
    own = [flags.FLAGS[h.name] for h in holders.values()]
    configs = _help_configs(argv)
    lines = [(doc or "").rstrip(), "", "flags:"]
    for flag in sorted(own, key=lambda f: f.name):
        lines.append(flags.text_wrap(_with_config_values(_flag_line(flag), configs),
                                     indent="    ", firstline_indent="  "))
    if not configs:
        lines += ["", "Defaults named config.FIELD come from the config: run with "
                  "--config=NAME --help to see their values."]
    lines += ["", "Try --helpfull to get a list of all flags."]
    print("\n".join(lines))


_CONFIG_FIELD = r"(detector config's |config's |config\.)((?:test|model|data)\.\w+)"


def _help_configs(argv):
    """{"config": ConfigDict, "detector_config": ...} of the config flags in ``argv``
    (files or names); a config that does not load is left out."""
    found = {}
    for arg in argv[1:]:
        for name in ("config", "detector_config"):
            if arg.startswith(f"--{name}="):
                try:
                    from prtr_tf.config import load_config
                    found[name] = load_config(arg.split("=", 1)[1])
                except Exception:  # noqa: BLE001 - help goes on without the values
                    pass
    return found


def _with_config_values(text, configs):
    """``text`` with "(= VALUE)" after each config field it names, from ``configs``."""
    import re

    def value(match):
        config = configs.get("detector_config" if match.group(1).startswith("detector")
                             else "config")
        if config is None:
            return match.group(0)
        node = config
        for key in match.group(2).split("."):
            node = node.get(key) if hasattr(node, "get") else None
        return match.group(0) if node is None else f"{match.group(0)} (= {node!r})"
    return re.sub(_CONFIG_FIELD, value, text)


def _flag_line(flag):
    name = f"--[no]{flag.name}" if flag.boolean else f"--{flag.name}"
    default = flag.default_as_str if flag.default is not None else None
    text = f"{name}: {flag.help}"
    if default is not None and flag.default != "" and not flag.boolean:
        text += f" (default: {default})"
    elif flag.boolean and flag.default is not None:  # None: its help says where from
        text += f" (default: {'true' if flag.default else 'false'})"
    return text


def run(define_flags, main, argv=None, doc=None, required=None):
    """Defines the flags (``define_flags()`` -> {name: FlagHolder}), parses them and
    calls ``main(argv, flags)``; returns its exit status through ``sys.exit``.

    ``--help`` (``-h``) prints ``doc`` (default: the docstring of ``main``'s module)
    and the flags, ``required`` (default: the module's ``REQUIRED``) marked, and exits 0. Config-file flags take a file or the name of a shipped config. FileNotFoundError,
    FileExistsError, ValueError and `UserError` raised by ``main`` are user mistakes:
    ``error: ...`` on stderr and exit status 1; Ctrl-C is one line and status 130; a usage error (and any mistake in the
    flags) is ``error: ...`` plus a pointer to ``--help``, status 2 unless it says
    otherwise.
    """
    from absl import app, flags

    doc = doc or sys.modules[main.__module__].__doc__
    if doc and "__main__" in sys.modules:  # absl's --help prints the __main__ docstring
        sys.modules["__main__"].__doc__ = doc
    holders = define_flags()
    for holder in holders.values():  # key flags of the running program: --help lists them
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[holder.name])
    argv = list(sys.argv if argv is None else argv)
    if set(HELP_FLAGS) & set(argv[1:]):
        if required is None:
            required = getattr(sys.modules[main.__module__], "REQUIRED", ())
        print_help(doc, holders, required, argv)
        sys.exit(0)
    from prtr_tf.cli import malloc
    malloc.tune()  # before TensorFlow allocates (`prtr_tf.cli.malloc`)
    try:
        argv = resolve_config_args(argv, _config_flag_names(holders))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

    def wrapped(args):
        # TensorFlow (~8 s of CPU) after absl has parsed the flags, so that a mistake in
        # them is reported in a fraction of a second; its start-up banner once, not twice
        # (`prtr_tf.cli.startup`). Imported by the first module that needs it instead
        # (a `sys.meta_path` hook), a process that had created a MirroredStrategy hung
        # in its final garbage collection.
        from prtr_tf.cli.startup import import_tensorflow
        import_tensorflow()
        try:
            return main(args, holders)
        except app.UsageError as e:
            print(f"error: {e}\n(run with --help for the flags)", file=sys.stderr)
            return e.exitcode
        except (UserError, FileNotFoundError, FileExistsError, NotADirectoryError,
                ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # Ctrl-C: one line, the shell's status for SIGINT
            print("interrupted (Ctrl-C): files being written were not kept under their "
                  "final names", file=sys.stderr)
            return 130

    app.run(wrapped, argv=argv, flags_parser=_parse_flags)


def check_number(value, flag, low=None, high=None, integer=False):
    """A usage error unless ``value`` (None: not given, fine) is a finite number in
    [``low``, ``high``] (either bound None: open)."""
    import math
    if value is None:
        return value
    if not math.isfinite(value) or (low is not None and value < low) or (
            high is not None and value > high):
        span = (f"between {low} and {high}" if low is not None and high is not None
                else f">= {low}" if low is not None else f"<= {high}")
        raise usage_error(f"--{flag}={value}: must be a {'whole ' if integer else ''}number "
                          f"{span}")
    return value


def values(holders):
    """{name: value} of a dict of FlagHolders."""
    return {name: holder.value for name, holder in holders.items()}


def define_precision_flag():
    """``--precision`` of the tools that build Keras models for inference."""
    from absl import flags

    from prtr_tf.nn.precision import PRECISIONS
    return flags.DEFINE_enum(
        "precision", "float32", list(PRECISIONS), "Compute precision of the Keras "
        "model(s): bfloat16 is faster with oneDNN on CPUs with AVX512-BF16 or AMX (weights "
        "and outputs stay float32; prtr_tf.nn.precision), slower elsewhere.")


def note_precision(precision):
    """Says on stderr when ``precision`` will likely be slow on this machine."""
    if precision == "bfloat16":
        from prtr_tf.nn.precision import bfloat16_note
        note = bfloat16_note()
        if note:
            print(note, file=sys.stderr, flush=True)


# ------------------------------------------------------------- model files (--model)

MODEL_FLAGS = {  # flag -> (its config flag, its checkpoint flag)
    "model": ("config", "checkpoint"),
    "detector": ("detector_config", "detector_checkpoint"),
}


def define_model_flags(detector=False):
    """``--model`` (and with ``detector`` ``--detector``): a self-contained model file
    in place of a config + checkpoint pair; ``--force_config``."""
    from absl import flags
    f = dict(
        model=flags.DEFINE_string(
            "model", None, "A prtr-tf model file (*.keras, from prtr-convert or train.py: "
            "config, weights and keypoint set in one file) or a training workdir, instead "
            "of --config and --checkpoint."),
        force_config=flags.DEFINE_bool(
            "force_config", False, "Load a model with a --config that differs from the "
            "config recorded with it (in its .keras file or its workdir's config.json) in "
            "fields that change its outputs."),
    )
    if detector:
        f["detector"] = flags.DEFINE_string(
            "detector", None, "A person detector model file (*.keras) or training "
            "workdir, instead of --detector_config and --detector_checkpoint.")
    return f


def apply_model_flags(v, log=None):
    """Turns ``--model``/``--detector`` of the flag values ``v`` into their checkpoint
    flags, and fills a config flag left empty with the config recorded with its
    checkpoint (a model file's, or its workdir's config.json); a given config that
    computes differently from the recorded one is an error naming the fields unless
    ``--force_config`` (`prtr_tf.checkpoints.weights.config_of`)."""
    from prtr_tf.checkpoints import artifact, weights
    for flag, (config_flag, checkpoint_flag) in MODEL_FLAGS.items():
        if not v.get(flag):
            continue
        if v.get(checkpoint_flag):
            raise usage_error(f"give --{flag} or --{checkpoint_flag}, not both")
        if not os.path.exists(v[flag]):
            raise usage_error(f"--{flag} {v[flag]!r} does not exist")
        v[checkpoint_flag] = v[flag]
    for flag, (config_flag, checkpoint_flag) in MODEL_FLAGS.items():
        if config_flag not in v or not v.get(checkpoint_flag):
            continue
        checkpoint = v[checkpoint_flag]
        if v[config_flag] is None and artifact.recorded_config(checkpoint)[1] is None:
            continue  # the tool says that a config is needed
        v[config_flag] = weights.config_of(v[config_flag], checkpoint, f"--{config_flag}",
                                           force=v.get("force_config", False), log=log)
    from prtr_tf.config_checks import validate
    for config_flag, _ in MODEL_FLAGS.values():  # numeric fields (--config.test.* ...)
        if v.get(config_flag) is not None:
            validate(v[config_flag])
    return v
