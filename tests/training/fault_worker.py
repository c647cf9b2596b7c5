"""A training run of a tiny config that kills itself (SIGKILL, as ``kill -9``: no
cleanup, no flush, no atexit) at a chosen point, for test_faults.py.

    python tests/training/fault_worker.py --kind prtr|detr|prtr_e2e --data DIR
        --workdir DIR [--die POINT]

POINT (global steps count from 1; epochs from 1):
  step:N        right after training step N, before anything of it is saved;
  saved:N       right after the checkpoint of step N is written (and recorded);
  ckpt_write:N  inside the checkpoint write of step N: its files are written, the
                checkpoint state file does not name it yet;
  weights:E     inside the atomic write of last.weights.h5 at the end of epoch E: the
                temporary file is written, not yet moved into place;
  eval:E        inside the end-of-epoch evaluation of epoch E (in pycocotools' COCOeval);
  csv:E         inside the atomic write of metrics.csv at the end of epoch E.
Without --die the run trains to the end. Exit code -9 (killed) or 0 (finished).
"""
import argparse
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

CONFIGS = {"prtr": "synthetic_tiny", "detr": "synthetic_detector_tiny",
           "prtr_e2e": "e2e_tiny"}
STEPS_PER_EPOCH, EPOCHS = 2, 3


def fault_config(kind, data_dir):
    """The tiny config of ``kind`` on a small synthetic set: checkpoints every step,
    evaluation every epoch."""
    from prtr_tf.config import load_config
    config = load_config(CONFIGS[kind])
    config.data.root = data_dir
    config.data.synthetic = {"train": (8, 3), "val": (2, 4)}
    t = config.train
    t.batch_size, t.steps_per_epoch, t.epochs = 2, STEPS_PER_EPOCH, EPOCHS
    t.eval_every_epochs, t.checkpoint_every_steps, t.log_every_steps = 1, 1, 1
    if kind == "prtr_e2e":
        config.data.scales = (256,)
    return config


def die(where):
    # To the process's stdout itself: the evaluation may redirect sys.stdout.
    os.write(1, f"fault_worker: kill -9 {where}\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)


def install(point, trainer):
    """Arms the kill at ``point`` (see the module docstring)."""
    import pycocotools.cocoeval
    from tensorflow.python.checkpoint import checkpoint_management

    from prtr_tf.files import atomic

    what, n = point.split(":")
    n = int(n)
    step = lambda: int(trainer.optimizer.iterations.numpy())  # noqa: E731
    epoch = lambda: int(trainer.epoch.numpy()) + 1  # noqa: E731  (the epoch being ended)

    if what == "step":
        original = trainer.train_step

        def train_step(iterator):
            out = original(iterator)
            if step() == n:
                die(f"after step {n}")
            return out
        trainer.train_step = train_step
    elif what == "saved":
        original = trainer.save

        def save(*args, **kwargs):
            path = original(*args, **kwargs)
            if step() == n:
                die(f"after the checkpoint of step {n} ({path})")
            return path
        trainer.save = save
    elif what == "ckpt_write":
        cls = checkpoint_management.CheckpointManager
        original = cls._record_state

        def record_state(self):
            if step() == n:
                die(f"inside the checkpoint write of step {n} (files written, not recorded)")
            return original(self)
        cls._record_state = record_state
    elif what in ("weights", "csv"):
        original = atomic.os.replace
        target = "last.weights.h5" if what == "weights" else "metrics.csv"

        def replace(src, dst):
            if os.path.basename(str(dst)) == target and epoch() == n:
                die(f"inside the write of {target} of epoch {n} (temporary file written)")
            return original(src, dst)
        atomic.os.replace = replace
    elif what == "eval":
        cls = pycocotools.cocoeval.COCOeval
        original = cls.accumulate

        def accumulate(self, *args, **kwargs):
            if epoch() == n:
                die(f"inside the evaluation of epoch {n}")
            return original(self, *args, **kwargs)
        cls.accumulate = accumulate
    else:
        raise SystemExit(f"unknown --die point {point!r}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", required=True, choices=sorted(CONFIGS))
    p.add_argument("--data", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--die", default=None)
    args = p.parse_args()

    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    # One thread: with two, CPU kernels split their sums differently from one process to
    # the next (op determinism does not cover that), and set prediction turns such 1e-7
    # differences into flipped matches (end-to-end: an epoch's loss 49.84 against 50.21).
    # With one, two processes give bitwise the same weights.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from prtr_tf.training.trainer import Trainer

    trainer = Trainer(fault_config(args.kind, args.data), args.workdir)
    if args.die:
        install(args.die, trainer)
    trainer.fit()
    print(f"fault_worker: finished at step {int(trainer.optimizer.iterations.numpy())}",
          flush=True)


if __name__ == "__main__":
    main()
