"""Drawing poses on images, and the paper's query-analysis figures.

- `draw_poses`: person boxes, person and box scores, skeleton limbs (left / right /
  centre in different colours) and the joints (faint below a score threshold), on a
  PIL image.
- `plot_decoder_refinement` (paper Figure 4): for one crop, where each decoder
  layer puts the queries that the readout of the *last* layer assigns to the
  joints (`decoder_trajectories`), drawn as one trajectory per joint.
- `plot_query_class_distribution` (paper Figures 5 and 7): over a set of crops,
  how often each query's argmax class is each joint or background
  (`query_class_counts`), as a heatmap or stacked bars.

The figures use matplotlib with the Agg backend (no display needed) and are saved
as PNG files.
"""
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from prtr_tf.data.keypoint_sets import DATASETS
from prtr_tf.models.keypoint.readout import readout

LEFT_COLOR = (255, 140, 0)      # orange
RIGHT_COLOR = (0, 160, 255)     # blue
CENTER_COLOR = (60, 220, 60)    # green
BOX_COLOR = (255, 0, 255)       # magenta


def default_joint_names(num_joints):
    """The joint names of the dataset with ``num_joints`` joints, else None."""
    for spec in DATASETS.values():
        if len(spec["joints"]) == num_joints:
            return tuple(spec["joints"])
    return None


def _side(name):
    name = (name or "").lower()
    if name.startswith("left") or name.startswith("l_"):
        return "left"
    if name.startswith("right") or name.startswith("r_"):
        return "right"
    return "center"


def _side_color(side):
    return {"left": LEFT_COLOR, "right": RIGHT_COLOR}.get(side, CENTER_COLOR)


def _to_pil_rgb(image):
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got {array.dtype}")
    return Image.fromarray(array[..., :3], "RGB")


def draw_poses(image, persons, skeleton, kpt_thr=0.3, box_thr=0.0, joint_names=None,
               faint=0.35, color_of=None):
    """Returns a new RGB PIL image with ``persons`` drawn on ``image``.

    Params:
        image: PIL image or uint8 array (H, W, 3) / (H, W); not modified.
        persons: dicts with ``box`` [x1, y1, x2, y2] (optional), ``score``,
            ``box_score`` (optional, the detector's) and ``keypoints`` (J, 3)
            [x, y, score] in the image's pixels (the output of
            `prtr_tf.serving.estimator.PoseEstimator`).
        skeleton: pairs (a, b) of joint indices joined by a limb.
        kpt_thr: joints scoring below it (and limbs touching them) are drawn faint
            and thin, so that a low-confidence model still shows its guess.
        box_thr: persons whose ``score`` is below it are not drawn at all.
        joint_names: names of the J joints; "left*" / "right*" names (COCO and
            MPII convention) colour joints and limbs by side, others are centre.
            Default: the names of the dataset with J joints, if any.
        faint: opacity of the joints and limbs below ``kpt_thr`` (0 hides them).
        color_of: None, or callable(person) -> RGB colour of that person (e.g. per
            track id, `prtr_tf.inference.tracking.track_color`): its box, label and
            limbs are drawn in it (joints keep their left/right colours), and a
            person's ``track_id`` (when not None) leads its label ("#3 0.71 | ...").

    Each box is labelled with the person score and, when given, the box score
    ("0.71 | box 0.94") in a font sized to the image; labels of stacked boxes are
    moved so that they do not overlap.
    """
    canvas = _to_pil_rgb(image).copy()
    width, height = canvas.size
    side_px = min(width, height)
    radius = max(2, int(round(side_px / 120)))
    line = max(1, int(round(side_px / 200)))
    font = _font(max(10, int(round(side_px / 22))))
    strong = ImageDraw.Draw(canvas)
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    weak = ImageDraw.Draw(overlay)
    weak_fill = int(round(255 * float(np.clip(faint, 0.0, 1.0))))
    labels, placed = [], []
    for person in persons:
        score = float(person.get("score", 1.0))
        if score < box_thr:
            continue
        kpts = np.asarray(person["keypoints"], np.float64).reshape(-1, 3)
        names = joint_names if joint_names is not None else default_joint_names(len(kpts))
        sides = [_side(names[j]) if names is not None and j < len(names) else "center"
                 for j in range(len(kpts))]
        own = None if color_of is None else tuple(int(c) for c in color_of(person))
        box = person.get("box")
        if box is not None:
            x1, y1, x2, y2 = (float(v) for v in box)
            strong.rectangle([x1, y1, x2, y2], outline=own or BOX_COLOR, width=line)
            label = f"{score:.2f}"
            if person.get("box_score") is not None:
                label += f" | box {float(person['box_score']):.2f}"
            if color_of is not None and person.get("track_id") is not None:
                label = f"#{int(person['track_id'])} {label}"
            labels.append((label, x1, y1, y2, own or BOX_COLOR))
        finite = np.isfinite(kpts).all(axis=1)
        visible = finite & (kpts[:, 2] >= kpt_thr)
        for a, b in skeleton:
            if a >= len(kpts) or b >= len(kpts) or not (finite[a] and finite[b]):
                continue
            side = sides[a] if sides[a] == sides[b] else (
                sides[a] if sides[b] == "center" else sides[b] if sides[a] == "center"
                else "center")
            ends = [tuple(kpts[a, :2]), tuple(kpts[b, :2])]
            limb = own or _side_color(side)
            if visible[a] and visible[b]:
                strong.line(ends, fill=limb, width=line + 1)
            elif weak_fill:
                weak.line(ends, fill=limb + (weak_fill,), width=line)
        for j in np.flatnonzero(finite):
            x, y = kpts[j, :2]
            if visible[j]:
                strong.ellipse([x - radius, y - radius, x + radius, y + radius],
                               fill=_side_color(sides[j]), outline=(255, 255, 255))
            elif weak_fill:
                r = max(1.0, 0.7 * radius)
                weak.ellipse([x - r, y - r, x + r, y + r],
                             fill=_side_color(sides[j]) + (weak_fill,))
    if weak_fill:
        canvas = Image.alpha_composite(canvas.convert("RGBA"), overlay).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    for label, x1, y1, y2, color in labels:
        _draw_label(draw, label, x1, y1, y2, font, line, placed, (width, height), color)
    return canvas


