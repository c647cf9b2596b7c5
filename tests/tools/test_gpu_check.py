"""tools/gpu_check.sh: without a GPU it says so and measures nothing; --cpu_smoke
runs every part's code (tests, training rows with float16 + XLA, input pipeline,
inference) on the CPU at tiny sizes and writes the report. No machine of this project
has a GPU, so the GPU sizes themselves are untested here."""
import os
import pathlib
import re
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "gpu_check.sh"


def test_without_a_gpu_it_says_so_and_measures_nothing(tmp_path):
    out = tmp_path / "gpu.md"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHON=str(REPO / ".venv" / "bin" / "python"))
    proc = subprocess.run([str(SCRIPT), f"--output={out}"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.startswith("no GPU visible to TensorFlow: "), proc.stdout
    assert "pip install -e '.[gpu]'" in proc.stdout and str(out) in proc.stdout
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_cpu_smoke_needs_its_own_output():
    from tools.gpu_check import Options
    with pytest.raises(ValueError, match="output: name a file for the --cpu_smoke report"):
        Options(cpu_smoke=True)


def test_cpu_smoke_runs_every_part_and_writes_the_report(tmp_path):
    import keras
    from tools.gpu_check import run_gpu_check, smoke_options

    out = tmp_path / "smoke.md"
    lines = []
    options = smoke_options(str(out), data_root=str(tmp_path / "data"))
    assert run_gpu_check(options, log=lines.append) == 0, "\n".join(lines)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    text = out.read_text()
    assert text.startswith("# GPU check (CPU smoke run")
    assert "**passed** (1 passed" in text
    rows = re.findall(r"^\| synthetic_tiny \| (\w+) \| (yes|no) \| ([\d.]+) \| ([\d.]+) \|",
                      text, re.M)
    assert [(p, x) for p, x, _, _ in rows] == [("float16", "yes")]
    assert all(float(ms) > 0 and float(crops) > 0 for _, _, ms, crops in rows)
    assert re.search(r"crops/s per core", text) and "cores of input pipeline per GPU" in text
    assert re.search(r"^\| function \| 1 \| [\d.]+ \| [\d.]+ \|$", text, re.M), text
    assert "not run" not in text and "FAILED" not in text
