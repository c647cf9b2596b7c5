"""Evaluation of a trained model from its config and weights (what ``eval.py`` runs)."""
import os
import sys

from prtr_tf.checkpoints import weights
from prtr_tf.config_checks import validate
from prtr_tf.models import registry


def default_results_path(weights_file, split):
    """``<weights stem>_<split>_results.json`` next to the weights file."""
    stem = os.path.basename(weights_file)[:-len(".weights.h5")]
    return os.path.join(os.path.dirname(weights_file), f"{stem}_{split}_results.json")


def evaluate_checkpoint(config, checkpoint, split="val", results_path=None, stream=None,
                        precision="float32", **options):
    """Loads ``checkpoint`` (a weights file or a workdir) into the model of ``config``
    (any kind) and evaluates it on ``split`` with the kind's metric: keypoint AP (MPII:
    PCKh) for the keypoint Transformer and the end-to-end PRTR, person box AP for the
    detector, computing in ``precision`` (`prtr_tf.nn.precision`). ``options``: the
    kind's ``eval_options`` (e.g. ``det_json``); others are a ValueError, as is a numeric
    config field out of range (`prtr_tf.config_checks.validate`). Returns
    (scores, the metrics table, weights file, results path)."""

    validate(config)  # numeric fields (thresholds, batch size) finite and in range
    kind = registry.get(config)
    unknown = sorted(k for k, v in options.items() if v is not None
                     and k not in kind.eval_options)
    if unknown:
        raise ValueError(f"{', '.join('--' + k for k in unknown)} does not apply to "
                         f"{kind.title} configs")
    model, config, weights_file = weights.load_model(config, checkpoint, precision=precision)
    results_path = results_path or default_results_path(weights_file, split)
    print(f"evaluating {weights_file} ({kind.describe(config)}) on "
          f"{config.data.dataset} {split}", file=stream or sys.stdout, flush=True)
    scores = kind.evaluate(model, config, split, results_path=results_path, stream=stream,
                           **{k: v for k, v in options.items() if v is not None})
    return scores, kind.format_scores(scores, os.path.basename(weights_file)), \
        weights_file, results_path
