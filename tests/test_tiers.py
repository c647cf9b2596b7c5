"""The two tiers of the suite (tests/conftest.py EXTENDED, docs/testing.md): every
extended test and its CI-tier sibling exist, no sibling is itself extended, and
tools/suite_times.py reads a JUnit report into the tiers' times."""
import pathlib
import re

import pytest

from tests.conftest import EXTENDED, REPO, extended_sibling


def _defined(nodeid):
    """Whether ``nodeid`` (file::test[params]) names a test function of its file (and,
    with parameters, whether the parameter id appears in the file's text)."""
    path, _, rest = nodeid.partition("::")
    name, _, params = rest.partition("[")
    file = REPO / path
    if not file.is_file():
        return False
    text = file.read_text()
    if not re.search(rf"^\s*def {re.escape(name)}\(", text, re.M):
        return False
    return not params or all(p in text for p in params.rstrip("]").split("-"))


@pytest.mark.parametrize("test,sibling", sorted(EXTENDED.items()))
def test_extended_tests_and_their_siblings_exist(test, sibling):
    assert _defined(test), f"EXTENDED names {test}: no such test (renamed? update it)"
    assert _defined(sibling), f"{test}'s sibling {sibling}: no such test"
    assert not extended_sibling(sibling), f"{test}'s sibling {sibling} is extended too"


def test_extended_lookup_matches_parameters():
    # A key without parameters covers every parametrization; one with, only itself.
    fake = {"tests/a.py::t": "tests/b.py::s", "tests/a.py::u[x]": "tests/b.py::s"}
    import tests.conftest as c
    saved = dict(c.EXTENDED)
    try:
        c.EXTENDED.clear()
        c.EXTENDED.update(fake)
        assert c.extended_sibling("tests/a.py::t[p1]") == "tests/b.py::s"
        assert c.extended_sibling("tests/a.py::t") == "tests/b.py::s"
        assert c.extended_sibling("tests/a.py::u[x]") == "tests/b.py::s"
        assert c.extended_sibling("tests/a.py::u[y]") is None
        assert c.extended_sibling("tests/a.py::tt") is None
    finally:
        c.EXTENDED.clear()
        c.EXTENDED.update(saved)


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.training.test_a" name="test_x" time="100.0" />
<testcase classname="tests.training.test_a" name="test_y[p]" time="50.5" />
<testcase classname="tests.test_b.TestGroup" name="test_z" time="30.0" />
<testcase classname="tests.test_b" name="test_w" time="9.5"><skipped /></testcase>
<testcase classname="tests.test_c" name="test_v" time="20.0" />
<testcase classname="" name="tests.test_c" time="0.000"><skipped /></testcase>
</testsuite></testsuites>"""


def test_suite_times_reads_a_junit_report(tmp_path):
    from tools import suite_times

    (tmp_path / "tests" / "training").mkdir(parents=True)
    for f in ("tests/training/test_a.py", "tests/test_b.py", "tests/test_c.py"):
        (tmp_path / f).write_text("")
    report = tmp_path / "junit.xml"
    report.write_text(JUNIT)
    cases = suite_times.read_junit(str(report), root=tmp_path)
    assert [(c.nodeid, c.seconds) for c in cases] == [
        ("tests/training/test_a.py::test_x", 100.0),
        ("tests/training/test_a.py::test_y[p]", 50.5),
        ("tests/test_b.py::TestGroup::test_z", 30.0),
        ("tests/test_b.py::test_w", 9.5),
        ("tests/test_c.py::test_v", 20.0),
        ("tests/test_c.py", 0.0)]  # a module skipped at collection
    extended = {"tests/training/test_a.py::test_y": "tests/test_c.py::test_v"}
    tiers = suite_times.tiers(cases, lambda n: extended.get(n.split("[")[0]))
    assert tiers == {"ci": 159.5, "extended": 50.5}
    files = suite_times.file_seconds(c for c in cases if c.nodeid != "tests/training/"
                                     "test_a.py::test_y[p]")
    assert files == {"tests/training/test_a.py": 100.0, "tests/test_b.py": 39.5,
                     "tests/test_c.py": 20.0}
    # Two workers, whole files, longest first: 100 | 39.5 + 20.
    assert suite_times.wall_seconds(files, workers=2) == 100.0
    assert suite_times.wall_seconds({"a": 3, "b": 3, "c": 2, "d": 2, "e": 2}, 2) == 7
