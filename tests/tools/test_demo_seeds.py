"""tools/demo_seeds.py (the demo's seed table and documented range) and
prtr_tf.demo.documented (what `make demo` prints a run against), on demo_results.json
files written here: known medians and ranges, no training."""
import json

import pytest

from prtr_tf.demo import documented as doc
from tools import demo_seeds


def _result(gt, det, box, seconds, others=0.0, seed=0):
    return {"keypoint_AP_gt_boxes": gt, "keypoint_AP_detector_boxes": det, "box_AP": box,
            "seconds": seconds, "others_cores": others, "seed": seed}


RESULTS = {0: _result(0.30, 0.10, 0.25, 540.0), 1: _result(0.50, 0.05, 0.30, 600.0, 0.1, 1),
           2: _result(0.20, 0.20, 0.28, 570.0, seed=2)}


def test_summary_is_the_median_min_and_max_of_each_number():
    stats = demo_seeds.summarise(RESULTS)
    assert stats["keypoint_AP_gt_boxes"] == {"median": 0.30, "min": 0.20, "max": 0.50,
                                             "values": [0.30, 0.50, 0.20]}
    assert stats["keypoint_AP_detector_boxes"]["median"] == 0.10
    assert stats["box_AP"]["median"] == 0.28
    assert stats["minutes"] == {"median": 9.5, "min": 9.0, "max": 10.0,
                                "values": [9.0, 10.0, 9.5]}
    table = demo_seeds.markdown(RESULTS, ["Command: `x`"])
    assert "| median (min-max) | 0.300 (0.200-0.500) | 0.100 (0.050-0.200) | " \
           "0.280 (0.250-0.300) | 9.5 (9.0-10.0) | 0.00 (0.00-0.10) |" in table
    assert "| 1 | 0.500 | 0.050 | 0.300 | 10.0 | 0.10 |" in table


def test_main_reads_finished_seeds_and_writes_the_table_and_the_documented_range(
        tmp_path, capsys):
    for seed, result in RESULTS.items():
        folder = tmp_path / "runs" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "demo_results.json").write_text(json.dumps(result))
    target, table = tmp_path / "documented.json", tmp_path / "seeds.md"
    assert demo_seeds.main([f"--workdir={tmp_path / 'runs'}", f"--output={table}",
                            f"--documented={target}"]) == 0
    out = capsys.readouterr().out
    assert "seed 1: " in out and "(read, not rerun)" in out
    assert "0.300 (0.200-0.500)" in table.read_text()
    saved = doc.load(str(target))
    assert saved["seeds"] == [0, 1, 2]
    assert saved["metrics"]["keypoint_AP_gt_boxes"]["median"] == 0.30
    assert saved["command"].startswith("python -m tools.demo_seeds --workdir=")
    # What make demo prints against it: each number, the range, the verdict.
    text = doc.compare(_result(0.10, 0.12, 0.30, 660.0, seed=0), saved)
    lines = text.splitlines()
    assert "seeds 0, 1, 2" in lines[0]
    row = next(line for line in lines if "ground-truth boxes" in line)
    assert "0.100" in row and "0.300 (0.200-0.500)" in row and "below the documented" in row
    row = next(line for line in lines if "detector's boxes" in line)
    assert "0.120" in row and "within the documented range" in row
    row = next(line for line in lines if "minutes" in line)
    assert "11.0" in row and "9.5 (9.0-10.0)" in row and "above the documented" in row


def test_bad_seeds_are_usage_errors(tmp_path, capsys):
    for seeds in ("0,x", "1,1"):
        with pytest.raises(SystemExit) as e:
            demo_seeds.main([f"--workdir={tmp_path}", f"--seeds={seeds}"])
        assert e.value.code == 2
        assert f"--seeds={seeds}" in capsys.readouterr().err

