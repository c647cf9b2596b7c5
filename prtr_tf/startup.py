"""TensorFlow's start-up banners, once.

TensorFlow 2.21 loads two native libraries that each initialise their own logging,
so ``import tensorflow`` prints its start-up lines ("All log messages before
absl::InitializeLog() ...", the oneDNN note) twice, whatever TF_CPP_MIN_LOG_LEVEL
says. `import_tensorflow` imports it with the process's stderr (file descriptor 2)
sent to a temporary file, then writes each distinct line once.
"""
import os
import re
import sys
import tempfile

# "I0000 00:00:1796194065.013173    4962 port.cc:153] ..." -> "port.cc:153] ..."
_PREFIX = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+\s+")


def import_tensorflow():
    """Imports tensorflow (a no-op when imported already) with its start-up lines
    deduplicated; returns the module."""
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
        seen, lines = set(), []
        for line in text.splitlines():
            key = _PREFIX.sub("", line)
            if key not in seen:
                seen.add(key)
                lines.append(line)
        if lines:
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()
    return tensorflow
