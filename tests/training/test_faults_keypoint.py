"""Fault injection, keypoint Transformer: kill -9 inside a checkpoint write at the last
step of an epoch, right after that checkpoint, inside the end-of-epoch evaluation,
inside the last.weights.h5 write, at a later random step; every restart resumes, and
the run ends as an uninterrupted one (tests/training/faults.py).

`make test` (CI) kills at two of these points, drawn by the seed (``PRTR_FAULT_SEED``
replays a draw; the report names it), so that every CI run costs four training
processes; `make test-all` kills at all five in one run (tests/conftest.py EXTENDED)."""
import random

from tests.training.faults import STEPS_PER_EPOCH, TOTAL_STEPS, run_with_faults, seed


def _every_point(rng):
    e = STEPS_PER_EPOCH  # the last step of epoch 1
    return [f"ckpt_write:{e}", f"saved:{e}", "eval:1", "weights:1",
            f"step:{rng.randint(e + 1, TOTAL_STEPS - 1)}"]


def test_keypoint_run_survives_two_kills_of_five_points(tmp_path, record_property):
    s = seed()
    rng = random.Random(s)
    points = _every_point(rng)
    plan = [points[i] for i in sorted(rng.sample(range(len(points)), 2))]  # run order
    record_property("fault_seed", s)
    assert run_with_faults("prtr", tmp_path, plan, record_property) == len(plan)


def test_keypoint_run_survives_kills(tmp_path, record_property):
    s = seed()
    plan = _every_point(random.Random(s))
    record_property("fault_seed", s)
    assert run_with_faults("prtr", tmp_path, plan, record_property) == len(plan)
