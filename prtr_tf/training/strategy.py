"""Choosing the tf.distribute strategy.

``auto``: MultiWorkerMirroredStrategy when ``TF_CONFIG`` lists more than one
worker, else MirroredStrategy over all local GPUs (or the CPU when there is none).
"""
import json
import os

STRATEGIES = ("auto", "mirrored", "multiworker", "default")


def num_workers_in_tf_config():
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def make_strategy(name="auto"):
    import tensorflow as tf  # here: the train CLI's flags (STRATEGIES) need no TensorFlow

    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {STRATEGIES}")
    if name == "auto":
        name = "multiworker" if num_workers_in_tf_config() > 1 else "mirrored"
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        cpus = tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.get_strategy()
