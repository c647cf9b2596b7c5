"""Fault injection, end-to-end PRTR: kill -9 at a random step, right after the checkpoint
at the last step of an epoch and inside the metrics.csv write at the end of an epoch
(tests/training/faults.py)."""
import random

from tests.training.faults import STEPS_PER_EPOCH, TOTAL_STEPS, run_with_faults, seed


def test_end_to_end_run_survives_kills(tmp_path, record_property):
    s = seed()
    rng = random.Random(s)
    e = STEPS_PER_EPOCH
    plan = [f"step:{rng.randint(1, TOTAL_STEPS - 1)}", f"saved:{e}", "csv:1"]
    plan = sorted(set(plan), key=lambda p: _progress(p, e))
    record_property("fault_seed", s)
    assert run_with_faults("prtr_e2e", tmp_path, plan, record_property) == len(plan)


def _progress(point, steps_per_epoch):
    """Where in the run a kill point lies (to put a plan in the order a run meets it)."""
    what, n = point.split(":")
    n = int(n)
    if what in ("step", "saved", "ckpt_write"):
        return (n, {"step": 0, "ckpt_write": 1, "saved": 2}[what])
    return (n * steps_per_epoch, {"eval": 3, "weights": 4, "csv": 5}[what])
