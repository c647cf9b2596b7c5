"""The training loop: ``strategy.run`` steps, checkpoints with resume, logs, evaluation.

A custom loop rather than ``Model.fit``: Keras 3 ``fit`` is broken under
MultiWorkerMirroredStrategy (keras-team/keras#20585), and the Hungarian matcher
(scipy through ``tf.numpy_function``) must stay outside any XLA region.

Resume: ``workdir/checkpoints`` holds the model, both optimisers (their step
counters drive the LR schedule), the epoch and the step within it. A restarted run
continues at the next unseen batch of the interrupted epoch: each epoch's sample
order is fixed by ``(config.train.seed, epoch)``, so the remaining batches are the
ones the interrupted run had not seen (their random augmentation is drawn anew).
"""
import math
import os
import sys
import time

import tensorflow as tf

from prtr_tf.files import atomic
from prtr_tf.models import registry
from prtr_tf.checkpoints import artifact, weights
from prtr_tf.data.skips import SkipCounter
from prtr_tf.training.loss_scale import (DEFAULT_GROWTH_STEPS, DEFAULT_INITIAL_SCALE,
                                         DynamicLossScale)
from prtr_tf.training.optim import TwoGroupAdamW
from prtr_tf.training.strategy import make_strategy
from prtr_tf.training.progress import Progress
from prtr_tf.training import keypoint_record
from prtr_tf.training.workdir import WorkdirLock, check_folder, upsert_csv_row
from prtr_tf.data.splits import check_image_files, generate_synthetic


# The layers whose outputs are the joint classes (keypoint and end-to-end models).
JOINT_CLASS_HEADS = ("class_embed", "kpt_class_embed")


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0)


