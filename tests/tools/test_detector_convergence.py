"""tools/detector_convergence.py: the tables from hand-made metrics.csv files, and
main() with the training replaced by a fake (no test trains: one epoch of 2 steps of
both detectors took 214 s on the loaded 2-core host, 129 CPU s).

The hand-made runs (`RUNS`), cumulative training minutes -> held-out AP per epoch:

    A seed 0: 1.0 -> .10, 2.0 -> .20, 3.0 -> .30     (60 s epochs: marks hit exactly)
    A seed 1: 0.83 -> .05, 1.67 -> .15, 2.5 -> .25   (50 s epochs)
    A seed 2: 1.17 -> .40, 2.33 -> .50, 3.5 -> .60   (70 s epochs)
    B seed 0: 2.0 -> .01, 4.0 -> .02                 (120 s epochs)
    B seed 1: 1.5 -> .07, 3.0 -> .04                 (90 s epochs; best AP not last)
    B seed 2: 1.67 -> .05, 3.33 -> .06               (100 s epochs)

Expected by hand at the marks 1, 2, 3 minutes (median (min-max) over the seeds):

    A: 1: seed 2 has no epoch yet -> "—"; 2: .20 .15 .40 -> 0.200 (0.150-0.400);
       3: .30 .25 .50 -> 0.300 (0.250-0.500)
    B: 1: no seed has an epoch -> "—"; 2: .01 .07 .05 -> 0.050 (0.010-0.070);
       3: .01 .04 .05 -> 0.040 (0.010-0.050)

What other readings would give instead (so each is ruled out):
    a mark excluding an epoch that ends exactly on it (< instead of <=): A at 2 ->
      .10 .15 .40 = 0.150; B at 3 -> .01 .07 .05 = 0.050;
    the epoch after the mark (off by one epoch): A at 2 -> .30 .25 .50 = 0.300;
    per-epoch epoch_time_s taken as cumulative: A at 2 -> every epoch (each <= 2 min)
      = .30 .25 .60 -> 0.300;
    the mean instead of the median: A at 2 -> 0.250; B at 2 -> 0.043;
    min and max swapped: "0.400-0.150";
    seeds of the other detector mixed in (median of all six at 2): .01 .05 .07 .15 .20
      .40 -> 0.110.
"""
import os

import pytest

from prtr_tf.training.workdir import upsert_csv_row
from tools import detector_convergence as dc

# detector -> seed -> [(epoch_time_s, AP, AP .5)], steps 10 per epoch
RUNS = {
    "A": {0: [(60, .10, .40), (60, .20, .50), (60, .30, .60)],
          1: [(50, .05, .35), (50, .15, .45), (50, .25, .55)],
          2: [(70, .40, .70), (70, .50, .80), (70, .60, .90)]},
    "B": {0: [(120, .01, .11), (120, .02, .12)],
          1: [(90, .07, .17), (90, .04, .14)],
          2: [(100, .05, .15), (100, .06, .16)]},
}


def write_runs(root, runs=RUNS):
    """metrics.csv files as the trainer writes them (`upsert_csv_row`, its columns)."""
    for det, seeds in runs.items():
        for seed, epochs in seeds.items():
            folder = dc.run_dir(str(root), det, seed)
            os.makedirs(folder)
            for i, (seconds, ap, ap50) in enumerate(epochs):
                row = {"epoch": i + 1, "step": 10 * (i + 1), "loss": 1.5, "loss_ce": 0.5,
                       "grad_norm": 0.3, "lr": 1e-4, "lr_backbone": 1e-5,
                       "epoch_time_s": seconds, "skipped_samples": 0}
                if ap is not None:
                    row.update({"AP": ap, "AP .5": ap50, "AP .75": 0.0, "AR": 0.1})
                upsert_csv_row(os.path.join(folder, "metrics.csv"), row)


def table(text, title):
    """The rows (lists of cells) of the Markdown table under the heading ``title``."""
    part = text.split(title, 1)[1].split("\n###", 1)[0]
    rows = [line for line in part.splitlines() if line.startswith("|")]
    return [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows[2:]]


