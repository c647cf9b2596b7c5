"""Shared test fixtures.

Material from ``../shared`` (golden parity fixtures, coco_mini, mpii_mini) is read
in place. When it is missing a test skips with the reason, except under CI=true,
where a missing ``../shared`` is a failure.
"""
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from prtr_tf.cli import malloc  # noqa: E402  (the tools' malloc settings, before TensorFlow)

malloc.tune()

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("PRTR_SHARED", REPO.parent / "shared"))


def require_shared(*parts):
    """Path under ../shared; skips (or fails under CI=true) when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        msg = f"{path} is missing (the project's ../shared material)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + ": it must be present in CI")
        pytest.skip(msg)
    return path


@pytest.fixture
def golden_dir():
    return require_shared("golden")


@pytest.fixture
def coco_mini():
    return require_shared("data", "coco_mini")


@pytest.fixture
def mpii_mini():
    return require_shared("data", "mpii_mini")


# The files that take longest (minutes on 2 CPU cores), started first: `make test`
# hands whole files to its 2 workers (pytest-xdist --dist loadfile) in collection
# order (with --no-loadscope-reorder; by default xdist sends the files with the most tests
# first), and these at the end of the order left one worker running them alone.
LONG_FIRST = ("tests/test_docs_commands.py", "tests/end_to_end/test_training.py",
              "tests/keypoint/test_custom_training.py",
              "tests/training/test_faults_keypoint.py",
              "tests/training/test_faults_end_to_end.py",
              "tests/training/test_faults_detector.py", "tests/training/test_trainer.py",
              "tests/serving/test_saved_model.py", "tests/serving/test_predict.py",
              "tests/cli/test_bad_input.py", "tests/detector/test_deformable_detr.py",
              "tests/keypoint/test_deformable.py", "tests/training/test_finetune_sets.py",
              "tests/nn/test_deformable_transformer.py", "tests/inference/test_predict_video.py",
              "tests/checkpoints/test_artifact.py", "tests/cli/test_bad_input_more.py",
              "tests/serving/test_threshold_default.py")


def pytest_collection_modifyitems(config, items):
    """Tests of the command-line tools (they run a tool in a subprocess, as users do)
    carry the marker ``cli``: ``-m cli`` runs them, ``-m "not cli"`` the rest. The
    files of `LONG_FIRST` come first (in that order), the rest as collected."""
    rank = {path: i for i, path in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
    for item in items:
        if item.get_closest_marker("cli") is None and "cli" in item.nodeid.split("/")[:2]:
            item.add_marker(pytest.mark.cli)


def pytest_terminal_summary(terminalreporter):
    """The fault-injection tests' report (tests/training/test_faults_*.py): how many
    kills each made, and that every killed run resumed to the uninterrupted weights."""
    lines = []
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            props = dict(getattr(report, "user_properties", []))
            if report.when == "call" and "fault_kills" in props:
                verdict = ("resumed to the uninterrupted run's weights and metrics"
                           if outcome == "passed" else "FAILED")
                lines.append(f"{report.nodeid.split('::')[-1]}: {props['fault_kills']} "
                             f"kill(s) -9 ({props.get('fault_plan', '')}; seed "
                             f"{props.get('fault_seed', '?')}): {verdict}")
    if lines:
        terminalreporter.section("fault injection")
        for line in lines:
            terminalreporter.line(line)
