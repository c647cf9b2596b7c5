"""CPU inference latency of PRTR in every export format (`prtr_tf.cli.benchmark`)."""
from prtr_tf.cli.benchmark import run_inference

if __name__ == "__main__":
    run_inference()
