"""The test suite's times by tier, from a JUnit report of a full run (docs/testing.md).

    make test-all PYTEST_ARGS="--junitxml=/tmp/suite.xml"
    python -m tools.suite_times /tmp/suite.xml [--workers=2] [--top=25]

Prints, in Markdown: the seconds of the CI tier (`make test`) and of the extended tier
(tests/conftest.py EXTENDED), each as the sum of its tests and as the estimated wall
time on ``--workers`` pytest-xdist workers that take whole files (``--dist loadfile``,
longest file first); every extended test with its time and its CI-tier sibling; the
CI tier's longest files (the order for tests/conftest.py LONG_FIRST). A test's time is
its setup + call + teardown as pytest reports it: a module fixture's time counts in the
first test that uses it. Times are of the run that wrote the report (host, load).
"""
import argparse
import collections
import datetime
import heapq
import pathlib
import sys
import xml.etree.ElementTree as ET

REPO = pathlib.Path(__file__).resolve().parents[1]

Case = collections.namedtuple("Case", "nodeid seconds skipped")


def _nodeid(classname, name, root):
    """tests.a.test_b.TestC + test_d -> tests/a/test_b.py::TestC::test_d (the longest
    prefix of the dotted class name that is a file under ``root``). A module skipped
    whole at collection comes with no class name and the module as its name."""
    if not classname:
        classname, name = name, None
    parts = classname.split(".")
    for i in range(len(parts), 0, -1):
        path = "/".join(parts[:i]) + ".py"
        if (pathlib.Path(root) / path).is_file():
            return "::".join([path, *parts[i:], *([name] if name else [])])
    raise ValueError(f"{classname}: no file under {root} for this JUnit class name")


def read_junit(path, root=REPO):
    """The test cases of a pytest JUnit report, as `Case` (in the report's order)."""
    tree = ET.parse(path)
    return [Case(_nodeid(case.get("classname"), case.get("name"), root),
                 float(case.get("time", 0)), case.find("skipped") is not None)
            for case in tree.iter("testcase")]


def tiers(cases, sibling):
    """{"ci": seconds, "extended": seconds}; ``sibling(nodeid)`` is true for extended."""
    out = {"ci": 0.0, "extended": 0.0}
    for case in cases:
        out["extended" if sibling(case.nodeid) else "ci"] += case.seconds
    return {k: round(v, 1) for k, v in out.items()}


def file_seconds(cases):
    """{test file: seconds}."""
    out = collections.defaultdict(float)
    for case in cases:
        out[case.nodeid.split("::")[0]] += case.seconds
    return {k: round(v, 1) for k, v in out.items()}


def wall_seconds(files, workers=2):
    """Estimated wall time of whole files on ``workers`` workers, longest file first,
    each to the worker that is free first."""
    loads = [0.0] * workers
    for seconds in sorted(files.values(), reverse=True):
        heapq.heapreplace(loads, loads[0] + seconds)
    return max(loads)


def report(cases, sibling, workers=2, top=25, cpu="?", date=None):
    ci = [c for c in cases if not sibling(c.nodeid)]
    ext = [c for c in cases if sibling(c.nodeid)]
    lines = [f"Host CPU: {cpu}; report of {date or datetime.date.today()}; "
             f"{workers} workers, whole files (--dist loadfile).", "",
             "| tier | tests | sum of test times | estimated wall time |", "|---|---|---|---|"]
    totals = tiers(cases, sibling)
    totals["all"] = round(totals["ci"] + totals["extended"], 1)
    for name, key, group in (("CI (`make test`)", "ci", ci), ("extended", "extended", ext),
                             ("all (`make test-all`)", "all", cases)):
        total = totals[key]
        wall = wall_seconds(file_seconds(group), workers)
        lines.append(f"| {name} | {len(group)} | {total:.0f} s | {wall / 60:.1f} min |")
    lines += ["", "| extended test | seconds | CI-tier sibling |", "|---|---|---|"]
    for c in sorted(ext, key=lambda c: -c.seconds):
        lines.append(f"| `{c.nodeid}` | {c.seconds:.0f} | `{sibling(c.nodeid)}` |")
    lines += ["", f"CI tier, the {top} longest files (tests/conftest.py LONG_FIRST):", "",
              "| file | seconds |", "|---|---|"]
    files = sorted(file_seconds(ci).items(), key=lambda kv: -kv[1])
    lines += [f"| `{f}` | {s:.0f} |" for f, s in files[:top]]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("junit", help="a pytest --junitxml report of a full run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from tests.conftest import extended_sibling
    from tools.machine import cpu_model

    cases = read_junit(args.junit)
    date = datetime.date.fromtimestamp(pathlib.Path(args.junit).stat().st_mtime)
    print(report(cases, extended_sibling, args.workers, args.top, cpu_model(), date))


if __name__ == "__main__":
    main()
