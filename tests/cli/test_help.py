"""``--help`` and ``-h`` of every console command (and each ``prtr-export FORMAT``), run
as users run them: exit 0, the tool's own flags listed, the required ones marked, and
no TensorFlow start-up (help stays fast)."""
import os
import pathlib
import subprocess
import sys

import pytest

BIN = pathlib.Path(sys.executable).parent
CASES = {
    "prtr-train": (["--config", "--workdir", "--max_steps"], ["config", "workdir"]),
    "prtr-eval": (["--config", "--checkpoint", "--model", "--split", "--output"], []),
    "prtr-predict": (["--source", "--output", "--config", "--model", "--detector",
                      "--saved_model", "--tflite"],
                     ["source", "output"]),
    "prtr-convert": (["--config", "--checkpoint", "--output", "--[no]backbone_only"],
                     ["config", "checkpoint", "output"]),
    "prtr-export saved_model": (["--config", "--checkpoint", "--model", "--detector",
                                 "--detector_config", "--output", "--[no]overwrite"],
                                ["output"]),
    "prtr-export tflite": (["--config", "--model", "--quantization", "--output"], ["output"]),
    "prtr-export onnx": (["--saved_model", "--output"], ["saved_model", "output"]),
}


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("command", list(CASES))
def test_help_exits_0_and_lists_the_flags(command, flag):
    own, required = CASES[command]
    exe, *rest = command.split()
    proc = subprocess.run([str(BIN / exe), *rest, flag], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for name in own:
        assert f"  {name}:" in out, (name, out)
    for name in required:  # marked, and only those
        assert f"  --{name}: (required)" in out, (name, out)
    assert out.count("(required)") == len(required)
    # No TensorFlow start-up for help (its banner would be on stderr at log level 0).
    assert "tensorflow" not in proc.stderr.lower(), proc.stderr


def test_help_shows_the_values_of_config_defaults_with_a_config():
    """Defaults that come from the config are named (config.test.flip_test); with
    --config=NAME --help their values are shown; without, help says how to see them."""
    with_config = subprocess.run([str(BIN / "prtr-eval"), "--config=synthetic_tiny",
                                  "--help"], capture_output=True, text=True, timeout=120)
    assert with_config.returncode == 0, with_config.stderr
    text = " ".join(with_config.stdout.split())
    assert "config.test.flip_test (= True)" in text, text
    assert "config.test.use_gt_bbox (= True)" in text, text
    without = subprocess.run([str(BIN / "prtr-eval"), "--help"], capture_output=True,
                             text=True, timeout=120)
    assert "run with --config=NAME --help to see their values" in without.stdout
    assert "(= " not in without.stdout


def test_ctrl_c_is_one_line_and_status_130(tmp_path):
    """Ctrl-C in any tool (`prtr_tf.cli.common.run`): one line on stderr, exit 130 (the
    shell's status for SIGINT), no traceback."""
    code = ("from prtr_tf.cli import common\n"
            "def main(argv, flags):\n"
            "    raise KeyboardInterrupt\n"
            "common.run(lambda: {}, main, argv=['tool'], doc='a tool')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("interrupted (Ctrl-C)")
