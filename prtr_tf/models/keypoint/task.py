"""Training task of the two-stage keypoint Transformer on person crops (spec §3-§5):
what `prtr_tf.training.trainer.Trainer` needs of it."""


class KeypointTask:
    metric = "AP"  # or PCKh for MPII, see `evaluate`
    loss_keys = ("loss", "loss_ce", "loss_kpt")

    def __init__(self, config):
        self.config = config

    def build_model(self):
        from prtr_tf.models.keypoint.model import build_model
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
        from prtr_tf.models.keypoint.loss import match_outputs, set_loss
        c = self.config.loss
        outputs = model(batch["image"], training=True)
        indices = match_outputs(outputs, batch["target"], c.cost_class, c.cost_coord)
        return set_loss(outputs, batch["target"], batch["target_weight"], indices=indices,
                        eos_coef=c.eos_coef, ce_coef=c.ce_loss_coef, kpt_coef=c.kpt_loss_coef)

    def evaluate(self, model, stream):
        """COCO keypoint AP with ground-truth boxes (MPII: PCKh, also under 'AP')."""
        from prtr_tf.models.keypoint.evaluate import validate
        scores = validate(model, self.config, split="val", flip_test=False, stream=stream)
        if "PCKh" in scores:
            scores["AP"] = scores["PCKh"]
        return scores
