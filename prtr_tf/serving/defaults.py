"""Defaults shared by every prediction path (no TensorFlow import: the command lines
read them for their ``--help``).

`PERSON_SCORE_THRESHOLD`: the minimum P(person) of a detected person when predicting,
the one default of the Keras two-stage pipeline (`prtr_tf.models.detector.predict.
DetrPersonDetector`), the end-to-end Keras model, the SavedModel export
(``prtr-export saved_model --score_threshold``; its ONNX conversion keeps it), and a
detector ``.tflite`` (`prtr_tf.serving.backends.TFLiteDetector`); ``prtr-predict
--box_thr`` overrides it. Exported models record theirs in their metadata
(``score_threshold``). Chosen by measurement: the highest median person-box F1 (IoU >=
0.5) over three seeds of the demo's detector on its held-out images (``python -m
tools.threshold_sweep``; the table is in docs/inference.md, "Person score threshold").
Evaluation (AP) does not use it: it keeps every box (``test.score_thre`` /
``test.image_thre`` 0.0, the official protocol).
"""

PERSON_SCORE_THRESHOLD = 0.4


def person_threshold(estimator):
    """The minimum score of the persons ``estimator`` keeps, as predict reports it: the
    threshold fixed in an exported or end-to-end model (``score_threshold``: a
    `prtr_tf.serving.backends.SavedModelEstimator`), else the higher of its detector's
    P(person) threshold and its box threshold (`prtr_tf.serving.estimator.PoseEstimator`;
    for boxes given per call only the latter applies); None when unknown (a SavedModel
    exported before its metadata recorded it, or another kind of estimator)."""
    if hasattr(estimator, "score_threshold"):
        value = estimator.score_threshold
        return None if value is None else float(value)
    box = getattr(estimator, "box_threshold", None)
    detector = getattr(getattr(estimator, "detector", None), "threshold", None)
    found = [float(t) for t in (box, detector) if t is not None]
    return max(found) if found else None
