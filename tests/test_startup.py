"""TensorFlow's start-up banner once per command (`prtr_tf.cli.startup`): each distinct line
once in a process, and none of them again in a process told what another showed (the
demo's two training processes)."""
import json
import os
import subprocess
import sys

import pytest

CHILD = """
import json, sys
from prtr_tf.cli.startup import import_tensorflow, shown
import_tensorflow(skip=json.loads(sys.argv[1]))
print(json.dumps(shown()))
"""


def _import(skip):
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the banner is printed whatever it says
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(skip)], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_the_banner_once_and_not_again_in_a_process_told_it_was_shown():
    keys, err = _import([])
    if not keys:
        pytest.skip("this TensorFlow build prints no start-up lines")
    for key in keys:
        assert sum(key in line for line in err.splitlines()) == 1, (key, err)
    again, err2 = _import(keys)
    assert again == []
    for key in keys:
        assert key not in err2, err2


def _eval_with_a_missing_checkpoint(level):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    done = subprocess.run(
        [sys.executable, os.path.join(root, "eval.py"), "--config=configs/tiny.py",
         "--checkpoint=/nonexistent/x.weights.h5"], cwd=root, env=env,
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "does not exist" in done.stderr, done.stderr
    return done.stderr


def test_a_command_line_tool_prints_the_banner_once_and_only_when_asked():
    """eval.py (every CLI goes through `prtr_tf.cli.common.run`, which imports
    TensorFlow before the tool's work): a mistake found after the import. At the CLIs'
    default level (TF_CPP_MIN_LOG_LEVEL 2) no start-up line comes before the error;
    at level 0 each comes once."""
    keys, _ = _import([])
    if not keys:
        pytest.skip("this TensorFlow build prints no start-up lines")
    err = _eval_with_a_missing_checkpoint(None)
    assert err.startswith("error: checkpoint"), err
    err = _eval_with_a_missing_checkpoint("0")
    for key in keys:
        assert sum(key in line for line in err.splitlines()) <= 1, err
    assert sum(keys[0] in line for line in err.splitlines()) == 1, err
    assert err.splitlines()[-1].startswith("error: checkpoint"), err


def test_info_lines_are_left_out_at_level_1():
    """TF_CPP_MIN_LOG_LEVEL 1: the info lines of the banner (and the note on logging
    before them) are not written; they are not in `shown` either."""
    keys, _ = _import([])
    if not keys:
        pytest.skip("this TensorFlow build prints no start-up lines")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="1")
    done = subprocess.run([sys.executable, "-c", CHILD, "[]"], env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    quiet = json.loads(done.stdout.strip().splitlines()[-1])
    assert not any("oneDNN custom operations" in k or "InitializeLog" in k for k in quiet)
    assert "oneDNN custom operations" not in done.stderr, done.stderr
    assert "InitializeLog" not in done.stderr, done.stderr


def test_a_flag_error_is_reported_before_tensorflow_is_imported(tmp_path):
    """`prtr_tf.cli.common.run` imports TensorFlow after absl has parsed the flags: a
    mistake in them costs no TensorFlow import (~8 s of CPU). The process reports
    whether tensorflow was imported when it exited; rules out the import moving back
    before the parsing."""
    import subprocess
    import sys

    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('tensorflow imported:', 'tensorflow' in "
            "sys.modules))\n"
            "from prtr_tf.cli import train\n"
            f"sys.argv = ['train.py', '--config=synthetic_tiny', '--workdir={tmp_path}/run',"
            " '--strategy=bogus']\n"
            "train.run()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "flag --strategy=bogus: value should be one of" in proc.stderr
    assert "tensorflow imported: False" in proc.stdout, proc.stdout
    assert not (tmp_path / "run").exists()
