"""The DETR person detector as a model kind (``model.kind = "detr"``)."""
from prtr_tf.models.registry import Kind


class DetectorKind(Kind):
    name = "detr"
    title = "DETR person detector"

    bfloat16_inference = True  # outputs cast to float32 (prtr_tf.nn.precision)

    def build(self, model_config):
        from prtr_tf.models.detector.model import build_detector
        return build_detector(model_config)

    def task(self, config):
        from prtr_tf.models.detector.task import DetectionTask
        return DetectionTask(config)

    def evaluate(self, model, config, split="val", results_path=None, stream=None):
        """COCO person box AP; with ``results_path`` the detections JSON (the format
        of ``--det_json``) is written there."""
        from prtr_tf.models.detector.evaluate import detection_results, evaluate_detector
        from prtr_tf.evaluation.coco import write_results
        results = detection_results(model, config, split, stream=stream)
        if results_path:
            write_results(results, results_path)
        return evaluate_detector(model, config, split, stream=stream, results=results)

    def serving(self, model, config, detector=None, detector_config=None, **options):
        raise ValueError("a DETR person detector is exported inside the two-stage "
                         "pipeline: pass its config and weights as --detector_config and "
                         "--detector_checkpoint, with a keypoint --config and --checkpoint")

    def estimator(self, model, config, detector=None, **options):
        raise ValueError("a DETR person detector finds boxes, not poses: pass it as "
                         "--detector_config/--detector_checkpoint with a keypoint model")

    def import_official(self, model_config, state_dict):
        from prtr_tf.models.detector.convert import prepare_detector
        return prepare_detector(model_config, state_dict)


KIND = DetectorKind()
