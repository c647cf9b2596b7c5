"""tools/video_benchmark.py (docs/inference.md, "Speed"): its table on the tiny models
and a 2-frame clip, the Keras backend at batch 1 (about 20 CPU s, most of it importing
TensorFlow and tracing: extended, tests/conftest.py; the tool's SavedModel and TFLite
backends are the exports and estimators that tests/serving/test_predict.py runs on a
video). The tool benchmarks the demo's configs; here they are swapped for
configs/tiny.py and configs/synthetic_detector_tiny.py (same families and code paths),
in a subprocess (the tool's absl flags stay out of the test process)."""
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]

# The tool's main with the tiny configs in place of the demo's.
RUN_TINY = """
import sys
from absl import app
import tools.video_benchmark as vb
real = vb.load_config
TINY = {"demo_keypoints": "tiny", "demo_detector": "synthetic_detector_tiny"}
vb.load_config = lambda name: real(TINY[name])
app.run(vb.main, argv=["video_benchmark"] + sys.argv[1:])
"""


def _run(tmp_path, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", RUN_TINY, *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_keras_rows_on_a_two_frame_clip(tmp_path):
    out = tmp_path / "rows.jsonl"
    proc = _run(tmp_path, "--frames=2", "--warmup=2", "--width=128", "--height=96",
                "--backends=keras", "--batches=1", f"--output={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["backend"], r["batch"]) for r in rows] == [("keras", 1)]
    for r in rows:
        assert r["fps"] > 0 and r["fps_track"] > 0 and r["cpu_ms"] > 0, r
        assert r["persons"] >= 1, r  # P(person) = 0.9 everywhere: OKS-NMS keeps someone
    table = [line for line in proc.stdout.splitlines() if line.startswith("| keras | 1 |")]
    assert len(table) == 2, proc.stdout  # the row as it runs, and in the final table
    assert "clip 128x96, 2 frames" in proc.stdout

