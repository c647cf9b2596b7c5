"""Evaluates a trained PRTR model (`prtr_tf.cli.eval`; installed as ``prtr-eval``)."""
from prtr_tf.cli.eval import run

if __name__ == "__main__":
    run()