@pytest.fixture
def curves(tmp_path):
    write_runs(tmp_path)
    return dc.read_curves(str(tmp_path), ["A", "B"], [0, 1, 2])


def test_curve_accumulates_epoch_times(curves):
    # A seed 1: 50 s epochs -> 50/60, 100/60, 150/60 minutes (not 50/60 each time).
    assert [round(p["minutes"], 4) for p in curves["A"][1]] == [0.8333, 1.6667, 2.5]
    assert [p["step"] for p in curves["A"][1]] == [10, 20, 30]


def test_marks_by_hand(curves):
    rows = dc.mark_rows(curves, [1, 2, 3])
    a, b = [[r[d] for r in rows] for d in ("A", "B")]
    # mark 1: A seed 2 has no epoch yet (1.17 min); B none at all.
    assert a[0]["missing"] == [2] and sorted(a[0]["AP"]) == [.05, .10]
    assert b[0]["missing"] == [0, 1, 2] and b[0]["AP"] == []
    # mark 2: epochs ending exactly at 2.0 (A seed 0, B seed 0) count.
    assert a[1]["AP"] == [.20, .15, .40] and a[1]["step"] == [20, 20, 10]
    assert b[1]["AP"] == [.01, .07, .05] and b[1]["AP .5"] == [.11, .17, .15]
    assert a[2]["AP"] == [.30, .25, .50] and b[2]["AP"] == [.01, .04, .05]
    assert dc.spread(a[1]["AP"]) == (.20, .15, .40)
    assert dc.fmt_spread(b[1]["AP"]) == "0.050 (0.010-0.070)"


def test_report_tables_by_hand(curves):
    text = dc.markdown(curves, [1, 2, 3], ["Command: `x`"])
    marks = table(text, "### (a)")
    # columns: minutes, A AP, A AP .5, A steps, B AP, B AP .5, B steps
    assert marks == [
        ["1", "— (2/3)", "—", "—", "— (0/3)", "—", "—"],
        ["2", "0.200 (0.150-0.400)", "0.500 (0.450-0.700)", "20 (10-20)",
         "0.050 (0.010-0.070)", "0.150 (0.110-0.170)", "10 (10-10)"],
        ["3", "0.300 (0.250-0.500)", "0.600 (0.550-0.800)", "30 (20-30)",
         "0.040 (0.010-0.050)", "0.140 (0.110-0.150)", "10 (10-20)"],
    ]
    finals = table(text, "### (b)")
    # detector, seed, epochs, steps, minutes, AP, AP .5, best AP (epoch)
    assert finals[:6] == [
        ["A", "0", "3", "30", "3.0", "0.300", "0.600", "0.300 (3)"],
        ["A", "1", "3", "30", "2.5", "0.250", "0.550", "0.250 (3)"],
        ["A", "2", "3", "30", "3.5", "0.600", "0.900", "0.600 (3)"],
        ["B", "0", "2", "20", "4.0", "0.020", "0.120", "0.020 (2)"],
        ["B", "1", "2", "20", "3.0", "0.040", "0.140", "0.070 (1)"],  # best is not last
        ["B", "2", "2", "20", "3.3", "0.060", "0.160", "0.060 (2)"],
    ]
    # medians over each detector's own three seeds (finals B: .02 .04 .06; all six: .275)
    assert finals[6] == ["A", "median (min-max)", "", "30 (30-30)", "3.0 (2.5-3.5)",
                         "0.300 (0.250-0.600)", "0.600 (0.550-0.900)", "0.300 (0.250-0.600)"]
    assert finals[7] == ["B", "median (min-max)", "", "20 (20-20)", "3.3 (3.0-4.0)",
                         "0.040 (0.020-0.060)", "0.140 (0.120-0.160)", "0.060 (0.020-0.070)"]
    assert text.startswith("Command: `x`\n")


