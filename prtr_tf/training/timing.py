"""Timing for the benchmarks: CPU use over a measured stretch, timed repeats, and
measuring again while other processes compete for the CPU.

On a shared machine the cores other processes keep busy meanwhile explain most of
the run-to-run variance; `CpuMeter` reports them (from ``/proc/stat``, Linux only)
next to this process's own CPU seconds per wall second.
"""
import os
import statistics
import time


def load():
    """The 1-minute load average."""
    return os.getloadavg()[0]


def machine_busy_seconds():
    """Busy CPU seconds of the whole machine so far, all cores (``/proc/stat``: user,
    nice, system, irq, softirq, steal; not idle and iowait), or None where
    ``/proc/stat`` is not readable."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest, guest_nice: inside user)
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _own_seconds():
    """CPU seconds of this process (``time.process_time``: the clock's own resolution,
    not ``os.times``' 1/100 s) and of its children that have been waited for (those
    only in ``os.times``, at 1/100 s)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


class CpuMeter:
    """Over a timed stretch (a context manager): ``own_cores``, this process's CPU
    seconds (with those of its child processes that ended meanwhile) per wall second
    (~ its threads when it got the cores it asked for), and ``other_cores``, the cores
    other processes kept busy meanwhile (NaN without ``/proc/stat``, whose 1/100 s
    resolution makes it rough for stretches under ~1 s)."""

    def __enter__(self):
        self.wall, self.own, self.machine = (time.perf_counter(), _own_seconds(),
                                             machine_busy_seconds())
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.wall
        self.own_cores = (_own_seconds() - self.own) / wall
        machine = machine_busy_seconds()
        self.other_cores = (float("nan") if machine is None or self.machine is None
                            else max(0.0, (machine - self.machine) / wall - self.own_cores))
        return False

    @property
    def stats(self):
        """{"own_cpu_per_wall", "others_cores" (only with ``/proc/stat``)}, rounded to
        0.01: the fields of an inference benchmark row."""
        stats = {"own_cpu_per_wall": round(self.own_cores, 2)}
        if self.other_cores == self.other_cores:  # not NaN
            stats["others_cores"] = round(self.other_cores, 2)
        return stats


def time_fn(fn, warmup, repeats):
    """Calls ``fn`` ``warmup`` times untimed, then ``repeats`` times timed: (seconds of
    the warm-up calls, [seconds per timed call], `CpuMeter.stats` of the timed calls)."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        fn()
    first = time.perf_counter() - t0
    times = []
    with CpuMeter() as meter:
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return first, times, meter.stats


def median_ms(times):
    """The median of ``times`` (seconds) in milliseconds."""
    return 1e3 * statistics.median(times)


class Retry:
    """Repeats a measurement while other processes compete for the CPU.

    ``retry(what, measure)``: ``measure()`` returns a row with ``other`` (cores busy
    elsewhere meanwhile). It is repeated, after ``wait`` seconds, while ``other``
    exceeds ``threshold``, at most ``retries`` more times; the least-contended row is
    kept, with ``runs`` set. ``log`` gets a line per repetition.
    """

    def __init__(self, retries, wait, threshold, log):
        self.retries, self.wait, self.threshold, self.log = retries, wait, threshold, log

    def __call__(self, what, measure):
        best = None
        for run in range(1 + self.retries):
            if run:
                self.log(f"    {what}: other processes kept {best['other']:.2f} cores busy; "
                         f"measuring again in {self.wait:.0f}s ({run + 1}/{1 + self.retries})")
                time.sleep(self.wait)
            row = measure()
            if best is None or row["other"] < best["other"]:
                best = row
            if not best["other"] > self.threshold:  # also stops on NaN (no /proc/stat)
                break
        best["runs"] = run + 1
        return best
