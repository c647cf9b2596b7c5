"""prtr-tf: PRTR (Pose Recognition with Cascade Transformers) in TensorFlow/Keras.

    import prtr_tf
    pose = prtr_tf.load("res50_384x288.keras")        # a model file, or a training workdir
    detector = prtr_tf.load("detr_person.keras")
    estimator = prtr_tf.PoseEstimator(pose, detector=detector)
    persons = estimator(image)                        # RGB uint8 (H, W, 3)

Nothing heavy is imported before it is used (the command lines start fast).
"""

__version__ = "0.1.0"


def load(path, precision="float32"):
    """The Keras model of a prtr-tf model file (``*.keras``, from prtr-convert or
    train.py) or of a training workdir (its best, else last, weights and the config it
    recorded), ready for inference (frozen BatchNorm folded); its config is
    ``model.prtr_config``. ``precision``: 'float32' or 'bfloat16' compute."""
    from prtr_tf.checkpoints.weights import load_model
    return load_model(None, path, "model file", precision=precision)[0]


def estimator(model, detector=None, **options):
    """The callable image -> persons of a model from `load`, whatever its family: a
    keypoint model with a ``detector`` (a model from `load`, or a callable image ->
    (boxes xywh, scores)), or an end-to-end model alone. ``options``: the family's
    (``box_threshold``, ``flip_test``)."""
    from prtr_tf.models import registry
    config = getattr(model, "prtr_config", None)
    if config is None:
        raise ValueError("estimator() takes a model from prtr_tf.load (it carries its "
                         "config)")
    from prtr_tf.models.detector.predict import as_person_detector
    return registry.get(config).estimator(model, config,
                                          detector=as_person_detector(detector), **options)


def __getattr__(name):
    if name == "PoseEstimator":
        from prtr_tf.serving.estimator import PoseEstimator
        return PoseEstimator
    raise AttributeError(f"module 'prtr_tf' has no attribute {name!r}")
