"""Trains a PRTR model (`prtr_tf.cli.train`; installed as ``prtr-train``)."""
from prtr_tf.cli.train import run

if __name__ == "__main__":
    run()
