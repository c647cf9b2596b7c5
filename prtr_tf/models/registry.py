"""The model kinds, and the only reader of ``config.model.kind``.

Every config declares its kind in ``config.model.kind``:

========== ============================================ ======================
kind       model                                        package
========== ============================================ ======================
prtr       two-stage keypoint Transformer (on crops)    `prtr_tf.models.keypoint`
detr       DETR person detector                         `prtr_tf.models.detector`
prtr_e2e   end-to-end PRTR (detector + STN + keypoints) `prtr_tf.models.end_to_end`
========== ============================================ ======================

Each package's ``kind.py`` defines ``KIND``, an instance of a `Kind` subclass: what
the trainer, ``eval.py``, ``predict.py``, the exporters and the checkpoint importer
need of a kind, behind one interface. Adding a kind adds a package and one line in
`KINDS`; no caller branches on the kind.
"""
import importlib

KINDS = {
    "prtr": "prtr_tf.models.keypoint.kind",
    "detr": "prtr_tf.models.detector.kind",
    "prtr_e2e": "prtr_tf.models.end_to_end.kind",
}


class Kind:
    """The interface of a model kind (see the module docstring); subclasses override
    what their kind supports, the rest raises a ValueError that says so."""

    name = None  # the config.model.kind value
    title = None  # e.g. "PRTR keypoint Transformer"
    eval_options = ()  # eval.py options that apply (beyond --split and --output)
    needs_detector = False  # serving / predict need a separate person detector
    bfloat16_inference = False  # load_model(precision="bfloat16") builds it so

    def backbone(self, model_config):
        return model_config.backbone

    def describe(self, config):
        """One line: the kind, its backbone and joints, for logs and errors."""
        joints = config.model.get("num_joints")
        return (f"{self.title} ({self.backbone(config.model)}"
                + (f", {joints} joints)" if joints else ")"))

    def build(self, model_config):
        """The built (initialised) Keras model of ``config.model``."""
        raise NotImplementedError

    def task(self, config):
        """The training task (`prtr_tf.training.trainer.Trainer` runs it)."""
        raise NotImplementedError

    def evaluate(self, model, config, split="val", results_path=None, stream=None,
                 **options):
        """The validation metrics dict of ``model`` on ``split``; ``options`` only
        those of `eval_options`."""
        raise ValueError(f"{self.title} configs cannot be evaluated")

    def format_scores(self, scores, name):
        """The metrics as the table ``eval.py`` prints."""
        from prtr_tf.evaluation.coco import format_table
        return format_table(scores, name=name)

    def serving(self, model, config, detector=None, detector_config=None, **options):
        """The `tf.Module` whose ``functions()`` a SavedModel export writes."""
        raise ValueError(f"{self.title} models are not exported on their own")

    def estimator(self, model, config, detector=None, **options):
        """A callable image (RGB uint8) [, boxes=..., box_scores=...] -> person dicts
        (what ``predict.py`` runs)."""
        raise ValueError(f"{self.title} models do not predict poses")

    def import_official(self, model_config, state_dict):
        """(built model, state_dict to load into it) for an official checkpoint."""
        return self.build(model_config), state_dict


def kind_name(config):
    """``config.model.kind``, checked."""
    model = config.get("model") if hasattr(config, "get") else None
    name = None if model is None else model.get("kind")
    if name is None:
        raise ValueError("config.model.kind is missing: every config declares its kind, "
                         f"one of {tuple(KINDS)} (see configs/)")
    if name not in KINDS:
        raise ValueError(f"unknown config.model.kind {name!r}: expected one of {tuple(KINDS)}")
    return name


def get(config):
    """The `Kind` of a config (or of a kind name). A config's keypoint set is resolved
    first (`prtr_tf.data.keypoint_sets.resolve`: a custom config's joints come from its
    annotation file), so that everything built from it has its joints."""
    name = config if isinstance(config, str) else kind_name(config)
    if not isinstance(config, str):
        from prtr_tf.data import keypoint_sets
        keypoint_sets.resolve(config)
    if name not in KINDS:
        raise ValueError(f"unknown model kind {name!r}: expected one of {tuple(KINDS)}")
    return importlib.import_module(KINDS[name]).KIND


def build_model(config):
    """The built model of any config."""
    return get(config).build(config.model)


def make_task(config):
    """The training task of any config."""
    return get(config).task(config)
