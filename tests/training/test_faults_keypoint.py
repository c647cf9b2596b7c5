"""Fault injection, keypoint Transformer: kill -9 inside a checkpoint write at the last
step of an epoch, right after that checkpoint, inside the
end-of-epoch evaluation, inside the last.weights.h5 write, at a later random step; every
restart resumes, and the run ends as an uninterrupted one (tests/training/faults.py)."""
import random

from tests.training.faults import STEPS_PER_EPOCH, TOTAL_STEPS, run_with_faults, seed


def test_keypoint_run_survives_kills(tmp_path, record_property):
    s = seed()
    rng = random.Random(s)
    e = STEPS_PER_EPOCH  # the last step of epoch 1
    plan = [f"ckpt_write:{e}", f"saved:{e}", "eval:1", "weights:1",
            f"step:{rng.randint(e + 1, TOTAL_STEPS - 1)}"]
    record_property("fault_seed", s)
    assert run_with_faults("prtr", tmp_path, plan, record_property) == len(plan)