def test_unevaluated_epochs_and_missing_runs(tmp_path):
    # Evaluated every second epoch: at 2.5 min the last epoch finished is 2 (no AP), the
    # last evaluated one is 1 (AP .10), not the unevaluated 2 and not 3 (after the mark).
    write_runs(tmp_path, {"C": {0: [(60, .10, .40), (60, None, None), (60, .30, .60)]}})
    curves = dc.read_curves(str(tmp_path), ["C", "D"], [0])
    assert dc.at_mark(curves["C"][0], 2.5)["AP"] == .10
    assert dc.at_mark(curves["C"][0], 0.5) is None
    assert curves["D"][0] == []  # no metrics.csv yet
    finals = dc.final_rows(curves)
    assert (finals[0]["AP"], finals[0]["best epoch"], finals[0]["steps"]) == (.30, 3, 30)
    assert finals[1]["AP"] is None and finals[1]["epochs"] == 0
    # Automatic marks up to the longest run (3 min): every 0.5 min (6 marks; 1 min
    # would give 3); the unevaluated epoch 2 leaves epoch 1's AP up to 3.0.
    text = dc.markdown(curves, dc.auto_marks(dc.longest_minutes(curves)), [])
    rows = table(text, "### (a)")
    assert [r[:2] for r in rows] == [["0.5", "— (0/1)"], ["1", "0.100"], ["1.5", "0.100"],
                                     ["2", "0.100"], ["2.5", "0.100"], ["3", "0.300"]]
    assert rows[3] == ["2", "0.100", "0.400", "10", "— (0/1)", "—", "—"]


def test_auto_marks():
    # 1 min steps (0.5 would make 14 marks), then the end of the longest run
    assert dc.auto_marks(7.3) == [1, 2, 3, 4, 5, 6, 7, 7.3]
    assert dc.auto_marks(3) == [0.5, 1, 1.5, 2, 2.5, 3]
    assert dc.auto_marks(10) == list(range(1, 11))  # 10 marks of 1 min, not 5 of 2
    assert dc.auto_marks(25) == [5, 10, 15, 20, 25]
    assert dc.auto_marks(24.001) == [5, 10, 15, 20, 24.01]  # rounded up: the run counts
    assert dc.auto_marks(0.003) == [0.001, 0.002, 0.003]
    assert dc.auto_marks(0.05) == [0.005 * i for i in range(1, 11)]
    assert dc.auto_marks(0) == []


def test_finished_runs_and_resume_settings():
    from prtr_tf.config import load_config
    config = dc.make_config("demo_deformable_detector", "/data", 1, epochs=3,
                            train_images=10)
    assert (config.data.root, config.train.seed, config.train.epochs) == ("/data", 1, 3)
    assert dict(config.data.synthetic) == {"train": (10, 1), "val": (100, 2)}
    rows = [{"epoch": 1}, {"epoch": 2}]
    assert not dc.finished(rows, config) and not dc.finished([], config)
    assert dc.finished(rows + [{"epoch": 3}], config)
    # A budget of training minutes ends a run at the first epoch that reaches it.
    timed = [{"epoch": 1, "seconds": 400.0}, {"epoch": 2, "seconds": 400.0}]
    assert not dc.finished(timed[:1], config, minutes=10)
    assert dc.finished(timed, config, minutes=10)  # 13.3 min, before its last epoch
    assert not dc.finished(timed, config, minutes=20) and not dc.finished([], config, 1)
    assert dc.finished(timed, config, minutes=800 / 60)  # exactly at the budget
    # The recorded config of a run started with other settings (seed 0, 20 images):
    # both named; a larger epoch count alone is no conflict (the run continues).
    recorded = load_config("demo_deformable_detector")
    recorded.train.update(seed=0, epochs=2)
    recorded.data.synthetic = {"train": (20, 1), "val": (100, 2)}
    assert dc.resume_conflicts(config, recorded) == [
        ("train.seed", 1, 0),
        ("data.synthetic", {"train": [10, 1], "val": [100, 2]},
         {"train": [20, 1], "val": [100, 2]})]
    recorded.train.seed = 1
    recorded.data.synthetic = config.data.synthetic.to_dict()
    assert dc.resume_conflicts(config, recorded) == []


