"""The end-to-end PRTR as a model kind (``model.kind = "prtr_e2e"``)."""
from prtr_tf.models.registry import Kind


class EndToEndKind(Kind):
    name = "prtr_e2e"
    title = "end-to-end PRTR"

    def backbone(self, model_config):
        return model_config.detector.backbone

    def build(self, model_config):
        from prtr_tf.models.end_to_end.model import build_end_to_end
        return build_end_to_end(model_config)

    def task(self, config):
        from prtr_tf.models.end_to_end.task import EndToEndTask
        return EndToEndTask(config)

    def evaluate(self, model, config, split="val", results_path=None, stream=None):
        """COCO keypoint AP with the persons the model detects itself (no flip test)."""
        from prtr_tf.models.end_to_end.evaluate import evaluate
        return evaluate(model, config, split, results_path=results_path, stream=stream)

    def serving(self, model, config, detector=None, detector_config=None,
                score_threshold=None, max_persons=None, flip_test=None, resize="tf"):
        from prtr_tf.models.end_to_end.serving import EndToEndServing
        from prtr_tf.serving.module import DEFAULT_SCORE_THRESHOLD
        if detector is not None or flip_test is not None:
            raise ValueError("an end-to-end model detects the persons itself (no separate "
                             "detector) and has no flip test")
        if max_persons:  # read when the serving functions are traced
            model.config.max_persons = int(max_persons)
        return EndToEndServing(model, config, DEFAULT_SCORE_THRESHOLD
                               if score_threshold is None else score_threshold, resize=resize)

    def estimator(self, model, config, detector=None, box_threshold=None, flip_test=None):
        from prtr_tf.serving.backends import SavedModelEstimator
        serving = self.serving(model, config, detector, score_threshold=box_threshold,
                               flip_test=flip_test)
        fn = serving.tf_functions()["serving_default"].get_concrete_function()
        return SavedModelEstimator.from_function(fn)


KIND = EndToEndKind()
