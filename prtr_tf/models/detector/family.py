"""The DETR person detector family (``model.kind = "detr"``, spec §8): person boxes for
the two-stage pipeline; trained on persons with visible keypoints."""
from prtr_tf.models.registry import DETECTOR, Family


class DetectorFamily(Family):
    name = "detr"
    title = "DETR person detector"
    role = DETECTOR
    # The two-stage SavedModel holds it (--detector_config); a detector .tflite of its own.
    export_formats = ("saved_model", "tflite")
    bfloat16_inference = True  # outputs cast to float32 (prtr_tf.nn.precision)
    person_score = "softmax incl. no-object"  # how its P(person) is computed (metadata)
    metric = "AP"
    loss_keys = ("loss", "loss_ce", "loss_bbox", "loss_giou")

    def build(self, model_config):
        from prtr_tf.models.detector.model import build_detector
        return build_detector(model_config)

    def evaluate(self, model, config, split="val", results_path=None, stream=None):
        """COCO person box AP; with ``results_path`` the detections JSON (the format
        of ``--det_json``) is written there."""
        from prtr_tf.evaluation.coco import write_results
        from prtr_tf.models.detector.evaluate import detection_results, evaluate_detector
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
        from prtr_tf.checkpoints.torch_import import load_state_dict
        from prtr_tf.models.detector.convert import prepare_detector
        model, state_dict = prepare_detector(model_config, state_dict)
        return model, load_state_dict(model, state_dict)

    # ---- training (bound to self.config)

    def load_records(self, split, skip_counter):
        from prtr_tf.models.detector.records import load_split
        return load_split(self.config, split, skip_counter)

    def train_dataset(self, records, seed, batch, skip_counter):
        from prtr_tf.models.detector.data import build_detection_dataset
        return build_detection_dataset(records, self.config, training=True, deterministic=True,
                                       seed=seed, batch=batch, drop_remainder=True,
                                       skip_counter=skip_counter)

    def loss(self, model, batch):
        from prtr_tf.models.detector.loss import DetectionCriterion
        criterion = DetectionCriterion(self.config.loss)
        outputs = model(batch["image"], mask=batch["mask"], training=True)
        indices = criterion.match(outputs, batch)
        return criterion(outputs, batch, indices=indices, global_norm=True)

    def evaluate_training(self, model, stream):
        """COCO person box AP on the validation split."""
        from prtr_tf.models.detector.evaluate import evaluate_detector
        return evaluate_detector(model, self.config, split="val", stream=stream)


FAMILY = DetectorFamily()
