"""Replica-count helpers for losses normalised over the global batch.

Under ``tf.distribute`` each replica computes the loss of its local batch; a term
normalised by a count (boxes, crops, class weights) is exact for the global batch
when every replica divides by the same global count: the sum over replicas / their
number, all-reduced inside the replica function (`replica_mean`).
"""
import tensorflow as tf


def replica_mean(value):
    """The mean of a float32 scalar over the replicas (sum over replicas / their
    number). Call it in a replica context (inside ``strategy.run``); outside any
    strategy (or with one replica) it is ``value``. Every replica must call it (a
    collective inside a branch that only some replicas take would hang)."""
    value = tf.cast(value, tf.float32)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        value = ctx.all_reduce(tf.distribute.ReduceOp.SUM, value) / ctx.num_replicas_in_sync
    return value


def global_count(local_count):
    """A count normaliser over the global batch per replica: `replica_mean` of the
    local count, clamped to >= 1 (DETR's ``num_boxes``)."""
    return tf.maximum(replica_mean(local_count), 1.0)
