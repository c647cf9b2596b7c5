"""Training task of the DETR person detector (spec §8): persons with visible keypoints
as targets; what `prtr_tf.training.trainer.Trainer` needs of it."""


class DetectionTask:
    metric = "AP"
    loss_keys = ("loss", "loss_ce", "loss_bbox", "loss_giou")

    def __init__(self, config):
        self.config = config

    def build_model(self):
        from prtr_tf.models.detector.model import build_detector
        return build_detector(self.config.model)

    def load_records(self, split, skip_counter, num_joints=None):
        from prtr_tf.data.splits import ensure_data
        from prtr_tf.data.keypoint_sets import category_ids
        from prtr_tf.models.detector.records import load_person_boxes
        ann, images = ensure_data(self.config, split)
        return load_person_boxes(ann, images, min_keypoints=self.config.data.min_keypoints,
                                 skip_bad=self.config.data.skip_bad_samples,
                                 skip_counter=skip_counter, num_joints=num_joints,
                                 category_ids=category_ids(self.config))

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

    def evaluate(self, model, stream):
        """COCO person box AP on the validation split."""
        from prtr_tf.models.detector.evaluate import evaluate_detector
        return evaluate_detector(model, self.config, split="val", stream=stream)
