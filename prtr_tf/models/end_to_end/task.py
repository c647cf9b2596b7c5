"""Training task of the end-to-end PRTR (spec §8): DETR's data with per-person keypoint
targets, the joint loss (`prtr_tf.models.end_to_end.loss.loss`), keypoint AP with the model's
own person detections."""
from prtr_tf.models.detector.task import DetectionTask


class EndToEndTask(DetectionTask):
    loss_keys = ("loss", "loss_det", "loss_kpt_set", "det_loss_ce", "det_loss_bbox",
                 "det_loss_giou", "num_crops")

    def build_model(self):
        """The model; ``train.init_detector_weights`` (a DETR person detector's
        *.weights.h5 of the same detector config, e.g. the official DETR converted
        with ``python -m prtr_tf.checkpoints.convert``) initialises the backbone and detector."""
        from prtr_tf.checkpoints import weights
        from prtr_tf.models.end_to_end.model import build_end_to_end
        model = build_end_to_end(self.config.model)
        path = self.config.train.get("init_detector_weights")
        if path:
            d = self.config.model.detector
            weights.load_into(model.detector, path, "config.train.init_detector_weights",
                              description=f"the end-to-end model's detector: backbone "
                              f"{d.backbone}, {d.num_queries} queries, person + no-object "
                              "head")
        return model

    def load_records(self, split, skip_counter, num_joints=None):
        return super().load_records(split, skip_counter,
                                    num_joints=int(self.config.model.num_joints))

    def loss(self, model, batch):
        from prtr_tf.models.end_to_end.loss import loss
        return loss(model, batch, self.config.loss, training=True)

    def evaluate(self, model, stream):
        """COCO keypoint AP on the validation split, persons from the model itself."""
        from prtr_tf.models.end_to_end.evaluate import evaluate
        return evaluate(model, self.config, split="val", stream=stream)
