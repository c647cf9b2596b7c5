"""The demo: `python -m prtr_tf.demo` (`make demo`)."""
