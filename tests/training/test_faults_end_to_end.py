"""Fault injection, end-to-end PRTR: kill -9 right after the checkpoint at the last step
of an epoch, inside the metrics.csv write at the end of that epoch and at a later random
step (tests/training/faults.py)."""
import random

from tests.training.faults import STEPS_PER_EPOCH, TOTAL_STEPS, run_with_faults, seed


def test_end_to_end_run_survives_kills(tmp_path, record_property):
    s = seed()
    rng = random.Random(s)
    e = STEPS_PER_EPOCH
    plan = [f"saved:{e}", "csv:1", f"step:{rng.randint(e + 1, TOTAL_STEPS - 1)}"]
    record_property("fault_seed", s)
    assert run_with_faults("prtr_e2e", tmp_path, plan, record_property) == len(plan)

