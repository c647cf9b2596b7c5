"""`make demo` writes its pictures (the fast --quick variant: a few steps on a few
images). Checks that the files exist and are valid PNGs, not what they show."""
import json

from PIL import Image

from prtr_tf.demo import run


def test_quick_demo_writes_its_pictures(tmp_path, capsys):
    workdir = tmp_path / "demo"
    assert run.main(["--quick", "--workdir", str(workdir), "--num_pictures", "2"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((workdir / "demo_results.json").read_text())
    pictures = summary["pictures"]
    expected = {"learning_curve_keypoints.png", "learning_curve_detector.png",
                "heldout_ap_against_minutes.png", "figure4_decoder_refinement.png",
                "heldout_000000000001.png", "heldout_000000000002.png",
                "heldout_gt_000000000001.png", "heldout_gt_000000000002.png"}
    names = {p.split("/")[-1] for p in pictures.values()}
    assert names == expected
    for path in pictures.values():
        assert path in out                      # the demo names every picture it wrote
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 100
            image.verify()
    for key in ("keypoint_AP_gt_boxes", "keypoint_AP_detector_boxes", "box_AP"):
        assert 0.0 <= summary[key] <= 1.0
    assert not list(workdir.rglob(".*.partial-*"))  # atomic writes left nothing behind


def test_progress_eta_from_a_moving_window_after_warmup():
    import io

    from prtr_tf.training.progress import Progress

    now = [0.0]
    stream = io.StringIO()
    bar = Progress(200, "epoch 1/1", every=1, stream=stream, window=10, clock=lambda: now[0])
    now[0] = 60.0                       # step 1: tracing and compiling, a minute
    bar.update(1)
    assert "ETA --:--" in stream.getvalue()
    for step in range(2, 51):           # then 0.1 s a step
        now[0] += 0.1
        bar.update(step)
    last = stream.getvalue().splitlines()[-1]
    assert "10.00 it/s" in last and "ETA 00:15" in last, last   # 150 steps left at 10/s
    for step in range(51, 61):          # slower now: the window follows within 10 steps
        now[0] += 0.5
        bar.update(step)
    assert "2.00 it/s" in stream.getvalue().splitlines()[-1]


def test_labels_show_both_scores_sized_to_the_image_without_overlap():
    import numpy as np

    from prtr_tf.drawing import visualize

    placed, calls = [], []
    image = np.zeros((400, 600, 3), np.uint8)
    kpts = np.zeros((17, 3))
    persons = [{"box": [100, 100, 300, 350], "score": 0.71, "box_score": 0.94,
                "keypoints": kpts},
               {"box": [104, 106, 300, 350], "score": 0.05, "box_score": 0.3,
                "keypoints": kpts}]
    original = visualize._draw_label

    def spy(draw, label, *args):
        calls.append((label, args[3].size))
        return original(draw, label, *args[:5], placed, *args[6:])

    visualize._draw_label = spy
    try:
        visualize.draw_poses(image, persons, [])
    finally:
        visualize._draw_label = original
    assert [c[0] for c in calls] == ["0.71 | box 0.94", "0.05 | box 0.30"]
    assert calls[0][1] >= 400 / 25                        # font grows with the image
    (a, b) = placed
    assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])  # no overlap


def test_parallel_training_reports_a_failed_run_and_stops_the_other(tmp_path, capfd):
    from prtr_tf.config import load_config

    bad = run.quick(load_config("demo_keypoints"))
    bad.data.synthetic = None
    bad.data.root = str(tmp_path / "no_such_data")
    slow = run.quick(load_config("demo_keypoints"))
    slow.data.root = str(tmp_path / "data")
    slow.train.steps_per_epoch = 100000
    runs = {"broken": (bad, str(tmp_path / "broken")), "long": (slow, str(tmp_path / "long"))}
    assert run.train_in_parallel(runs) is None
    err = capfd.readouterr().err
    assert "the broken training failed" in err
    assert "[broken] error: annotation file" in err and "Traceback" not in err
    assert not (tmp_path / "long" / "metrics.csv").exists()  # stopped, not finished


def test_a_training_child_ends_with_its_parent(tmp_path):
    """`make demo`'s trainings run in child processes: a parent killed by a signal
    (no ``finally``) must not leave them training, unseen (it did: two orphans of a
    killed tool trained on for 40 minutes)."""
    import os
    import subprocess
    import sys
    import textwrap
    import time

    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import multiprocessing, os, sys, time
        from prtr_tf.demo.run import exit_with_parent

        def child(parent, path):
            exit_with_parent(parent, interval=0.05)
            with open(path + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(path + ".tmp", path)
            time.sleep(120)

        if __name__ == "__main__":
            proc = multiprocessing.get_context("spawn").Process(
                target=child, args=(os.getpid(), sys.argv[1]))
            proc.start()
            while not os.path.exists(sys.argv[1]):
                time.sleep(0.05)
            os.kill(os.getpid(), 9)  # SIGKILL: no finally, no atexit
    """))
    marker = tmp_path / "child.pid"
    proc = subprocess.run([sys.executable, str(script), str(marker)], timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == -9
    pid = int(marker.read_text())

    def alive():
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except FileNotFoundError:
            return False

    deadline = time.time() + 30
    while alive() and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(), f"child {pid} still runs after its parent was killed"
