"""The progress line of long jobs (training epochs)."""
import collections
import math
import sys
import time


class Progress:
    """A one-line progress bar with ETA; plain lines every ``every`` steps off a tty.

    The rate (and so the ETA) comes from a moving window of the last ``window``
    updates, after ``warmup`` updates: the first steps of a run include tracing and
    compiling the step function, which would make an ETA from the start (or from
    step 1) far too long. Until then the ETA shows ``--:--``.
    """

    def __init__(self, total, prefix, every=50, stream=sys.stdout, window=20, warmup=1,
                 clock=time.time):
        self.total, self.prefix, self.every, self.stream = total, prefix, every, stream
        self.tty = stream.isatty()
        self.clock = clock
        self.start = clock()
        self.last_print = 0.0
        self.warmup = max(0, int(warmup))
        self.updates = 0
        self.times = collections.deque(maxlen=max(2, int(window) + 1))  # (done, time)

    def rate(self):
        """Steps per second over the window (0.0 until two updates after warm-up)."""
        if len(self.times) < 2:
            return 0.0
        (d0, t0), (d1, t1) = self.times[0], self.times[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 and d1 > d0 else 0.0

    def update(self, done, info=""):
        now = self.clock()
        self.updates += 1
        if self.updates >= self.warmup:
            self.times.append((done, now))
        rate = self.rate()
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        width = 24
        filled = int(width * done / max(self.total, 1))
        speed = f"{rate:.2f} it/s" if rate > 0 else "-.-- it/s"
        line = (f"{self.prefix} [{'=' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                f"{info} {speed} ETA {_duration(eta)}")
        final = done >= self.total
        if final:
            line += f" ({_duration(now - self.start)})"
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
        elif final or done % self.every == 0 or now - self.last_print > 60:
            self.stream.write(line + "\n")
            self.last_print = now
        self.stream.flush()


def _duration(seconds):
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(round(seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
