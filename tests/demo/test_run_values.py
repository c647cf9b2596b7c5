"""The demo's summary tables pinned (issue 27): one header, then one row per model in
the order given, the values in percent, -1 (no ground truth) as '-'."""
from prtr_tf.demo import run
from prtr_tf.evaluation.coco import format_table


def test_print_tables(capsys):
    rows = {"GT boxes": {"AP": 0.5, "AP .5": 0.75}, "detector boxes": {"AP": 0.25,
                                                                        "AP .5": -1.0}}
    run._print_tables(format_table, rows)
    assert capsys.readouterr().out.splitlines() == [
        "| Model | AP | AP .5 |", "|---|---|---|", "| GT boxes | 50.0 | 75.0 |",
        "| detector boxes | 25.0 | - |"]


def test_format_table_three_decimals_without_percent():
    assert format_table({"AP": 0.1234}, name="x", percent=False).splitlines()[-1] == \
        "| x | 0.123 |"