def set_mixed_precision(name):
    """``None``/'float32', 'bfloat16' or 'float16' compute (variables stay float32);
    float16 trains with a dynamic loss scale (`prtr_tf.training.loss_scale`)."""
    import keras
    policies = {None: "float32", "": "float32", "float32": "float32",
                "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
    if name not in policies:
        raise ValueError(f"--mixed_precision={name!r}: expected float32, bfloat16 or float16")
    keras.mixed_precision.set_global_policy(policies[name])


class Trainer:
    """Owns the model, optimisers, data and checkpoints of one training run.

    The config's kind (`prtr_tf.models.registry`) gives the task: the model, its data,
    loss and validation metric.
    """

    def __init__(self, config, workdir, strategy="auto", mixed_precision=None, stream=None):
        check_folder(workdir)  # before the data and the model: a file there fails at once
        self.config = config
        self.task = registry.make_task(config)  # the config's family, bound to it
        self.workdir = workdir
        self.stream = stream or sys.stdout
        set_mixed_precision(mixed_precision)
        self.strategy = make_strategy(strategy) if isinstance(strategy, str) else strategy
        self.chief = is_chief(self.strategy)
        self.num_replicas = self.strategy.num_replicas_in_sync
        t = config.train
        if t.batch_size % self.num_replicas:
            raise ValueError(f"config.train.batch_size={t.batch_size} is not divisible by the "
                             f"{self.num_replicas} replicas")
        self.skips = SkipCounter()
        generate_synthetic(config)  # a synthetic config's data, made before it is read
        self.train_records = self.task.load_records("train", self.skips)
        check_image_files(config, self.train_records)  # one line, not a warning per file
        if len(self.train_records) < t.batch_size:
            raise ValueError(f"{len(self.train_records)} training samples are fewer than one "
                             f"batch (config.train.batch_size={t.batch_size})")
        self.steps_per_epoch = t.steps_per_epoch or len(self.train_records) // t.batch_size
        import keras
        keras.utils.set_random_seed(int(t.seed))  # same initial weights on every worker
        with self.strategy.scope():
            self.model = self.task.build_model()
            if t.get("init_weights"):
                self._init_weights(t.init_weights)
            if t.get("init_backbone"):
                from prtr_tf.checkpoints.torch_import import load_imagenet_file
                report = load_imagenet_file(self.model.backbone, t.init_backbone,
                                            "config.train.init_backbone",
                                            description=self.task.describe(config))
                self.log(f"config.train.init_backbone {t.init_backbone}: {report.summary()}")
            self.optimizer = TwoGroupAdamW(self.model, t, self.steps_per_epoch)
            # float16: one dynamic loss scale for both optimiser groups.
            self.loss_scale = DynamicLossScale(
                t.get("loss_scale_initial", DEFAULT_INITIAL_SCALE),
                t.get("loss_scale_growth_steps", DEFAULT_GROWTH_STEPS)) \
                if mixed_precision == "float16" else None
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False,
                                             name="step_in_epoch")
            self.best_metric = tf.Variable(-1.0, dtype=tf.float64, trainable=False,
                                           name="best_metric")
            # The running sums of this epoch's metrics, so that a resumed epoch's row in
            # metrics.csv covers all of its steps.
            self.metric_keys = tuple(self.task.loss_keys) + ("grad_norm",)
            self.epoch_sums = tf.Variable(tf.zeros(len(self.metric_keys), tf.float64),
                                          trainable=False, name="epoch_sums")
            self.epoch_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False,
                                             name="epoch_seconds")
        # ``model_variables``: every model variable, by its index in ``model.weights``.
        # tf.train.Checkpoint follows a Keras 3 model's direct attributes only: the
        # variables of layers kept in lists (the ResNet stages, the Transformer layers)
        # would be reached through the optimisers when trainable, and the others
        # (BatchNorm moving statistics) not at all, so a resumed run lost them.
        state = dict(
            model=self.model, model_variables=list(self.model.weights),
            optimizer_backbone=self.optimizer.backbone,
            optimizer_rest=self.optimizer.rest, epoch=self.epoch,
            step_in_epoch=self.step_in_epoch, best_metric=self.best_metric,
            epoch_sums=self.epoch_sums, epoch_seconds=self.epoch_seconds)
        # The loss scale is in float16 runs' checkpoints only (float32 ones stay as they
        # were); `restore` resumes a float32/bfloat16 checkpoint in float16 without it.
        self._checkpoint_without_scale = tf.train.Checkpoint(**state)
        self.checkpoint = tf.train.Checkpoint(**state, **(
            {"loss_scale": self.loss_scale} if self.loss_scale is not None else {}))
        ckpt_dir = os.path.join(workdir, "checkpoints")
        self.lock = WorkdirLock(workdir)
        if not self.chief:  # other workers write to a private folder (MultiWorker pattern)
            task_id = self.strategy.cluster_resolver.task_id
            ckpt_dir = os.path.join(workdir, f".worker_{task_id}")
            self.lock = WorkdirLock(workdir, name=f".lock.worker_{task_id}")
        self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir, max_to_keep=2)
        self._train_step = None

    def _init_weights(self, path):
        """``config.train.init_weights``: every tensor that fits is loaded, the rest
        re-initialised (`prtr_tf.checkpoints.weights.load_fitting`: a model of another
        keypoint set or query count), and the joint class head also when the set
        recorded beside the file names other joints (with as many of them); one line
        says what was re-initialised."""
        what = "config.train.init_weights"
        other = keypoint_record.other_joints(weights.resolve(path, what), self.config)
        heads = [n for n in JOINT_CLASS_HEADS if hasattr(self.model, n)] if other else []
        report = weights.load_fitting(self.model, path, what,
                                      self.task.describe(self.config), reinitialise=heads)
        why = f" (the joint class head {', '.join(heads)}: {other})" if heads else ""
        self.log(f"{what} {report.file}: {report.summary()}{why}")

    # ---------------------------------------------------------------- steps

    def _step_fn(self, batch):
        with tf.GradientTape() as tape:
            losses = self.task.loss(self.model, batch)
            # The per-replica loss is a mean over the local batch; the sum over replicas
            # of loss / num_replicas is the mean over the global batch.
            loss = losses["loss"] / self.num_replicas
            if self.loss_scale is not None:
                loss = self.loss_scale.scale_loss(loss)
        grads = tape.gradient(loss, self.optimizer.variables)
        ctx = tf.distribute.get_replica_context()
        if self.num_replicas > 1:
            grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        out = {k: losses[k] for k in self.task.loss_keys}
        if self.loss_scale is None:
            out["grad_norm"] = self.optimizer.apply(grads, self.num_replicas)
            return out
        # Unscaled before clipping; a non-finite step is skipped by both groups.
        out["grad_norm"], finite = self.optimizer.apply(grads, self.num_replicas,
                                                        loss_scale=self.loss_scale)
        out["skipped_steps"] = 1.0 - tf.cast(finite, tf.float32)
        return out

    def train_step(self, iterator):
        if self._train_step is None:
            # reduce_retracing: detector batches are padded to each batch's largest image.
            @tf.function(reduce_retracing=True)
            def step(it):
                per_replica = self.strategy.run(self._step_fn, args=(next(it),))
                return {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                        for k, v in per_replica.items()}
            self._train_step = step
        return self._train_step(iterator)

    # ---------------------------------------------------------------- data

    def epoch_dataset(self, epoch, start_step=0):
        """This epoch's batches, in the order fixed by (seed, epoch), from ``start_step``."""
        t = self.config.train
        seed = int(t.seed) * 100003 + int(epoch)
        ds = self.task.train_dataset(self.train_records, seed, t.batch_size, self.skips)
        # repeat(): config.train.steps_per_epoch may ask for more batches than one pass has.
        ds = ds.repeat().take(self.steps_per_epoch).skip(start_step)
        return self.strategy.experimental_distribute_dataset(ds)

    # ---------------------------------------------------------------- evaluation

    def evaluate(self):
        """The task's validation metrics (keypoint AP with GT boxes, or box AP)."""
        return self.task.evaluate_training(self.model, self.stream)

    # ---------------------------------------------------------------- loop

    def global_step(self):
        """Training steps taken: the optimisers' update count, plus the float16 steps
        skipped for a non-finite gradient (which did not update)."""
        skipped = 0 if self.loss_scale is None else int(self.loss_scale.skipped.numpy())
        return int(self.optimizer.iterations.numpy()) + skipped

    def restore(self):
        latest = self.manager.latest_checkpoint
        if latest:
            names = {name for name, _ in tf.train.list_variables(latest)}
            if self.loss_scale is not None and not any(n.startswith("loss_scale/")
                                                       for n in names):
                self._checkpoint_without_scale.restore(latest) \
                    .assert_existing_objects_matched()
                self.log(f"{latest} holds no loss scale (a float32 or bfloat16 run): "
                         f"float16 continues from scale {float(self.loss_scale.scale.numpy()):g}")
            else:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            self.log(f"resumed from {latest}: epoch {int(self.epoch.numpy()) + 1}, "
                     f"step {int(self.step_in_epoch.numpy())}/{self.steps_per_epoch}")
        return latest

    def log(self, message):
        if self.chief:
            print(message, file=self.stream, flush=True)

    def save(self, elapsed=0.0):
        """A checkpoint (``elapsed``: seconds of the current epoch since the last one)."""
        self.epoch_seconds.assign_add(elapsed)
        return self.manager.save(checkpoint_number=self.global_step())

    def fit(self, max_steps=None):
        """Trains until ``config.train.epochs`` (or ``max_steps`` more steps: the run then
        ends with a checkpoint and ``last.weights.h5``, and with the epoch's end when the
        last step is an epoch's last); returns the metrics rows of the epochs finished
        by this call. Holds the workdir's lock
        (`prtr_tf.training.workdir.WorkdirLock`) while it runs."""
        with self.lock:
            if self.lock.note:
                self.log(self.lock.note)
            left = atomic.remove_partials(self.workdir) if self.chief else []
            if left:
                self.log(f"removed {len(left)} partial file(s) of an interrupted run from "
                         f"{self.workdir}: {', '.join(left)}")
            self._releases = []
            try:
                return self._fit(max_steps)
            finally:
                # The epochs' iterators still being deleted (`release_in_background`) are
                # deleted before the run returns: a process must not exit while one of
                # TensorFlow's destructors waits in another thread.
                for thread in self._releases:
                    thread.join()

    def _fit(self, max_steps):
        t = self.config.train
        where, recorded = artifact.recorded_config(self.workdir)
        if recorded is not None:  # a resumed run computes as the one it continues
            artifact.check_same(self.config, recorded, "--config", f"the workdir {where}",
                                hint="resume with the config it was started with, or "
                                     "train another configuration into a new --workdir")
        self.restore()
        if self.chief:  # the joints' meaning and the config, checked when loaded
            keypoint_record.record(self.workdir, self.config)
            artifact.record_config(self.workdir, self.config)
        writer = tf.summary.create_file_writer(os.path.join(self.workdir, "tensorboard")) \
            if self.chief else tf.summary.create_noop_writer()
        csv_path = os.path.join(self.workdir, "metrics.csv")
        history, steps_run = [], 0
        self.log(f"training {self.task.describe(self.config)} on "
                 f"{len(self.train_records)} samples: "
                 f"{self.steps_per_epoch} steps/epoch x {t.epochs} epochs, global batch "
                 f"{t.batch_size} over {self.num_replicas} replica(s); workdir {self.workdir}")
        while int(self.epoch.numpy()) < t.epochs and (max_steps is None or max_steps > 0):
            epoch = int(self.epoch.numpy())
            start = int(self.step_in_epoch.numpy())
            iterator = iter(self.epoch_dataset(epoch, start))
            progress = Progress(self.steps_per_epoch, f"epoch {epoch + 1}/{t.epochs}",
                                every=t.log_every_steps, stream=self.stream)
            t0 = time.time()
            for step in range(start, self.steps_per_epoch):
                metrics = {k: float(v) for k, v in self.train_step(iterator).items()}
                if not math.isfinite(metrics["loss"]):
                    hint = (" (a float16 overflow of the forward pass, which loss scaling "
                            "cannot prevent: train in bfloat16 or float32)"
                            if self.loss_scale is not None else "")
                    raise FloatingPointError(
                        f"loss is {metrics['loss']} at epoch {epoch + 1} step {step + 1}"
                        f"{hint}; the last good checkpoint is "
                        f"{self.manager.latest_checkpoint}")
                info = self._note_loss_scale(metrics, epoch, step)
                self.epoch_sums.assign_add([metrics[k] for k in self.metric_keys])
                steps_run += 1
                self.step_in_epoch.assign(step + 1)
                global_step = self.global_step()
                with writer.as_default(step=global_step):
                    for k, v in metrics.items():
                        tf.summary.scalar(f"train/{k}", v)
                    tf.summary.scalar("train/lr", self.optimizer.learning_rates()[1])
                    if self.loss_scale is not None:
                        tf.summary.scalar("train/loss_scale", self.loss_scale.scale)
                if self.chief:
                    progress.update(step + 1, f"loss {metrics['loss']:.4f}{info}")
                checkpoint_now = (t.checkpoint_every_steps
                                  and global_step % t.checkpoint_every_steps == 0)
                stop = max_steps is not None and steps_run >= max_steps
                if checkpoint_now or stop:
                    self.save(elapsed=time.time() - t0)
                    t0 = time.time()
                if stop and step + 1 < self.steps_per_epoch:
                    return self._stop_within_epoch(history, epoch, step + 1)
            # The epoch's input pipeline stops here, before the evaluation and the next
            # epoch's pipeline: left alive, its prefetching threads competed with both
            # (measured, one thread: 5.6 s between epochs against 1.7 s). Its deletion
            # runs in a thread of its own: a distributed iterator's destructor cancels
            # its threads at once, then waits for them (measured with the demo's keypoint
            # pipeline on one TensorFlow thread, 200 batches: 18.5 s to delete it, 1.7 s
            # for the plain iterator; the demo's epochs lost 40-60 s each).
            held, iterator = [iterator], None
            self._releases = [r for r in self._releases if r.is_alive()]
            self._releases.append(release_in_background(held))
            # The end of an epoch. Its checkpoint comes last: a run killed before it
            # resumes at the epoch's last step and does this again (the evaluation, the
            # weights files and the epoch's metrics.csv row, which replaces any earlier).
            row = self._epoch_row(epoch, time.time() - t0)
            if t.eval_every_epochs and (epoch + 1) % t.eval_every_epochs == 0:
                scores = self.evaluate()
                row.update(scores)
                metric = scores.get(self.task.metric, -1.0)
                if metric > float(self.best_metric.numpy()):
                    self.best_metric.assign(metric)
                    if self.chief:
                        self._save_model("best", scores)
                with writer.as_default(step=row["step"]):
                    for k, v in scores.items():
                        tf.summary.scalar(f"val/{k}", v)
            if self.chief:
                self._save_model("last", {k: v for k, v in row.items()
                                          if k in (self.task.metric, "AR", "PCKh")})
                upsert_csv_row(csv_path, row)
            self.epoch.assign(epoch + 1)
            self.step_in_epoch.assign(0)
            self.epoch_sums.assign(tf.zeros_like(self.epoch_sums))
            if self.loss_scale is not None:
                self.loss_scale.epoch_skipped.assign(0)
            self.epoch_seconds.assign(0.0)
            self.save()
            self.log(_summary(row))
            history.append(row)
            if max_steps is not None and steps_run >= max_steps:
                break  # --max_steps reached at the epoch's last step: it ended as every one
        return history

    def _stop_within_epoch(self, history, epoch, step):
        """``--max_steps`` reached within an epoch (its checkpoint is written): the model
        goes to ``last.weights.h5`` (atomically, as at an epoch's end), so that eval,
        predict and export take the workdir; the next run resumes at the next step."""
        if self.chief:
            self._save_model("last")
        self.log(f"stopped by max_steps at epoch {epoch + 1} step {step}/"
                 f"{self.steps_per_epoch}: wrote last.weights.h5 (the same command resumes "
                 "from the checkpoint)")
        return history

    def _save_model(self, name, metrics=None):
        """``NAME.weights.h5`` and the self-contained ``NAME.keras`` (+ its card
        ``NAME.md``, `prtr_tf.checkpoints.artifact`), each written atomically."""
        atomic.save_weights(self.model, os.path.join(self.workdir, f"{name}.weights.h5"))
        artifact.save(self.model, self.config, os.path.join(self.workdir, f"{name}.keras"),
                      tool="train.py", metrics=metrics)

    def _note_loss_scale(self, metrics, epoch, step):
        """float16: logs a skipped step (users must see overflows), keeps its non-finite
        gradient norm out of the epoch's mean; the progress line's loss-scale note."""
        if self.loss_scale is None:
            return ""
        scale = float(self.loss_scale.scale.numpy())
        if metrics["skipped_steps"] > 0:
            self.log(f"float16: non-finite gradient at epoch {epoch + 1} step {step + 1}: "
                     f"update skipped, loss scale lowered to {scale:g} "
                     f"({int(self.loss_scale.skipped.numpy())} step(s) skipped so far)")
            metrics["grad_norm"] = 0.0  # the epoch's mean is over the applied steps
            self.loss_scale.epoch_skipped.assign_add(1)
        return f" scale {scale:g}"

    def _epoch_row(self, epoch, seconds):
        """The metrics.csv row of a finished epoch: the means of its steps' metrics
        (over every step, also across a resume), the learning rates, its time; float16
        adds the steps skipped on overflow and the loss scale at the end."""
        lr_backbone, lr = self.optimizer.learning_rates()
        sums = dict(zip(self.metric_keys, self.epoch_sums.numpy()))
        steps = max(self.steps_per_epoch, 1)
        row = {"epoch": epoch + 1, "step": self.global_step(),
               **{k: float(v) / steps for k, v in sums.items()},
               "lr": lr, "lr_backbone": lr_backbone,
               "epoch_time_s": float(self.epoch_seconds.numpy()) + seconds,
               "skipped_samples": self.skips.reset()}
        if self.loss_scale is not None:
            skipped = int(self.loss_scale.epoch_skipped.numpy())
            row["grad_norm"] = float(sums["grad_norm"]) / max(steps - skipped, 1)
            row["skipped_steps"] = skipped
            row["loss_scale"] = float(self.loss_scale.scale.numpy())
        return row


