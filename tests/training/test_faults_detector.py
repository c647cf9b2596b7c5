"""Fault injection, DETR detector: kill -9 at a random step and inside the end-of-epoch
evaluation (box AP)
(tests/training/faults.py)."""
import random

from tests.training.faults import STEPS_PER_EPOCH, TOTAL_STEPS, run_with_faults, seed


def test_detector_run_survives_kills(tmp_path, record_property):
    s = seed()
    rng = random.Random(s)
    e = 2 * STEPS_PER_EPOCH  # the last step of epoch 2
    plan = [f"step:{rng.randint(1, e - 1)}", "eval:2"]
    record_property("fault_seed", s)
    assert run_with_faults("detr", tmp_path, plan, record_property) == len(plan)
