"""What the trainer trains: the keypoint Transformer, the DETR person detector, or
the end-to-end PRTR (both, jointly).

A task knows its model, its records and tf.data pipeline, its loss for one local
batch (matching through scipy outside any XLA region) and its validation metric;
`prtr_tf.training.trainer.Trainer` does the rest (distribution, optimisation,
checkpoints, logs) the same way for all.
"""
import os


class KeypointTask:
    """The two-stage keypoint Transformer on person crops (spec §3-§5)."""

    metric = "AP"  # or PCKh for MPII, see `evaluate`
    loss_keys = ("loss", "loss_ce", "loss_kpt")

    def __init__(self, config):
        self.config = config

    def build_model(self):
        from prtr_tf.models import build_model
        return build_model(self.config.model)

    def load_records(self, split, skip_counter):
        from prtr_tf.data.splits import load_records
        return load_records(self.config, split, skip_counter=skip_counter)

    def train_dataset(self, records, seed, batch, skip_counter):
        from prtr_tf.data.pipeline import build_dataset
        return build_dataset(records, self.config, training=True, deterministic=True,
                             seed=seed, batch=batch, drop_remainder=True,
                             skip_counter=skip_counter)

    def loss(self, model, batch):
        from prtr_tf.losses import match_outputs, set_loss
        c = self.config.loss
        outputs = model(batch["image"], training=True)
        indices = match_outputs(outputs, batch["target"], c.cost_class, c.cost_coord)
        return set_loss(outputs, batch["target"], batch["target_weight"], indices=indices,
                        eos_coef=c.eos_coef, ce_coef=c.ce_loss_coef, kpt_coef=c.kpt_loss_coef)

    def evaluate(self, model, stream):
        """COCO keypoint AP with ground-truth boxes (MPII: PCKh, also under 'AP')."""
        from prtr_tf.validate import validate
        scores = validate(model, self.config, split="val", flip_test=False, stream=stream)
        if "PCKh" in scores:
            scores["AP"] = scores["PCKh"]
        return scores


class DetectionTask:
    """The DETR person detector (spec §8): persons with visible keypoints as targets."""

    metric = "AP"
    loss_keys = ("loss", "loss_ce", "loss_bbox", "loss_giou")

    def __init__(self, config):
        self.config = config

    def build_model(self):
        from prtr_tf.models.detr import build_detector
        return build_detector(self.config.model)

    def load_records(self, split, skip_counter):
        from prtr_tf.data.splits import ensure_data
        from prtr_tf.detection.data import load_person_boxes
        ann, images = ensure_data(self.config, split)
        return load_person_boxes(ann, images, min_keypoints=self.config.data.min_keypoints,
                                 skip_bad=self.config.data.skip_bad_samples,
                                 skip_counter=skip_counter)

    def train_dataset(self, records, seed, batch, skip_counter):
        from prtr_tf.detection.data import build_detection_dataset
        return build_detection_dataset(records, self.config, training=True, deterministic=True,
                                       seed=seed, batch=batch, drop_remainder=True,
                                       skip_counter=skip_counter)

    def loss(self, model, batch):
        from prtr_tf.detection.losses import DetectionCriterion
        criterion = DetectionCriterion(self.config.loss)
        outputs = model(batch["image"], mask=batch["mask"], training=True)
        indices = criterion.match(outputs, batch)
        return criterion(outputs, batch, indices=indices, global_norm=True)

    def evaluate(self, model, stream):
        """COCO person box AP on the validation split."""
        from prtr_tf.detection.evaluate import evaluate_detector
        return evaluate_detector(model, self.config, split="val", stream=stream)


class EndToEndTask(DetectionTask):
    """The end-to-end PRTR (spec §8): DETR's data with per-person keypoint targets,
    the joint loss (`prtr_tf.models.end_to_end.loss`), keypoint AP with the model's
    own person detections."""

    loss_keys = ("loss", "loss_det", "loss_kpt_set", "det_loss_ce", "det_loss_bbox",
                 "det_loss_giou", "num_crops")

    def build_model(self):
        """The model; ``train.init_detector_weights`` (a DETR person detector's
        *.weights.h5 of the same detector config, e.g. the official DETR converted
        with ``python -m prtr_tf.convert``) initialises the backbone and detector."""
        from prtr_tf.models.end_to_end import build_end_to_end
        model = build_end_to_end(self.config.model)
        path = self.config.train.get("init_detector_weights")
        if path:
            if not str(path).endswith(".weights.h5") or not os.path.isfile(path):
                raise FileNotFoundError(
                    f"config.train.init_detector_weights={path!r}: not an existing "
                    "*.weights.h5 file (convert a DETR .pth with python -m prtr_tf.convert "
                    "--config=configs/detr_r50_person.py ...)")
            try:
                model.detector.load_weights(path)
            except Exception as e:  # noqa: BLE001 - re-raised with the likely cause
                raise ValueError(
                    f"config.train.init_detector_weights={path!r} does not fit the "
                    f"end-to-end model's detector (backbone "
                    f"{self.config.model.detector.backbone}, "
                    f"{self.config.model.detector.num_queries} queries, person + "
                    f"no-object head): {e}") from e
        return model

    def load_records(self, split, skip_counter):
        from prtr_tf.data.splits import ensure_data
        from prtr_tf.detection.data import load_person_boxes
        ann, images = ensure_data(self.config, split)
        return load_person_boxes(ann, images, min_keypoints=self.config.data.min_keypoints,
                                 skip_bad=self.config.data.skip_bad_samples,
                                 skip_counter=skip_counter,
                                 num_joints=int(self.config.model.num_joints))

    def loss(self, model, batch):
        from prtr_tf.models.end_to_end import loss
        return loss(model, batch, self.config.loss, training=True)

    def evaluate(self, model, stream):
        """COCO keypoint AP on the validation split, persons from the model itself."""
        from prtr_tf.e2e_inference import evaluate
        return evaluate(model, self.config, split="val", stream=stream)


TASKS = {"prtr": KeypointTask, "detr": DetectionTask, "prtr_e2e": EndToEndTask}


def make_task(config):
    kind = config.model.get("kind", "prtr")
    if kind not in TASKS:
        raise ValueError(f"unknown config.model.kind {kind!r}: expected one of {tuple(TASKS)}")
    return TASKS[kind](config)
