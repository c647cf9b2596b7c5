"""The progress line of long jobs (training epochs)."""
import math
import sys
import time


class Progress:
    """A one-line progress bar with ETA; plain lines every ``every`` steps off a tty."""

    def __init__(self, total, prefix, every=50, stream=sys.stdout):
        self.total, self.prefix, self.every, self.stream = total, prefix, every, stream
        self.tty = stream.isatty()
        self.start = time.time()
        self.last_print = 0.0

    def update(self, done, info=""):
        now = time.time()
        rate = (done / (now - self.start)) if now > self.start else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        width = 24
        filled = int(width * done / max(self.total, 1))
        line = (f"{self.prefix} [{'=' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                f"{info} {rate:.2f} it/s ETA {_duration(eta)}")
        final = done >= self.total
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        elif final or done % self.every == 0 or now - self.last_print > 60:
            self.stream.write(line + "\n")
            self.last_print = now
        self.stream.flush()


def _duration(seconds):
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