def test_flags_are_checked(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        dc.main(["--seeds=0,x"])
    assert e.value.code == 2 and "--seeds=0,x" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        dc.main(["--epochs=0"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        dc.main(["--minutes=0"])
    assert e.value.code == 2 and "--minutes=0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        dc.main(["--marks=1,-2"])
    assert e.value.code == 2 and "--marks=1,-2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        dc.main([f"--workdir={tmp_path}", "--detectors=demo_detector,no_such_config"])
    assert e.value.code == 2 and "no_such_config" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "data")  # refused before generating anything


def test_main_trains_only_unfinished_runs_and_writes_the_report(tmp_path, monkeypatch,
                                                               capsys):
    """main() without training (`train_in_parallel` replaced by a fake that writes one
    epoch's row): seed 0's two runs are finished already (metrics.csv and config.json as
    the trainer writes them) and not started; of seed 1 only the unfinished
    deformable run trains, in WORKDIR/DETECTOR/seed1, with 1 thread; the report reads
    all four; the same workdir with other settings is refused before anything runs.
    (A real end-to-end run, ``--seeds=0 --epochs=1 --steps_per_epoch=2
    --train_images=10 --val_images=2``, took 214 s wall, 129 CPU s on the loaded
    2-core host: too slow for the suite.)"""
    from prtr_tf.checkpoints import artifact
    from prtr_tf.demo import run

    work = tmp_path / "conv"
    flags = dict(epochs=1, steps_per_epoch=2, train_images=10, val_images=2)
    argv = [f"--workdir={work}", "--seeds=0,1", "--epochs=1", "--steps_per_epoch=2",
            "--train_images=10", "--val_images=2", f"--output={tmp_path / 'r.md'}"]

    def finish(det, seed, ap, seconds=30.0):
        folder = dc.run_dir(str(work), det, seed)
        os.makedirs(folder, exist_ok=True)
        config = dc.make_config(det, str(work / "data"), seed, **flags)
        artifact.record_config(folder, config)
        upsert_csv_row(os.path.join(folder, "metrics.csv"), {
            "epoch": 1, "step": 2, "loss": 1.0, "epoch_time_s": seconds, "AP": ap,
            "AP .5": ap + 0.5})

    for det, ap in (("demo_detector", 0.125), ("demo_deformable_detector", 0.25)):
        finish(det, 0, ap)
    finish("demo_detector", 1, 0.375)
    calls = []

    def fake_train_in_parallel(runs, threads=1, stop=None):
        calls.append(({n: w for n, (c, w) in runs.items()}, threads))
        for name, (config, workdir) in runs.items():
            assert config.train.seed == 1 and config.train.steps_per_epoch == 2
            finish(name.split()[0], config.train.seed, 0.0, seconds=90.0)
        return {name: 1.0 for name in runs}

    monkeypatch.setattr(run, "train_in_parallel", fake_train_in_parallel)
    assert dc.main(argv) == 0
    assert calls == [({"demo_deformable_detector seed1": dc.run_dir(
        str(work), "demo_deformable_detector", 1)}, 1)]
    out = capsys.readouterr().out
    assert "seed 0 (1/2): demo_detector, demo_deformable_detector finished already" in out
    assert "seed 1 (2/2): demo_detector finished already" in out
    assert "seed 1 (2/2): training demo_deformable_detector at the same time" in out
    assert os.path.isfile(work / "data" / "train" / "person_keypoints.json")  # generated
    text = (tmp_path / "r.md").read_text()
    assert text.startswith("Command: `python -m tools.detector_convergence --workdir=")
    assert "Host: " in text and "1 TensorFlow thread each" in text
    # marks every 0.2 min up to 1.4, then 1.5 (the deformable seed 1's 90 s): from 0.6
    # both DETR seeds (.125, .375 at 0.5 min), the deformable seed 0 only (1 of 2) up
    # to 1.4; at 1.5 the deformable seeds .25 and .0
    marks = table(text, "### (a)")
    assert [r[0] for r in marks] == ["0.2", "0.4", "0.6", "0.8", "1", "1.2", "1.4", "1.5"]
    assert marks[1] == ["0.4", "— (0/2)", "—", "—", "— (0/2)", "—", "—"]
    assert marks[2] == ["0.6", "0.250 (0.125-0.375)", "0.750 (0.625-0.875)", "2 (2-2)",
                        "— (1/2)", "—", "—"]
    assert marks[6][4] == "— (1/2)"
    assert marks[7] == ["1.5", "0.250 (0.125-0.375)", "0.750 (0.625-0.875)", "2 (2-2)",
                        "0.125 (0.000-0.250)", "0.625 (0.500-0.750)", "2 (2-2)"]
    assert [r[:6] for r in table(text, "### (b)")[:4]] == [
        ["demo_detector", "0", "1", "2", "0.5", "0.125"],
        ["demo_detector", "1", "1", "2", "0.5", "0.375"],
        ["demo_deformable_detector", "0", "1", "2", "0.5", "0.250"],
        ["demo_deformable_detector", "1", "1", "2", "1.5", "0.000"]]

    assert dc.main(argv) == 0 and len(calls) == 1  # all finished: nothing trains
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # the same workdir with other settings
        dc.main(argv[:-1] + ["--steps_per_epoch=3"])
    assert e.value.code == 2 and "train.steps_per_epoch=3 (recorded 2)" \
        in capsys.readouterr().err
    assert len(calls) == 1


def test_a_minute_budget_stops_runs_at_the_epoch_that_reaches_it(tmp_path, monkeypatch):
    """--minutes: `train_in_parallel` gets a ``stop`` that is False while a run's
    metrics.csv is short of the budget and True once an epoch reaches it; a run that
    reached it before is not started again (its schedule is not finished); with no
    budget, ``stop`` never ends a run."""
    from prtr_tf.checkpoints import artifact
    from prtr_tf.demo import run

    work = tmp_path / "conv"
    flags = dict(epochs=5, steps_per_epoch=2, train_images=10, val_images=2)
    argv = [f"--workdir={work}", "--seeds=0", "--epochs=5", "--steps_per_epoch=2",
            "--train_images=10", "--val_images=2"]

    def epoch_row(det, epoch, seconds):
        folder = dc.run_dir(str(work), det, 0)
        os.makedirs(folder, exist_ok=True)
        artifact.record_config(folder, dc.make_config(det, str(work / "data"), 0, **flags))
        upsert_csv_row(os.path.join(folder, "metrics.csv"), {
            "epoch": epoch, "step": 2 * epoch, "loss": 1.0, "epoch_time_s": seconds,
            "AP": 0.1, "AP .5": 0.2})

    epoch_row("demo_detector", 1, 70.0)  # 1.17 min: over a 1-minute budget already
    seen = []

    def fake_train_in_parallel(runs, threads=1, stop=None):
        for name in runs:
            det = name.split()[0]
            seen.append((name, stop(name)))  # nothing written yet
            epoch_row(det, 1, 40.0)
            seen.append((name, stop(name)))  # 0.67 min
            epoch_row(det, 2, 40.0)
            seen.append((name, stop(name)))  # 1.33 min
        return {name: 1.0 for name in runs}

    monkeypatch.setattr(run, "train_in_parallel", fake_train_in_parallel)
    assert dc.main(argv + ["--minutes=1"]) == 0
    name = "demo_deformable_detector seed0"
    assert seen == [(name, False), (name, False), (name, True)]
    seen.clear()
    for det in dc.DETECTORS:  # no budget: both runs continue to their 5 epochs
        os.remove(os.path.join(dc.run_dir(str(work), det, 0), "metrics.csv"))
    assert dc.main(argv) == 0
    assert [s for _, s in seen] == [False] * 6
