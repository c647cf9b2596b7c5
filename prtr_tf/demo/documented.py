"""The documented `make demo` runs, and a run's numbers next to them.

``documented.json`` (beside this file, package data) holds the median, min and max over
the documented seeds of every number the demo scores, with the host CPU, the date and
the command. It is written by ``python -m tools.demo_seeds`` (the runs of docs/demo.md's
seed table), not by hand. `compare` is what `make demo` prints at its end, so a user
can tell whether their run landed where the documented ones did.
"""
import json
import os

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "documented.json")

# (key of demo_results.json, label, digits): the numbers compared.
METRICS = (
    ("keypoint_AP_gt_boxes", "keypoint AP, ground-truth boxes", 3),
    ("keypoint_AP_detector_boxes", "keypoint AP, the detector's boxes", 3),
    ("box_AP", "person detector, box AP", 3),
    ("minutes", "minutes", 1),
)


def load(path=PATH):
    """The documented runs ({"seeds", "cpu", "date", "command", "metrics": {key:
    {"median", "min", "max", "values"}}}), or None when there is no such file."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def value(summary, key):
    """``key`` of a demo_results.json ``summary`` ("minutes": from its seconds)."""
    if key == "minutes":
        return summary["seconds"] / 60.0
    return summary[key]


def verdict(x, entry):
    """Where ``x`` lies against a documented ``entry`` (min, max)."""
    if x < entry["min"]:
        return "below the documented range"
    if x > entry["max"]:
        return "above the documented range"
    return "within the documented range"


def compare(summary, documented=None):
    """The lines `make demo` ends with: each of `METRICS` of this run (``summary``, its
    demo_results.json) next to the documented median (min-max), and whether it lies
    inside."""
    documented = load() if documented is None else documented
    if not documented:
        return "(no documented runs to compare with: python -m tools.demo_seeds writes them)"
    seeds = ", ".join(str(s) for s in documented["seeds"])
    lines = [f"This run (seed {summary.get('seed', '?')}) against the documented runs "
             f"(seeds {seeds}; {documented['cpu']}, {documented['date']}; docs/demo.md):",
             f"  {'':36s}{'this run':>10s}   documented median (min-max)"]
    for key, label, digits in METRICS:
        entry = documented["metrics"].get(key)
        if entry is None:
            continue
        x = value(summary, key)
        lines.append(f"  {label:36s}{x:>10.{digits}f}   {entry['median']:.{digits}f} "
                     f"({entry['min']:.{digits}f}-{entry['max']:.{digits}f})  "
                     f"{verdict(x, entry)}")
    lines.append("  Training differs between runs (seed, thread timing, CPU instructions: "
                 "docs/demo.md); minutes depend on the machine and its load.")
    return "\n".join(lines)
