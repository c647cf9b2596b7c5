"""The numeric fields of a config checked (finite, in range) before any work: `validate`.

A user sets them in the config file or with ``--config.FIELD=VALUE`` overrides on
train.py and eval.py, where ml_collections checks only the type: a NaN learning
rate, ``--config.train.epochs=-1`` or a threshold of 1.5 would otherwise train or
evaluate silently wrong. `RANGES` is the table, field -> `Range`; fields a config does
not have (e.g. ``test.score_thre`` outside detector configs) are not checked.
"""
import math
from typing import NamedTuple

from absl import app


class Range(NamedTuple):
    """The values allowed: ``low`` <= value (< with ``open_low``) <= ``high``; None: no
    bound; ``integer``: a whole number."""
    low: float = None
    high: float = None
    open_low: bool = False
    integer: bool = False


POSITIVE = Range(0, open_low=True)
NON_NEGATIVE = Range(0)
COUNT = Range(1, integer=True)  # at least one
STEPS = Range(0, integer=True)  # 0: off / the default
PROBABILITY = Range(0, 1)

RANGES = {
    "train.lr": POSITIVE,
    "train.lr_backbone": NON_NEGATIVE,  # 0: a frozen backbone
    "train.lr_factor": POSITIVE,
    "train.epochs": COUNT,
    "train.batch_size": COUNT,
    "train.steps_per_epoch": STEPS,  # 0: one pass over the training set
    "train.warmup_steps": STEPS,
    "train.weight_decay": NON_NEGATIVE,
    "train.adam_epsilon": POSITIVE,
    "train.clip_norm": NON_NEGATIVE,  # 0: no clipping
    "train.log_every_steps": COUNT,
    "train.checkpoint_every_steps": STEPS,  # 0: at the end of each epoch only
    "train.eval_every_epochs": STEPS,  # 0: never
    "train.loss_scale_initial": POSITIVE,
    "train.loss_scale_growth_steps": COUNT,
    "test.batch_size": COUNT,
    "test.score_thre": PROBABILITY,
    "test.image_thre": PROBABILITY,
    "test.in_vis_thre": PROBABILITY,
    "test.oks_thre": PROBABILITY,
    "model.person_threshold": PROBABILITY,
}


class ConfigValueError(app.UsageError, ValueError):
    """A config field out of its range: a ValueError for library callers, a usage error
    (one line, exit 2) in the command-line tools (`prtr_tf.cli.common.run`)."""

    def __init__(self, message):
        super().__init__(message, exitcode=2)


def _get(config, field):
    """The value of the dotted ``field`` of ``config``, or None when it has none."""
    node = config
    for part in field.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError, AttributeError):
            return None
    return node


def _span(r):
    low = None if r.low is None else f"{'>' if r.open_low else '>='} {r.low}"
    if r.low is not None and r.high is not None and not r.open_low:
        return f"between {r.low} and {r.high}"
    high = None if r.high is None else f"<= {r.high}"
    return " and ".join(s for s in (low, high) if s)


def check_field(field, value, r):
    """A `ConfigValueError` naming ``config.FIELD`` unless ``value`` fits ``r``."""
    if value is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if (not number or not math.isfinite(value) or (r.integer and value != int(value))
            or (r.low is not None and (value <= r.low if r.open_low else value < r.low))
            or (r.high is not None and value > r.high)):
        raise ConfigValueError(
            f"config.{field}={value!r}: must be a {'whole ' if r.integer else 'finite '}"
            f"number {_span(r)} (set in the config file or with --config.{field}=...)")


def validate(config, ranges=None):
    """Checks every field of ``ranges`` (default `RANGES`) that ``config`` has; the
    first out of range is a `ConfigValueError` naming it. Returns ``config``."""
    for field, r in (RANGES if ranges is None else ranges).items():
        check_field(field, _get(config, field), r)
    return config
