"""`predict_dataset` traces its step once per model and setting (the evaluation after
every training epoch reuses it), gives the same numbers as a fresh trace, and does not
keep a deleted model alive."""
import gc
import weakref

import numpy as np
import tensorflow as tf

from prtr_tf.config import load_config
from prtr_tf.models.keypoint import predict
from prtr_tf.models.keypoint.model import build_model


def _batches(config, n=3, batch=2):
    h, w = config.model.image_size
    rng = np.random.default_rng(0)
    for i in range(n):
        size = batch if i < n - 1 else 1  # a smaller last batch, as evaluations end
        yield {"image": tf.constant(rng.normal(size=(size, h, w, 3)), tf.float32),
               "center": tf.constant(rng.uniform(50, 100, (size, 2))),
               "scale": tf.constant(rng.uniform(0.5, 1.0, (size, 2))),
               "box_score": tf.ones((size,)), "image_id": tf.range(size),
               "index": tf.range(size)}


def test_the_step_is_traced_once_per_model_and_released_with_it():
    config = load_config("tiny")
    model = build_model(config.model)
    size = tuple(config.model.image_size)
    first = predict.predict_dataset(model, _batches(config), size)
    step = predict._STEPS[model][(size, None, 200.0)]
    traces = step.experimental_get_tracing_count()
    again = predict.predict_dataset(model, _batches(config), size)
    assert step.experimental_get_tracing_count() == traces  # reused, not traced again
    np.testing.assert_array_equal(first["keypoints"], again["keypoints"])
    assert first["keypoints"].shape == (5, config.model.num_joints, 3)
    # Changed weights are seen (variables, not constants, are captured).
    for v in model.trainable_variables:
        v.assign(v * 0.5)
    changed = predict.predict_dataset(model, _batches(config), size)
    assert not np.array_equal(changed["keypoints"], first["keypoints"])
    flipped = predict.predict_dataset(model, _batches(config), size, flip_pairs=[[1, 2]])
    assert len(predict._STEPS[model]) == 2 and flipped["keypoints"].shape == (5, 17, 3)
    # Released with the model. Other tests' models in this process may go in the same
    # collection, so the count drops by at least one (seen in CI: by two).
    count, alive = len(predict._STEPS), weakref.ref(model)
    del model, step
    gc.collect()
    assert alive() is None and len(predict._STEPS) <= count - 1
