"""Smoke tests of the benchmark tools (``python -m tools.benchmark``,
``python -m tools.train_benchmark``, run from anywhere with the checkout on PYTHONPATH): the tiniest run each one's flags allow, and --help."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
INFERENCE = "tools.benchmark"
TRAINING = "tools.train_benchmark"


def run(script, *args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", script, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("script,own_flags", [
    (INFERENCE, ("--formats", "--batches", "--slow_repeats", "--[no]xnnpack", "--det_test_size",
                 "--calibration_data", "--workdir")),
    (TRAINING, ("--tiny_steps", "--r50_steps", "--r50_batches", "--matcher_reps", "--skip",
                "--busy_threshold", "--data_root")),
], ids=["inference", "training"])
def test_help_lists_the_tools_flags(script, own_flags, tmp_path):
    proc = run(script, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for flag in own_flags:
        assert flag in proc.stdout, (flag, proc.stdout)


@pytest.mark.parametrize("script,flag,message", [
    (INFERENCE, "--formats=function,bogus", "--formats: unknown ['bogus']"),
    (INFERENCE, "--batches=1,x", "--batches: expected comma-separated integers"),
    (TRAINING, "--skip=train,bogus", "--skip: unknown part(s) ['bogus']"),
], ids=["formats", "batches", "skip"])
def test_bad_flag_values_are_one_line_usage_errors(script, flag, message, tmp_path):
    proc = run(script, flag, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"error: {message}"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_inference_benchmark_of_the_tiny_model(tmp_path):
    out = tmp_path / "results.jsonl"
    proc = run(INFERENCE, "--config=tiny", "--formats=function,function_bf16", "--batches=1",
               "--repeats=1",
               "--warmup=0", f"--workdir={tmp_path / 'work'}", f"--output={out}",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("function ")]
    assert len(rows) == 1 and "b=1 " in rows[0] and "ms/crop" in rows[0], proc.stdout
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert "machine" in lines[0] and lines[0]["machine"]["threads"] == 2
    assert [(r["format"], r["batch"], r["repeats"], r["per"]) for r in lines[1:]] == [
        ("function", 1, 1, "crop"), ("function_bf16", 1, 1, "crop")]
    assert lines[1]["median_ms"] > 0 and "own_cpu_per_wall" in lines[1]
    # The closing table: every row against ONNX Runtime and PyTorch (not measured here).
    assert "| function | 1 | " in proc.stdout and "vs ONNX Runtime" in proc.stdout


@pytest.mark.slow  # ~33 s on 2 CPU cores
def test_training_benchmark_of_the_tiny_config(tmp_path):
    report = tmp_path / "report.md"
    proc = run(TRAINING, "--tiny_steps=1", "--warmup=0", "--r50_steps=0", "--tiny_batch=2",
               "--skip=pipeline", "--matcher_reps=1", "--retries=0",
               f"--data_root={tmp_path / 'synthetic'}", f"--output={report}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout
    assert "### Training steps" in table and "### Input pipeline" not in table
    assert "| synthetic_tiny | 128x96 | 2 |" in table, table
    assert "| synthetic_tiny | L=2, B=2, Q=20, J+1=18 | 4 |" in table, table
    assert "coco_res50_384x288" not in table
    assert report.read_text() == table


def test_ratio_table_compares_rows_at_the_same_batch():
    from tools.inference_benchmark import ratio_table
    rows = [{"format": f, "batch": b, "median_ms": ms, "per": "crop"}
            for f, b, ms in (("function", 1, 120.0), ("onnx", 1, 80.0), ("pytorch", 1, 300.0),
                             ("function", 8, 800.0), ("onnx", 8, 640.0))]
    rows.append({"format": "pipeline_saved_model", "batch": 1, "median_ms": 9.0,
                 "per": "image"})
    lines = ratio_table(rows).splitlines()
    assert "| function | 1 | 120.0 | 1.50x | 0.40x |" in lines
    assert "| function | 8 | 800.0 | 1.25x |  |" in lines  # no PyTorch row at batch 8
    assert "| onnx | 8 | 640.0 | 1.00x |  |" in lines
    assert not any("pipeline" in line for line in lines)  # per image, not per crop


def test_inference_benchmark_builds_the_configs_family(monkeypatch, capsys, tmp_path):
    """A deformable config benchmarks the deformable keypoint model (the family's), and
    its pytorch row asks the deformable reference (which takes ResNet-50/101 only) or
    reports the missing torch extra. In process, nothing traced: seconds. (Its bfloat16
    rows run: tests/nn/test_precision.py checks the deformable models in bfloat16.)"""
    import tensorflow as tf

    from tools import inference_benchmark as ib
    built, threads = [], []
    # TensorFlow's thread counts can be set only before it starts, and earlier tests of
    # the worker started it: recorded here instead (the tool sets them, as it must).
    monkeypatch.setattr(tf.config.threading, "set_intra_op_parallelism_threads",
                        lambda n: threads.append(("intra", n)))
    monkeypatch.setattr(tf.config.threading, "set_inter_op_parallelism_threads",
                        lambda n: threads.append(("inter", n)))
    monkeypatch.setattr(ib, "bench_keypoint_functions",
                        lambda bench, model, crops: built.append(type(model).__name__))
    bench = ib.run_benchmark(ib.Options(
        config=str(REPO / "configs" / "deform_tiny.py"), formats=("pytorch",),
        batches=(1,), repeats=1, warmup=0, workdir=str(tmp_path)))
    out = capsys.readouterr().out
    assert built == ["DeformablePoseTransformer"] and bench.rows == []
    assert threads == [("intra", ib.Options().threads), ("inter", 1)]
    assert ("pytorch FAILED: the deformable PyTorch reference is the deformable keypoint "
            "model with a resnet50 or resnet101 backbone" in out
            or "pytorch FAILED: the torch extra is not installed" in out), out
