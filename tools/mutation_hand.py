"""Mutants planted by hand in the TensorFlow-heavy modules (trainer, loss scale, model
losses), where a mutmut run is too slow (issue 27).

    python -m tools.mutation_hand            # every mutant of MUTANTS
    python -m tools.mutation_hand --only=3,5

Each mutant is planted alone in a scratch copy of the project (``--scratch``:
prtr_tf/, tests/, pytest.ini; the working tree is never modified): the file is
backed up with a copy, one line replaced, the mutant's test files run, the backup
copied back and compared byte for byte. The outcome (which tests failed) goes to
``scratch/hand.json``, which `tools.mutation` puts in docs/mutation.md.
"""
import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tests' ../shared material (tests/conftest.py), seen from the scratch copies too.
SHARED = os.environ.get("PRTR_SHARED", os.path.join(os.path.dirname(REPO), "shared"))

LOSS_SCALE_T = ["tests/training/test_loss_scale_values.py"]
TRAINER_T = ["tests/training/test_trainer_values.py"]
KPT_T = ["tests/keypoint/test_loss_values.py", "tests/keypoint/test_matcher_loss.py"]
DET_T = ["tests/detector/test_loss_values.py", "tests/detector/test_loss.py"]

# (file, original text (must occur once), mutated text, test files to run)
MUTANTS = [
    ("prtr_tf/training/loss_scale.py", "tf.equal(self.good_steps, self.growth_steps - 1)",
     "tf.equal(self.good_steps, self.growth_steps)", LOSS_SCALE_T),
    ("prtr_tf/training/loss_scale.py", "self.skipped.assign_add(1 - tf.cast(finite, tf.int64))",
     "self.skipped.assign_add(tf.cast(finite, tf.int64))", LOSS_SCALE_T),
    ("prtr_tf/training/loss_scale.py", "tf.where(grow, scale * 2.0, scale), scale * 0.5)",
     "tf.where(grow, scale * 2.0, scale), scale)", LOSS_SCALE_T),
    ("prtr_tf/training/loss_scale.py", "return [g / tf.cast(scale, g.dtype) for g in grads]",
     "return [g * tf.cast(scale, g.dtype) for g in grads]", LOSS_SCALE_T),
    ("prtr_tf/training/loss_scale.py",
     "tf.cond(finite, lambda: _nothing(apply_fn(grads)), _nothing)",
     "_nothing(apply_fn(grads))", LOSS_SCALE_T),
    ("prtr_tf/training/trainer.py",
     'row["grad_norm"] = float(sums["grad_norm"]) / max(steps - skipped, 1)',
     'row["grad_norm"] = float(sums["grad_norm"]) / max(steps, 1)', TRAINER_T),
    ("prtr_tf/training/trainer.py",
     '"epoch_time_s": float(self.epoch_seconds.numpy()) + seconds,',
     '"epoch_time_s": seconds,', TRAINER_T),
    ("prtr_tf/training/trainer.py",
     'metrics["grad_norm"] = 0.0  # the epoch\'s mean is over the applied steps',
     'pass', TRAINER_T),
    ("prtr_tf/training/trainer.py",
     "return int(self.optimizer.iterations.numpy()) + skipped",
     "return int(self.optimizer.iterations.numpy())", TRAINER_T),
    ("prtr_tf/models/keypoint/loss.py",
     "loss_kpt = tf.reduce_sum(l1 * target_weight, axis=[1, 2]) / (2.0 * batch_size)",
     "loss_kpt = tf.reduce_sum(l1, axis=[1, 2]) / (2.0 * batch_size)", KPT_T),
    ("prtr_tf/models/keypoint/loss.py",
     "loss_kpt = tf.reduce_sum(l1 * target_weight, axis=[1, 2]) / (2.0 * batch_size)",
     "loss_kpt = tf.reduce_sum(l1 * target_weight, axis=[1, 2]) / batch_size", KPT_T),
    ("prtr_tf/models/keypoint/loss.py",
     "nll = -tf.reduce_sum(labels * tf.nn.log_softmax(logits, axis=-1), axis=-1)  # (L, B, Q)",
     "nll = -tf.reduce_sum(labels * tf.nn.log_softmax(logits, axis=-1), axis=-1) * "
     "(background[..., 0] + tf.einsum('lbqj,bj->lbq', matched, target_weight))", KPT_T),
    ("prtr_tf/models/keypoint/loss.py",
     "weight = 1.0 + (eos_coef - 1.0) * background[..., 0]",
     "weight = eos_coef + (1.0 - eos_coef) * background[..., 0]", KPT_T),
    ("prtr_tf/models/detector/loss.py",
     "matched = valid * tf.cast(indices >= 0, tf.float32)",
     "matched = tf.cast(indices >= 0, tf.float32)", DET_T),
    ("prtr_tf/models/detector/loss.py",
     "num_boxes = tf.maximum(tf.cast(num_boxes, tf.float32), 1.0)",
     "num_boxes = tf.cast(num_boxes, tf.float32)", DET_T),
    ("prtr_tf/models/detector/loss.py",
     "box_cxcywh_to_xyxy(src), box_cxcywh_to_xyxy(tgt))",
     "box_cxcywh_to_xyxy(src), tgt)", DET_T),
]


def _copy(scratch):
    if os.path.exists(scratch):
        shutil.rmtree(scratch)
    os.makedirs(scratch)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("prtr_tf", "tests"):
        shutil.copytree(os.path.join(REPO, name), os.path.join(scratch, name), ignore=ignore)
    shutil.copy2(os.path.join(REPO, "pytest.ini"), scratch)


def run_one(scratch, number, path, old, new, tests, timeout):
    target = os.path.join(scratch, path)
    backup = target + ".orig"
    shutil.copy2(target, backup)
    try:
        with open(target) as f:
            text = f.read()
        if text.count(old) != 1:
            raise ValueError(f"mutant {number}: {old!r} occurs {text.count(old)} times in {path}")
        with open(target, "w") as f:
            f.write(text.replace(old, new))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=scratch,
                   PYTHONDONTWRITEBYTECODE="1", PRTR_SHARED=SHARED)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                               "-rf", *tests], cwd=scratch, env=env, capture_output=True,
                              text=True, timeout=timeout)
    finally:
        shutil.copy2(backup, target)
        os.remove(backup)
    if not filecmp.cmp(target, os.path.join(REPO, path), shallow=False):
        raise RuntimeError(f"{target} was not restored")
    failed = sorted(set(re.findall(r"^FAILED (\S+?)(?: - |$)", proc.stdout, re.M)))
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    return dict(number=number, file=path, old=old, new=new, tests=tests,
                killed=proc.returncode != 0, failed=failed, summary=summary)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated mutant numbers (1-based)")
    parser.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(),
                                                          "prtr-mutation", "hand"))
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)
    numbers = [int(n) for n in args.only.split(",") if n] or range(1, len(MUTANTS) + 1)
    _copy(args.scratch)
    out_file = os.path.join(os.path.dirname(args.scratch), "hand.json")
    results = {}
    if os.path.exists(out_file):
        with open(out_file) as f:
            results = {r["number"]: r for r in json.load(f)}
    for n in numbers:
        result = run_one(args.scratch, n, *MUTANTS[n - 1], timeout=args.timeout)
        results[n] = result
        print(f"{n}: {'killed' if result['killed'] else 'SURVIVED'} {result['summary']}",
              flush=True)
        with open(out_file, "w") as f:
            json.dump([results[k] for k in sorted(results)], f, indent=1)
    shutil.rmtree(args.scratch)


if __name__ == "__main__":
    main()
