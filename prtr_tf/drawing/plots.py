"""Learning curves from a training workdir's ``metrics.csv`` (PNG, matplotlib Agg).

- `read_metrics`: the rows of ``metrics.csv`` as floats (blank cells: NaN).
- `plot_learning_curve`: one model's training losses and held-out metric per epoch,
  against epochs; the total training minutes in the axis label.
- `plot_ap_against_minutes`: several models' held-out metric against cumulative
  training minutes, in one figure.
"""
import csv
import math

import numpy as np


def read_metrics(path):
    """{column: float array} of ``metrics.csv`` (one row per epoch; blank cells NaN)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no epoch rows yet (no epoch of that run finished)")
    columns = {}
    for key in rows[0]:
        values = []
        for row in rows:
            try:
                values.append(float(row.get(key) or "nan"))
            except ValueError:
                values.append(math.nan)
        columns[key] = np.asarray(values, np.float64)
    return columns


def minutes(metrics):
    """Cumulative training minutes at the end of each epoch (``epoch_time_s``)."""
    return np.cumsum(np.nan_to_num(metrics.get("epoch_time_s", np.zeros(1)))) / 60.0


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_learning_curve(csv_path, path, title=None, metrics=("AP", "AP .5")):
    """One model's losses (``loss*`` columns, log scale, left) and held-out
    ``metrics`` (right, epochs where they were evaluated) per epoch; saved as a PNG
    at ``path``. Returns the columns read."""
    plt = _plt()
    m = read_metrics(csv_path)
    epochs = m["epoch"]
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    losses = [k for k in m if k == "loss" or k.startswith("loss_")]
    for key in losses:
        ax.plot(epochs, m[key], "-", linewidth=2.0 if key == "loss" else 1.0,
                label=key.replace("_", " "))
    ax.set_yscale("log")
    ax.set_ylabel("training loss (epoch mean)")
    ax.grid(True, alpha=0.3)
    right = ax.twinx()
    shown = [k for k in metrics if k in m and np.isfinite(m[k]).any()]
    for key, style in zip(shown, ("o-", "s--", "^:")):
        ok = np.isfinite(m[key])
        right.plot(epochs[ok], m[key][ok], style, color="black", markersize=4,
                   label=f"held-out {key}")
    right.set_ylim(0.0, 1.0)
    right.set_ylabel("held-out " + " / ".join(shown) if shown else "held-out metric")
    handles = ax.get_legend_handles_labels()
    extra = right.get_legend_handles_labels()
    # Below the axes, in one row: inside, the curves ran under it.
    labels = handles[1] + extra[1]
    fig.legend(handles[0] + extra[0], labels, fontsize=7, loc="lower center",
               ncol=len(labels), frameon=False)
    total = minutes(m)[-1]
    ax.set_title(title or csv_path, fontsize=9)
    ax.set_xlabel(f"epoch ({len(epochs)} epochs, {total:.1f} training minutes)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, format="png")
    plt.close(fig)
    return m


def plot_ap_against_minutes(curves, path, title="held-out AP against training minutes"):
    """``curves``: {label: (csv_path, metric)}; each model's held-out metric against
    its cumulative training minutes. Saved as a PNG at ``path``; returns {label:
    (minutes, values)} of what was drawn."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 3.6), dpi=100)
    drawn = {}
    for label, (csv_path, metric) in curves.items():
        m = read_metrics(csv_path)
        if metric not in m:
            continue
        ok = np.isfinite(m[metric])
        x, y = minutes(m)[ok], m[metric][ok]
        ax.plot(x, y, "o-", markersize=4, label=label)
        drawn[label] = (x, y)
    ax.set_xlabel("training minutes")
    ax.set_ylabel("held-out AP")
    ax.set_ylim(0.0, 1.0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return drawn