def _font(size):
    """Pillow's default font at ``size`` px (FreeType, Pillow >= 10.1), else the bitmap."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow: one bitmap size
        return ImageFont.load_default()


def _draw_label(draw, label, x1, y1, y2, font, line, placed, size, color=BOX_COLOR):
    """A box's label on a dark plate: above the box, else inside its top, moved down
    past the labels already ``placed`` (their rectangles, appended to)."""
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    w, h = right - left + 2 * line + 2, bottom - top + 2 * line + 2
    x = min(max(0.0, x1), max(0.0, size[0] - w))
    y = y1 - h if y1 - h >= 0 else max(0.0, y1)
    for _ in range(len(placed) + 1):
        hit = [r for r in placed if x < r[2] and r[0] < x + w and y < r[3] and r[1] < y + h]
        if not hit:
            break
        y = max(r[3] for r in hit)
    y = min(y, max(0.0, size[1] - h))
    placed.append((x, y, x + w, y + h))
    draw.rectangle([x, y, x + w, y + h], fill=(0, 0, 0))
    draw.text((x + line + 1 - left, y + line + 1 - top), label, fill=color, font=font)


def denormalize_crop(crop, config):
    """A model input crop (H, W, 3) float, normalised as ``config.data`` (and BGR for
    configs with ``color_rgb`` False) -> RGB uint8 for display."""
    data = config.data
    crop = np.asarray(crop, np.float64)
    rgb = (crop * np.asarray(data.std) + np.asarray(data.mean)) * 255.0
    if not bool(data.color_rgb):
        rgb = rgb[..., ::-1]
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def decoder_trajectories(outputs, index=0):
    """Per-layer coordinates of the queries that the final layer's readout picks.

    Params:
        outputs: the keypoint model's output dict (``pred_logits`` (B, Q, J+1),
            ``pred_coords`` (B, Q, 2), ``aux_pred_coords`` (L-1, B, Q, 2)).
        index: which crop of the batch.

    Returns a dict: ``query`` (J,) the matched query of each joint (readout of the
    last layer, `prtr_tf.models.keypoint.readout.readout`), ``scores`` (J,), and ``coords``
    (J, L, 2) normalised (x, y) of that query after decoder layers 1..L.
    """

    logits = np.asarray(outputs["pred_logits"])[index:index + 1]
    final = np.asarray(outputs["pred_coords"])
    aux = outputs.get("aux_pred_coords")
    layers = [final[None]] if aux is None or np.size(aux) == 0 else \
        [np.asarray(aux), final[None]]
    coords = np.concatenate(layers, axis=0)[:, index]                   # (L, Q, 2)
    result = readout(logits, final[index:index + 1])
    query = result["query"].numpy()[0]
    return {"query": query, "scores": result["scores"].numpy()[0],
            "coords": np.transpose(coords[:, query], (1, 0, 2))}       # (J, L, 2)


def plot_decoder_refinement(crop, outputs, path, index=0, joint_names=None, kpt_thr=0.0,
                            title=None):
    """Paper Figure 4: decoder-layer trajectories of the matched queries on one crop.

    Params:
        crop: the crop to draw on, RGB uint8 (H, W, 3) (see `denormalize_crop`).
        outputs: the keypoint model's outputs on a batch holding that crop.
        path: where to save the PNG.
        index: the crop's position in the batch.
        joint_names: legend labels (default: the dataset's with J joints).
        kpt_thr: joints whose final score is below it are left out.

    Each joint's query is drawn from layer 1 (small, faint) to layer L (large,
    outlined) in the joint's side colour. Returns `decoder_trajectories`' dict
    with ``coords_px`` (J, L, 2) added: what was drawn.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    crop = np.asarray(crop)
    height, width = crop.shape[:2]
    traj = decoder_trajectories(outputs, index)
    px = traj["coords"] * np.array([width, height], np.float64)
    traj["coords_px"] = px
    num_joints, num_layers = px.shape[:2]
    names = joint_names if joint_names is not None else default_joint_names(num_joints)
    fig, ax = plt.subplots(figsize=(4.0 * width / max(height, width) + 2.5,
                                    4.0 * height / max(height, width) + 0.5), dpi=100)
    ax.imshow(crop)
    sizes = np.linspace(8, 40, num_layers)
    alphas = np.linspace(0.35, 1.0, num_layers)
    for j in range(num_joints):
        if traj["scores"][j] < kpt_thr:
            continue
        side = _side(names[j]) if names is not None and j < len(names) else "center"
        color = np.array(_side_color(side)) / 255.0
        label = names[j] if names is not None and j < len(names) else f"joint {j}"
        ax.plot(px[j, :, 0], px[j, :, 1], "-", color=color, linewidth=1.0, alpha=0.8)
        for layer in range(num_layers):
            last = layer == num_layers - 1
            ax.scatter(px[j, layer, 0], px[j, layer, 1], s=sizes[layer], color=color,
                       alpha=alphas[layer], edgecolors="white" if last else "none",
                       linewidths=0.8, label=f"{label} (q{traj['query'][j]})" if last else None,
                       zorder=3)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"matched queries over {num_layers} decoder layers", fontsize=8)
    ax.legend(fontsize=5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return traj


def query_class_counts(pred_logits):
    """pred_logits (N, Q, J+1) (or a list of such batches) -> int64 counts (Q, J+1):
    how many of the N crops give query q the argmax class c (background last)."""
    if isinstance(pred_logits, (list, tuple)):
        pred_logits = np.concatenate([np.asarray(p) for p in pred_logits], axis=0)
    logits = np.asarray(pred_logits)
    num_queries, num_classes = logits.shape[1:]
    top = np.argmax(logits, axis=-1)                                    # (N, Q)
    counts = np.zeros((num_queries, num_classes), np.int64)
    for q in range(num_queries):
        counts[q] = np.bincount(top[:, q], minlength=num_classes)
    return counts


def plot_query_class_distribution(pred_logits, path, joint_names=None, kind="heatmap",
                                  title=None):
    """Paper Figures 5 / 7: each query's distribution of argmax classes over crops.

    Params:
        pred_logits: (N, Q, J+1) final-layer logits of the keypoint model over N
            crops (or a list of batches).
        path: where to save the PNG.
        joint_names: class labels for the J joints ("background" is added).
        kind: "heatmap" (Q x (J+1) fractions) or "bar" (one stacked bar per query).

    Returns the counts (Q, J+1) that were plotted (`query_class_counts`).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if kind not in ("heatmap", "bar"):
        raise ValueError(f"kind must be 'heatmap' or 'bar', got {kind!r}")
    counts = query_class_counts(pred_logits)
    num_queries, num_classes = counts.shape
    names = joint_names if joint_names is not None else default_joint_names(num_classes - 1)
    labels = (list(names) if names is not None else
              [f"joint {j}" for j in range(num_classes - 1)]) + ["background"]
    frac = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = int(counts[0].sum())
    if kind == "heatmap":
        fig, ax = plt.subplots(figsize=(0.3 * num_classes + 2.5, 0.18 * num_queries + 1.8),
                               dpi=100)
        im = ax.imshow(frac, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
                       interpolation="nearest")
        ax.set_xticks(range(num_classes))
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
        ax.set_yticks(range(num_queries))
        ax.set_yticklabels([str(q) for q in range(num_queries)], fontsize=5)
        ax.set_xlabel("argmax class")
        ax.set_ylabel("query")
        fig.colorbar(im, ax=ax, label="fraction of crops")
    else:
        fig, ax = plt.subplots(figsize=(0.2 * num_queries + 4.0, 4.0), dpi=100)
        colors = plt.get_cmap("tab20")(np.arange(num_classes) % 20)
        colors[-1] = (0.75, 0.75, 0.75, 1.0)    # background in grey
        bottom = np.zeros(num_queries)
        for c in range(num_classes):
            ax.bar(np.arange(num_queries), frac[:, c], bottom=bottom, color=colors[c],
                   label=labels[c], width=0.85)
            bottom += frac[:, c]
        ax.set_xlabel("query")
        ax.set_ylabel("fraction of crops")
        ax.set_xlim(-0.5, num_queries - 0.5)
        step = max(1, num_queries // 25)
        ax.set_xticks(range(0, num_queries, step))
        ax.legend(fontsize=5, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title(title or f"argmax class per query over {n} crops", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return counts
