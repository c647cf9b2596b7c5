"""The model families and their registry (`prtr_tf.models.registry`)."""
