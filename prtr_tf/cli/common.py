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


def run(define_flags, main, argv=None):
    """Defines the flags (``define_flags()`` -> {name: FlagHolder}), parses them and
    calls ``main(argv, flags)``; returns its exit status through ``sys.exit``.

    FileNotFoundError, FileExistsError, ValueError and `UserError` raised by
    ``main`` are user mistakes: ``error: ...`` on stderr and exit status 1; a
    usage error is ``error: ...`` plus a pointer to ``--help`` (status 2 unless it
    says otherwise).
    """
    from absl import app, flags

    holders = define_flags()
    for holder in holders.values():  # key flags of the running program: --help lists them
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[holder.name])

    def wrapped(args):
        try:
            return main(args, holders)
        except app.UsageError as e:
            print(f"error: {e}\n(run with --help for the flags)", file=sys.stderr)
            return e.exitcode
        except (UserError, FileNotFoundError, FileExistsError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1

    app.run(wrapped, argv=argv)


def values(holders):
    """{name: value} of a dict of FlagHolders."""
    return {name: holder.value for name, holder in holders.items()}