def _summary(row):
    parts = [f"epoch {row['epoch']}", f"loss {row['loss']:.4f}"]
    parts += [f"{k[5:]} {row[k]:.4f}" for k in row
              if k.startswith("loss_") and k != "loss_scale"]
    parts += [f"{row['epoch_time_s']:.0f}s", f"skipped {row['skipped_samples']}"]
    if "loss_scale" in row:
        parts.append(f"float16: {row['skipped_steps']} step(s) skipped on overflow, "
                     f"loss scale {row['loss_scale']:g}")
    for key in ("AP", "AP .5", "AR", "PCKh"):
        if key in row:
            parts.append(f"{key} {row[key]:.4f}")
    return "  ".join(parts)


def train(config, workdir, strategy="auto", mixed_precision=None, max_steps=None,
          stream=None):
    """Trains ``config`` into ``workdir`` (resuming from its last checkpoint); returns the
    `Trainer` (its ``model`` holds the trained weights)."""
    trainer = Trainer(config, workdir, strategy=strategy, mixed_precision=mixed_precision,
                      stream=stream)
    trainer.fit(max_steps=max_steps)
    return trainer


def release_in_background(held):
    """Drops ``held``'s references (a list holding the last reference to an object) in a
    daemon thread, so that the object's destructor runs there and the caller goes on;
    returns the thread."""
    import threading
    thread = threading.Thread(target=held.clear, daemon=True, name="prtr-release")
    thread.start()
    return thread
