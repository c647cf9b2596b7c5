"""TensorFlow's start-up banners, once, and at the log level asked for.

TensorFlow 2.21 loads two native libraries that each initialise their own logging,
so ``import tensorflow`` prints its start-up lines ("All log messages before
absl::InitializeLog() ...", the oneDNN note) twice, and before TF_CPP_MIN_LOG_LEVEL
is read. `import_tensorflow` imports it with the process's stderr (file descriptor 2)
sent to a temporary file, then writes each distinct line once, leaving out those
below TF_CPP_MIN_LOG_LEVEL (1: no info lines, 2: no warnings either; the CLIs set 2,
so a command's first stderr line is its own). A process that starts others (the
demo's two trainings) passes the lines it showed (`shown`) to them, and they leave
those out: the banner once per command, not once per process.
"""
import os
import re
import sys
import tempfile

# "I0000 00:00:1796194065.013173    4962 port.cc:153] ..." -> "port.cc:153] ...";
# group 1: the severity (I, W, E, F)
_PREFIX = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+\s+")
_shown = []  # the start-up lines written by this process (without their prefixes)
_ABSL_NOTE = "WARNING: All log messages before absl::InitializeLog()"


def _min_level():
    """TF_CPP_MIN_LOG_LEVEL as TensorFlow reads it (0 when unset or not a number)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def shown():
    """The start-up lines this process wrote, as keys for ``import_tensorflow(skip=)``."""
    return list(_shown)


def import_tensorflow(skip=()):
    """Imports tensorflow (a no-op when imported already) with its start-up lines
    deduplicated, leaving out those in ``skip`` (another process's `shown`); returns
    the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr (embedded, captured)
        import tensorflow
        return tensorflow
    with tempfile.TemporaryFile(mode="w+b") as temp:
        os.dup2(temp.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            temp.seek(0)
            text = temp.read().decode("utf-8", "replace")
        seen, lines = set(skip), []
        level, dropping = _min_level(), False
        for line in text.splitlines():
            prefix = _PREFIX.match(line)
            if prefix:  # a log line; the lines after it without a prefix continue it
                dropping = "IWEF".index(prefix.group(1)) < level
            elif line.startswith(_ABSL_NOTE):  # the note on logging itself
                dropping = level >= 1
            if dropping:
                continue
            key = _PREFIX.sub("", line)
            if key not in seen:
                seen.add(key)
                _shown.append(key)
                lines.append(line)
        if lines:
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()
    return tensorflow
