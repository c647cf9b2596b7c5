"""CPU training throughput of prtr-tf (`prtr_tf.cli.benchmark`)."""
from prtr_tf.cli.benchmark import run_training

if __name__ == "__main__":
    run_training()
