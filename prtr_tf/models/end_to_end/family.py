"""The end-to-end PRTR family (``model.kind = "prtr_e2e"``, spec §8): DETR, an STN crop
and the keypoint Transformer in one model; trained on DETR's data with per-person
keypoint targets (`prtr_tf.models.end_to_end.loss.loss`), evaluated by keypoint AP with
the model's own person detections."""
from prtr_tf.models.detector.family import DetectorFamily
from prtr_tf.models.registry import POSE, Family


class EndToEndFamily(Family):
    name = "prtr_e2e"
    title = "end-to-end PRTR"
    role = POSE
    needs_detector = False  # detects the persons itself
    export_formats = ("saved_model", "onnx")
    metric = "AP"
    loss_keys = ("loss", "loss_det", "loss_kpt_set", "det_loss_ce", "det_loss_bbox",
                 "det_loss_giou", "num_crops")

    def backbone(self, model_config):
        return model_config.detector.backbone

    def build(self, model_config):
        from prtr_tf.models.end_to_end.model import build_end_to_end
        return build_end_to_end(model_config)

    def evaluate(self, model, config, split="val", results_path=None, stream=None):
        """COCO keypoint AP with the persons the model detects itself (no flip test)."""
        from prtr_tf.models.end_to_end.evaluate import evaluate
        return evaluate(model, config, split, results_path=results_path, stream=stream)

    def serving(self, model, config, detector=None, detector_config=None,
                score_threshold=None, max_persons=None, flip_test=None, resize="tf"):
        from prtr_tf.models.end_to_end.serving import EndToEndServing
        if detector is not None or flip_test is not None:
            raise ValueError("an end-to-end model detects the persons itself (no separate "
                             "detector) and has no flip test")
        if max_persons:  # read when the serving functions are traced
            model.config.max_persons = int(max_persons)
        return EndToEndServing(model, config, score_threshold, resize=resize)

    def estimator(self, model, config, detector=None, box_threshold=None, flip_test=None):
        from prtr_tf.serving.backends import SavedModelEstimator
        serving = self.serving(model, config, detector, score_threshold=box_threshold,
                               flip_test=flip_test)
        fn = serving.tf_functions()["serving_default"].get_concrete_function()
        return SavedModelEstimator.from_function(fn, serving.score_threshold)

    # ---- training (bound to self.config)

    def build_model(self):
        """The model; ``train.init_detector_weights`` (a DETR person detector's
        *.weights.h5 of the same detector config, e.g. the official DETR converted
        with ``prtr-convert``) initialises the backbone and detector."""
        from prtr_tf.checkpoints import weights
        model = self.build(self.config.model)
        path = self.config.train.get("init_detector_weights")
        if path:
            d = self.config.model.detector
            weights.load_into(model.detector, path, "config.train.init_detector_weights",
                              description=f"the end-to-end model's detector: backbone "
                              f"{d.backbone}, {d.num_queries} queries, person + no-object "
                              "head")
        return model

    def load_records(self, split, skip_counter):
        from prtr_tf.models.detector.records import load_split
        return load_split(self.config, split, skip_counter,
                          num_joints=int(self.config.model.num_joints))

    # DETR's data pipeline, the same function as the detector's.
    train_dataset = DetectorFamily.train_dataset

    def loss(self, model, batch):
        from prtr_tf.models.end_to_end.loss import loss
        return loss(model, batch, self.config.loss, training=True)

    def evaluate_training(self, model, stream):
        """COCO keypoint AP on the validation split, persons from the model itself."""
        return self.evaluate(model, self.config, "val", stream=stream)


FAMILY = EndToEndFamily()
