"""Pose estimation on images and videos: see `prtr_tf.cli.predict` (or --help)."""
from prtr_tf.cli.predict import run

if __name__ == "__main__":
    run()
