"""`make demo` over seeds: the documented median and range (issue 29).

    python -m tools.demo_seeds [--workdir=/tmp/prtr_demo_seeds] [--seeds=0,1,2]
        [--output=FILE.md] [--documented=prtr_tf/demo/documented.json]

Runs `python -m prtr_tf.demo --workdir=WORKDIR/seedK --seed=K` (what `make demo` runs,
with its seed) for each seed, one after the other, each in its own process as a user
would; a seed whose demo_results.json exists is only read (a killed run resumes: the
demo itself resumes its trainings). Then writes, atomically:

- the Markdown table (printed; --output FILE.md too): per seed the held-out keypoint AP
  with ground-truth boxes and with the detector's boxes, the detector's box AP, the
  minutes of the whole demo and the cores other processes kept busy meanwhile; then the
  median (min-max) over seeds; with the command, host CPU, core count and date;
- --documented (default: the package's ``prtr_tf/demo/documented.json``): the median,
  min and max of each number, which `make demo` prints a user's run against
  (`prtr_tf.demo.documented`). --documented='' writes none.
"""
import datetime
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from prtr_tf.demo.documented import METRICS, value  # noqa: E402
from tools.detector_convergence import fmt_spread, spread  # noqa: E402

# (demo_results.json key, label, digits): the documented numbers, then the load
COLUMNS = METRICS + (("others_cores", "others' cores", 2),)


def define_flags(f):
    from absl import flags
    flags.DEFINE_string("workdir", "/tmp/prtr_demo_seeds", "Each seed's demo goes into "
                        "WORKDIR/seedK.", flag_values=f)
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (--seed of the demo).", flag_values=f)
    flags.DEFINE_string("output", None, "Also write the Markdown table to this file.",
                        flag_values=f)
    flags.DEFINE_string("documented", None, "The JSON of the documented range (default: "
                        "the package's prtr_tf/demo/documented.json; '' for none).",
                        flag_values=f)
    flags.DEFINE_list("demo_args", [], "Extra arguments of every demo run (e.g. --quick, "
                      "for a smoke test).", flag_values=f)


def row_values(result):
    """The `COLUMNS` values of a demo_results.json ``result`` (None: not in it)."""
    return {key: value(result, key) if key == "minutes" else result.get(key)
            for key, _, _ in COLUMNS}


def summarise(results):
    """{key: {"median", "min", "max", "values"}} of the `COLUMNS` over ``results``
    ({seed: demo_results.json}, seed order) that every result has."""
    out = {}
    for key, _, _ in COLUMNS:
        values = [row_values(r)[key] for r in results.values()]
        if any(v is None for v in values):
            continue
        med, lo, hi = spread(values)
        out[key] = {"median": med, "min": lo, "max": hi, "values": values}
    return out


def markdown(results, header):
    """The report: ``header`` lines, one row per seed and the median (min-max) row."""
    head = ["seed"] + [label for _, label, _ in COLUMNS]
    out = list(header) + ["", "| " + " | ".join(head) + " |",
                          "|---|" + "---:|" * (len(head) - 1)]
    for seed, result in results.items():
        values = row_values(result)
        out.append(f"| {seed} | " + " | ".join(
            "—" if values[k] is None else f"{values[k]:.{d}f}" for k, _, d in COLUMNS) + " |")
    stats = summarise(results)
    if len(results) > 1:
        out.append("| median (min-max) | " + " | ".join(
            fmt_spread(stats[k]["values"], d) if k in stats else "—"
            for k, _, d in COLUMNS) + " |")
    return "\n".join(out) + "\n"


def documented(results, cpu, date, command):
    """The content of documented.json (`prtr_tf.demo.documented.load`)."""
    return {"seeds": [int(s) for s in results], "cpu": cpu, "date": date,
            "command": command, "metrics": summarise(results)}


def run_seed(workdir, seed, demo_args=(), log=lambda m: print(m, flush=True)):
    """The demo of ``seed`` into ``workdir`` (its own process; its output goes through);
    returns its demo_results.json."""
    path = os.path.join(workdir, "demo_results.json")
    if not os.path.exists(path):
        cmd = [sys.executable, "-m", "prtr_tf.demo", f"--workdir={workdir}", f"--seed={seed}",
               *demo_args]
        log(f"== seed {seed}: {' '.join(cmd[1:])} ==")
        status = subprocess.call(cmd)
        if status != 0:
            raise SystemExit(f"error: the demo of seed {seed} failed (exit status {status}; "
                             "its messages are above); re-running resumes it")
    else:
        log(f"== seed {seed}: {path} exists (read, not rerun) ==")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main(argv=None):
    from prtr_tf.demo import documented as doc
    from prtr_tf.files import atomic
    from tools.flags import parse, usage_error
    from tools.machine import cpu_model

    argv = list(sys.argv[1:] if argv is None else argv)
    f = parse(argv, define_flags, __doc__, "python -m tools.demo_seeds")
    try:
        seeds = [int(s) for s in f.seeds]
    except ValueError:
        usage_error(f"--seeds={','.join(f.seeds)}: whole numbers, e.g. 0,1,2")
    if not seeds or len(set(seeds)) != len(seeds):
        usage_error(f"--seeds={','.join(f.seeds)}: one or more distinct seeds")
    results = {s: run_seed(os.path.join(f.workdir, f"seed{s}"), s, f.demo_args)
               for s in seeds}
    cpu, date = cpu_model(), datetime.date.today().isoformat()
    command = "python -m tools.demo_seeds " + " ".join(argv)
    header = [f"Command: `{command.strip()}` (each seed: `python -m prtr_tf.demo "
              "--seed=K`, what `make demo` runs)", "",
              f"Host: {cpu}, {os.cpu_count()} cores; {date}. Seeds one after the other; "
              "others' cores: what other processes kept busy during that demo (above 0: "
              "it shared the cores)."]
    text = markdown(results, header)
    print("\n" + text)
    if f.output:
        atomic.write_text(f.output, text)
    target = doc.PATH if f.documented is None else f.documented
    if target:
        atomic.write_text(target, json.dumps(documented(results, cpu, date, command.strip()),
                                             indent=1) + "\n")
        print(f"documented range: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
