"""config.train.warmup_steps: a linear LR warm-up in front of the MultiStepLR schedule
(`prtr_tf.training.optim.warmup_schedule`); 0 keeps the schedule as it was."""
import numpy as np

from prtr_tf.training.optim import multistep_schedule, warmup_schedule


def test_linear_warmup_then_the_schedule():
    base = multistep_schedule(1e-3, (2,), 0.5, steps_per_epoch=100)     # halved after step 200
    lr = warmup_schedule(base, 10)
    got = [float(lr(step)) for step in (0, 4, 9, 10, 150, 199, 201, 500)]
    np.testing.assert_allclose(got, [1e-4, 5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4],
                               rtol=1e-6)
    assert warmup_schedule(base, 0) is base and warmup_schedule(3e-4, 0) == 3e-4
    np.testing.assert_allclose(float(warmup_schedule(3e-4, 4)(1)), 1.5e-4, rtol=1e-6)
