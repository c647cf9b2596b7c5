"""The model families, and the only reader of ``config.model.kind``.

Every config declares its family in ``config.model.kind``:

=============== ============================================ ==================================
kind            model                                        module
=============== ============================================ ==================================
prtr            two-stage keypoint Transformer (on crops)    `prtr_tf.models.keypoint.family`
prtr_deformable deformable keypoint Transformer (on crops)   `prtr_tf.models.keypoint.deformable`
detr            DETR person detector                         `prtr_tf.models.detector.family`
deformable_detr Deformable DETR person detector              `prtr_tf.models.detector.deformable`
prtr_e2e        end-to-end PRTR (detector + STN + keypoints) `prtr_tf.models.end_to_end.family`
=============== ============================================ ==================================

Each of these modules (a family's ``family.py``, or an architecture's file in its
family's folder) defines ``FAMILY``, an instance of a `Family` subclass: the
one face of a family. Its attributes say what it is (``role``: a pose model or a person
detector; ``needs_detector``; ``export_formats``; ``eval_options``), its methods build,
evaluate, serve and import the model, and the same object bound to a config
(`Family.bind`, `make_task`) is the training task the trainer runs. Callers ask these
attributes (`families`, `require`); none compares kind names. Adding a family: one
folder under ``prtr_tf/models/`` with a ``family.py`` and one line in `FAMILIES`
(docs/layout.md has the checklist).
"""
import importlib

FAMILIES = {
    "prtr": "prtr_tf.models.keypoint.family",
    "prtr_deformable": "prtr_tf.models.keypoint.deformable",
    "detr": "prtr_tf.models.detector.family",
    "deformable_detr": "prtr_tf.models.detector.deformable",
    "prtr_e2e": "prtr_tf.models.end_to_end.family",
}

POSE = "pose"  # a family's role: predicts poses (on crops or whole images)
DETECTOR = "detector"  # finds person boxes for a pose model


class Family:
    """The interface of a model family (see the module docstring); subclasses override
    what their family supports, the rest raises a ValueError that says so.

    Unbound (``FAMILY``), it answers about any config of the family; bound to one
    config (`bind`), it is also that config's training task: `build_model`,
    `load_records`, `train_dataset`, `loss`, `evaluate_training` (what
    `prtr_tf.training.trainer.Trainer` runs), reading ``self.config``."""

    name = None  # the config.model.kind value
    title = None  # e.g. "PRTR keypoint Transformer"
    role = POSE  # POSE or DETECTOR
    inputs = "images"  # what the model reads: "images" (whole) or "crops" (person crops)
    needs_detector = False  # on whole images it needs a separate person detector
    export_formats = ()  # the prtr-export formats whose --config (or --detector_config) it is
    eval_options = ()  # eval.py options that apply (beyond --split and --output)
    bfloat16_inference = False  # load_model(precision="bfloat16") builds it so
    metric = "AP"  # the validation metric that picks the best checkpoint
    loss_keys = ("loss",)  # the loss terms logged during training

    def __init__(self, config=None):
        self.config = config

    def bind(self, config):
        """This family bound to ``config``: its training task."""
        return type(self)(config)

    def backbone(self, model_config):
        return model_config.backbone

    def describe(self, config):
        """One line: the family, its backbone and joints, for logs and errors."""
        joints = config.model.get("num_joints")
        return (f"{self.title} ({self.backbone(config.model)}"
                + (f", {joints} joints)" if joints else ")"))

    def build(self, model_config):
        """The built (initialised) Keras model of ``config.model``."""
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
        """(the built model with an official checkpoint's tensors loaded, the number of
        tensors used); unknown, missing or mis-shaped tensors raise an error naming
        them (`prtr_tf.checkpoints.torch_import.load_state_dict`)."""
        # Lazy: the registry is imported by the command lines before TensorFlow.
        from prtr_tf.checkpoints.torch_import import load_state_dict
        model = self.build(model_config)
        return model, load_state_dict(model, state_dict)

    # ---- the training task (bound to self.config)

    def build_model(self):
        """The model to train (`build` of the bound config; families may also load
        initial weights here)."""
        return self.build(self.config.model)

    def load_records(self, split, skip_counter):
        raise ValueError(f"{self.title} configs cannot be trained")

    def train_dataset(self, records, seed, batch, skip_counter):
        raise ValueError(f"{self.title} configs cannot be trained")

    def loss(self, model, batch):
        """The dict of loss terms (`loss_keys`) of one training batch."""
        raise ValueError(f"{self.title} configs cannot be trained")

    def evaluate_training(self, model, stream):
        """The validation metrics after an epoch (`metric` among them)."""
        return self.evaluate(model, self.config, "val", stream=stream)


def kind_name(config):
    """``config.model.kind``, checked."""
    model = config.get("model") if hasattr(config, "get") else None
    name = None if model is None else model.get("kind")
    if name is None:
        raise ValueError("config.model.kind is missing: every config declares its kind, "
                         f"one of {tuple(FAMILIES)} (see configs/)")
    if name not in FAMILIES:
        raise ValueError(f"unknown config.model.kind {name!r}: expected one of "
                         f"{tuple(FAMILIES)}")
    return name


def get(config):
    """The `Family` of a config (or of a kind name). A config's keypoint set is resolved
    first (`prtr_tf.data.keypoint_sets.resolve`: a custom config's joints come from its
    annotation file), so that everything built from it has its joints."""
    name = config if isinstance(config, str) else kind_name(config)
    if not isinstance(config, str):
        from prtr_tf.data import keypoint_sets
        keypoint_sets.resolve(config)
    if name not in FAMILIES:
        raise ValueError(f"unknown model kind {name!r}: expected one of {tuple(FAMILIES)}")
    return importlib.import_module(FAMILIES[name]).FAMILY


def families(role=None, export_format=None):
    """The families with ``role`` and offering ``export_format`` (None: any)."""
    found = [get(name) for name in FAMILIES]
    return [f for f in found if (role is None or f.role == role)
            and (export_format is None or export_format in f.export_formats)]


def titles(found):
    """The families' titles for a message: "A", "A or B", "A, B or C"."""
    names = [f.title for f in found]
    return " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]


def require(config, label, use, role=None, export_format=None):
    """The family of ``config`` (given as ``label``, e.g. "--config"), which must have
    ``role`` and offer ``export_format``; otherwise a ValueError: "<label> is a <title>
    config (model.kind ...); <use> needs a <titles> config"."""
    family = get(config)
    if (role is None or family.role == role) and (
            export_format is None or export_format in family.export_formats):
        return family
    expected = titles(families(role, export_format))  # all families imported: message only
    raise ValueError(f"{label} is a {family.title} config (model.kind {family.name!r}); "
                     f"{use} needs a {expected} config")


def build_model(config):
    """The built model of any config."""
    return get(config).build(config.model)


def make_task(config):
    """The training task of any config: its family bound to it."""
    return get(config).bind(config)
