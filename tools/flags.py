"""absl flags for the tools' command lines, parsed into a `FlagValues` of their own so
that a tool's ``main(argv)`` can also be called from a test: ``--help`` (``-h``) prints
the tool's docstring and flags and exits 0; a bad flag is one ``error:`` line, exit 2."""
import sys
import types

from absl import flags


def parse(argv, define, doc, prog):
    """``define(flag_values)`` defines the flags on a new `flags.FlagValues`; returns their
    values parsed from ``argv`` (default ``sys.argv[1:]``) as attributes, positional
    arguments in ``.positional``."""
    values = flags.FlagValues()
    define(values)
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help", "--helpshort"} & set(args):
        print(f"usage: {prog} [flags]\n\n{doc.strip()}\n\nflags:\n"
              + values.get_help(include_special_flags=False))
        sys.exit(0)
    try:
        rest = values([prog] + args)
    except flags.Error as e:
        print(f"error: {e}\n(run with --help for the flags)", file=sys.stderr)
        sys.exit(2)
    return types.SimpleNamespace(**values.flag_values_dict(), positional=rest[1:])


def usage_error(message):
    """One ``error:`` line and exit 2."""
    print(f"error: {message}\n(run with --help for the flags)", file=sys.stderr)
    sys.exit(2)
