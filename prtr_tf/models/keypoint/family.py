"""The two-stage keypoint Transformer family (``model.kind = "prtr"``): PRTR's keypoint
Transformer on person crops (spec §3-§5), with a person detector on whole images."""
from prtr_tf.models.registry import POSE, Family


class KeypointFamily(Family):
    name = "prtr"
    title = "PRTR keypoint Transformer"
    role = POSE
    inputs = "crops"
    needs_detector = True  # on whole images; crops need none
    export_formats = ("saved_model", "tflite", "onnx")
    eval_options = ("use_gt_bbox", "det_json", "flip_test", "gt_mat")
    bfloat16_inference = True  # outputs cast to float32 (prtr_tf.nn.precision)
    metric = "AP"  # or PCKh for MPII (also under 'AP', see evaluate_training)
    loss_keys = ("loss", "loss_ce", "loss_kpt")

    def build(self, model_config):
        from prtr_tf.models.keypoint.model import build_model
        return build_model(model_config)

    def evaluate(self, model, config, split="val", results_path=None, stream=None,
                 use_gt_bbox=None, det_json=None, flip_test=None, gt_mat=None):
        """COCO OKS AP (MPII: PCKh) with ground-truth boxes or a detections JSON."""
        from prtr_tf.models.keypoint.evaluate import validate
        if use_gt_bbox and det_json:
            raise ValueError("use_gt_bbox and det_json exclude each other")
        if det_json is None and not (use_gt_bbox or config.test.use_gt_bbox):
            det_json = config.data.det_json or None
        return validate(model, config, split, flip_test=flip_test, det_json=det_json,
                        results_path=None if config.data.dataset == "mpii" else results_path,
                        stream=stream, gt_mat=gt_mat)

    def format_scores(self, scores, name):
        if "Mean" in scores:  # MPII PCKh
            from prtr_tf.evaluation.mpii import format_table
            return format_table({k: v for k, v in scores.items() if k != "PCKh"}, name=name)
        table = super().format_scores(
            {k: v for k, v in scores.items() if k not in ("PCK@0.2", "AUC", "EPE")}, name)
        if "EPE" in scores:  # custom sets on ground-truth boxes
            from prtr_tf.evaluation import pck
            table += "\n\n" + pck.format_table(scores, name=name)
        return table

    def serving(self, model, config, detector=None, detector_config=None, **options):
        from prtr_tf.models.keypoint.serving import PoseServing
        # None: PoseServing's default (score threshold, max persons, the config's flip test).
        options = {k: v for k, v in options.items() if v is not None}
        return PoseServing(model, config, detector, detector_config, **options)

    def estimator(self, model, config, detector=None, **options):
        from prtr_tf.serving.estimator import PoseEstimator
        return PoseEstimator(model, config, detector=detector, **options)

    # ---- training (bound to self.config)

    def load_records(self, split, skip_counter):
        from prtr_tf.data.splits import load_records
        return load_records(self.config, split, skip_counter=skip_counter)

    def train_dataset(self, records, seed, batch, skip_counter):
        from prtr_tf.models.keypoint.data import build_dataset
        return build_dataset(records, self.config, training=True, deterministic=True,
                             seed=seed, batch=batch, drop_remainder=True,
                             skip_counter=skip_counter)

    def loss(self, model, batch):
        from prtr_tf.models.keypoint.loss import match_outputs, set_loss
        c = self.config.loss
        outputs = model(batch["image"], training=True)
        indices = match_outputs(outputs, batch["target"], c.cost_class, c.cost_coord)
        return set_loss(outputs, batch["target"], batch["target_weight"], indices=indices,
                        eos_coef=c.eos_coef, ce_coef=c.ce_loss_coef, kpt_coef=c.kpt_loss_coef)

    def evaluate_training(self, model, stream):
        """COCO keypoint AP with ground-truth boxes (MPII: PCKh, also under 'AP')."""
        from prtr_tf.models.keypoint.evaluate import validate
        scores = validate(model, self.config, split="val", flip_test=False, stream=stream)
        if "PCKh" in scores:
            scores["AP"] = scores["PCKh"]
        return scores


FAMILY = KeypointFamily()
