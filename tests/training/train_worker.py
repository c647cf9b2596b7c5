"""Runs a few training steps of the tiny config in its own process (for test_training.py).

    python tests/training/train_worker.py --data DIR --workdir DIR --out FILE.npz
        [--strategy default|mirrored|multiworker] [--logical_cpus N] [--steps N]
        [--kind prtr|prtr_e2e]

A separate process because the number of logical CPU devices and TF_CONFIG must
be set before TensorFlow starts. Writes the final weights (one array per model
variable, in model order), the losses and the gradient norms to --out.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _small_run(config, data_dir, train_seed, batch_size, steps_per_epoch, epochs):
    """A tiny config on its own synthetic data: few steps, no evaluation, no checkpoints."""
    config.data.root = data_dir
    config.data.synthetic = {"train": (6, train_seed), "val": (3, 12)}
    config.train.batch_size = batch_size
    config.train.steps_per_epoch = steps_per_epoch
    config.train.epochs = epochs
    config.train.eval_every_epochs = 0
    config.train.checkpoint_every_steps = 0
    return config


def tiny_synthetic_config(data_dir, batch_size=4, steps_per_epoch=3, epochs=1):
    from prtr_tf.config import load_config
    return _small_run(load_config("synthetic_tiny"), data_dir, 11, batch_size,
                      steps_per_epoch, epochs)


def tiny_e2e_config(data_dir, batch_size=4, steps_per_epoch=3, epochs=1):
    """configs/e2e_tiny.py on the same kind of data, one scale (no padding differences
    between replicas), frozen backbone BN. Data seed 5: the first global batch splits
    into replicas with different person counts (with seed 21 they happen to be equal,
    which would not test the global normalisers)."""
    from prtr_tf.config import load_config
    c = _small_run(load_config("e2e_tiny"), data_dir, 5, batch_size, steps_per_epoch, epochs)
    c.data.scales = (256,)
    c.model.detector.frozen_backbone = True
    return c


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--strategy", default="default")
    p.add_argument("--logical_cpus", type=int, default=1)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--steps_per_epoch", type=int, default=3)
    p.add_argument("--mixed_precision", default=None)
    p.add_argument("--kind", default="prtr", choices=["prtr", "prtr_e2e"])
    args = p.parse_args()

    import numpy as np
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    if args.logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)
    from prtr_tf.training.trainer import Trainer
    # Batch statistics would differ between 1 replica (batch 4) and 2 (batch 2 each), as
    # with torch DataParallel; frozen BN makes the forward pass batch-independent.
    if args.kind == "prtr_e2e":
        config = tiny_e2e_config(args.data, steps_per_epoch=args.steps_per_epoch)
    else:
        config = tiny_synthetic_config(args.data, steps_per_epoch=args.steps_per_epoch)
        config.model.frozen_backbone = True
    trainer = Trainer(config, args.workdir, strategy=args.strategy,
                      mixed_precision=args.mixed_precision)
    losses, grad_norms = [], []
    original = trainer.train_step

    def recording_step(iterator):
        out = original(iterator)
        losses.append(float(out["loss"]))
        grad_norms.append(float(out["grad_norm"]))
        return out

    trainer.train_step = recording_step
    trainer.fit(max_steps=args.steps)
    np.savez(args.out, losses=np.array(losses), grad_norms=np.array(grad_norms),
             replicas=trainer.num_replicas,
             step=int(trainer.optimizer.iterations.numpy()),
             compute_dtype=str(trainer.model.compute_dtype),
             variable_dtypes=sorted({str(v.dtype) for v in trainer.model.weights}),
             **{f"w{i}": v.numpy() for i, v in enumerate(trainer.model.weights)})


if __name__ == "__main__":
    main()
