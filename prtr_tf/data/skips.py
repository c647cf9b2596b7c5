"""Counting skipped samples: bad annotations, missing or corrupt image files.

A bad sample is never dropped silently and never crashes an epoch by default: it is
logged as a warning that names the file and the annotation, and counted in a
`SkipCounter` that the trainer can print in its epoch summary. With
``skip=False`` (``config.data.skip_bad_samples = False``) the first bad sample raises
a ValueError carrying the same message.
"""
import logging
import threading

logger = logging.getLogger("prtr_tf.data")


class SkipCounter:
    """Thread-safe count of skipped samples, keeping their messages (the first ``keep``).

    ``count`` is the total so far; ``reset()`` returns it and starts over (call it once
    per epoch for per-epoch numbers). ``str(counter)`` is a one-line summary.
    """

    def __init__(self, keep=100):
        self._lock = threading.Lock()
        self._keep = keep
        self.count = 0
        self.messages = []

    def skip(self, message):
        """Counts one skipped sample and logs ``message`` as a warning."""
        with self._lock:
            self.count += 1
            if len(self.messages) < self._keep:
                self.messages.append(message)
        logger.warning("skipped: %s", message)

    def reset(self):
        """Returns the count and clears the counter."""
        with self._lock:
            count, self.count, self.messages = self.count, 0, []
        return count

    def __int__(self):
        return self.count

    def __str__(self):
        if not self.count:
            return "0 samples skipped"
        return f"{self.count} samples skipped (first: {self.messages[0]})"

    def __repr__(self):
        return f"SkipCounter(count={self.count})"


def bad_sample(message, skip=True, counter=None):
    """Handles one bad sample: counts and warns when ``skip``, else raises ValueError."""
    if not skip:
        raise ValueError(message)
    if counter is None:
        logger.warning("skipped: %s", message)
    else:
        counter.skip(message)
