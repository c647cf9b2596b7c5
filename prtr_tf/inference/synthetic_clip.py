"""A synthetic clip of moving stick figures with known identities, for testing the
tracker, the smoother and the video I/O without a model.

The figures are drawn by `prtr_tf.data.synthetic` (the training set's stick figures,
17 COCO joints). Four persons on a fixed background (default 400x240, 60 frames at
15 fps):

  * id 1 walks left to right and id 2 right to left at nearly the same height: their
    paths cross mid-clip (id 1 passes in front, their boxes overlap heavily);
  * id 3 walks out through the right border, is out of the picture for about ten
    frames and walks back in where it left;
  * id 4 stands still (its ground truth is constant: the jitter reference).

Walkers swing their arms and legs. Ground truth per frame and person: ``id``, ``box``
[x1, y1, x2, y2] (the figure's pixels inside the frame), ``full_box`` (the whole
figure, also outside the frame), ``keypoints`` (17, 3) [x, y,
v] with the true position even outside the frame and v = 2 visible, 1 covered by a
figure in front, 0 outside the frame (or a face joint of a figure seen from the back).

    clip = make_clip()                          # frames + ground truth
    dets = detections(clip.gt, noise_px=2.0, rng=np.random.default_rng(0))
"""
import dataclasses

import numpy as np
from PIL import Image, ImageDraw

from prtr_tf.data import synthetic as stick

ID_CROSS_RIGHT, ID_CROSS_LEFT, ID_REENTER, ID_STILL = 1, 2, 3, 4
VISIBLE_SCORE = {2: 0.9, 1: 0.6, 0: 0.05}  # keypoint score given to each v in detections


@dataclasses.dataclass
class SyntheticClip:
    frames: list            # RGB uint8 (H, W, 3) per frame (empty with render=False)
    gt: list                # per frame: list of {"id", "box", "keypoints" (17, 3)}
    fps: float
    size: tuple             # (width, height)


def _upright_pose(rng, height):
    """A random front-facing, nearly upright pose (`prtr_tf.data.synthetic.random_pose`)."""
    for _ in range(1000):
        joints, params = stick.random_pose(rng, height)
        shoulders = (joints[stick.L_SHO] + joints[stick.R_SHO]) / 2
        hips = (joints[stick.L_HIP] + joints[stick.R_HIP]) / 2
        up = shoulders - hips
        tilt = abs(np.arctan2(up[0], -up[1]))
        if params["front"] and tilt < 0.2:
            return joints, params
    raise RuntimeError("no upright pose drawn")  # pragma: no cover


def _rotate(points, pivot, angle):
    c, s = np.cos(angle), np.sin(angle)
    d = points - pivot
    return pivot + np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], -1)


def _swing(joints, angle):
    """Legs and arms swung by ``angle`` (radians) in opposite phases."""
    j = joints.copy()
    for root, chain, sign in ((stick.L_HIP, [stick.L_KNEE, stick.L_ANK], 1),
                              (stick.R_HIP, [stick.R_KNEE, stick.R_ANK], -1),
                              (stick.L_SHO, [stick.L_ELB, stick.L_WRI], -0.8),
                              (stick.R_SHO, [stick.R_ELB, stick.R_WRI], 0.8)):
        j[chain] = _rotate(j[chain], j[root], sign * angle)
    return j


def _paths(num_frames, width, height):
    """Per person: (figure height, centre (T, 2), swing amplitude)."""
    t = np.arange(num_frames, dtype=np.float64)
    mid = num_frames / 2
    span = 0.45 * width
    x1 = width / 2 - span / 2 + span * t / (num_frames - 1)
    x2 = width / 2 + span / 2 - span * t / (num_frames - 1)
    y_walk = 0.67 * height
    peak = width + 0.15 * width                        # centre beyond the right border
    start = 0.82 * width
    speed = (peak - start) / (mid - 4)
    x3 = np.where(t <= mid - 4, start + speed * t, peak - speed * (t - (mid - 4)))
    return {
        ID_CROSS_RIGHT: (0.46 * height, np.stack([x1, np.full_like(t, y_walk)], -1), 0.35),
        ID_CROSS_LEFT: (0.42 * height, np.stack([x2, np.full_like(t, y_walk + 4)], -1), 0.35),
        ID_REENTER: (0.38 * height, np.stack([x3, np.full_like(t, 0.3 * height)], -1), 0.3),
        ID_STILL: (0.42 * height, np.tile([0.1 * width, 0.62 * height], (num_frames, 1)), 0.0),
    }


def make_clip(num_frames=60, size=(400, 240), fps=15.0, seed=0, render=True):
    """The clip described in the module docstring; ``render=False`` skips the frames
    (ground truth only, which still needs the figures' masks)."""
    width, height = size
    rng = np.random.default_rng(seed)
    background = stick._background(rng, height, width)
    paths = _paths(num_frames, width, height)
    figures = {}
    for pid, (fig_h, centre, amp) in paths.items():
        joints, params = _upright_pose(rng, fig_h)
        lo, hi = joints.min(0), joints.max(0)
        mid = (lo + hi) / 2
        params["torso"] = tuple(int(v) for v in np.clip(rng.uniform(150, 235, 3), 0, 255))
        figures[pid] = (joints - mid, params, params["head"] - mid, amp)
    draw_order = [ID_STILL, ID_REENTER, ID_CROSS_LEFT, ID_CROSS_RIGHT]  # back to front
    frames, gt = [], []
    for k in range(num_frames):
        image = Image.fromarray(background.copy()) if render else None
        draw = ImageDraw.Draw(image) if render else None
        owner = np.zeros((height, width), np.int32)
        placed = []
        for rank, pid in enumerate(draw_order, 1):
            base, params, head, amp = figures[pid]
            centre = paths[pid][1][k]
            swing = amp * np.sin(2 * np.pi * k / 16.0 + pid)
            joints = _swing(base, swing) + centre
            p = dict(params, head=head + centre)
            mask_image = Image.new("L", (width, height), 0)
            stick._draw_figure(ImageDraw.Draw(mask_image), joints, p, lambda rgb: 255)
            mask = np.asarray(mask_image) > 0
            if render:
                stick._draw_figure(draw, joints, p, lambda rgb: tuple(int(c) for c in rgb))
            if not mask.any():
                continue  # outside the frame
            owner[mask] = rank
            placed.append((pid, rank, joints, p, mask))
        people = []
        for pid, rank, joints, p, mask in placed:
            ys, xs = np.nonzero(mask)
            kps = np.zeros((17, 3))
            kps[:, :2] = joints
            for j, (x, y) in enumerate(joints):
                if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
                    continue
                kps[j, 2] = 1 if owner[int(round(y)), int(round(x))] > rank else 2
            half = p["width"] / 2
            lo = np.minimum(joints.min(0) - half, p["head"] - p["radius"])
            hi = np.maximum(joints.max(0) + half, p["head"] + p["radius"])
            people.append({"id": pid, "box": [float(xs.min()), float(ys.min()),
                                              float(xs.max() + 1), float(ys.max() + 1)],
                           "full_box": [float(v) for v in (*lo, *hi)],
                           "keypoints": kps})
        gt.append(sorted(people, key=lambda q: q["id"]))
        if render:
            frames.append(np.asarray(image))
    return SyntheticClip(frames, gt, float(fps), (width, height))


def detections(gt, noise_px=0.0, drop=(), rng=None, shuffle=True, min_visible=0.3):
    """Ground truth -> detector-like person dicts per frame, and the true id of each.

    Args:
      noise_px: Gaussian noise (pixels, std) on keypoints and box corners.
      drop: (frame, id) pairs whose detection is left out (missed detections).
      shuffle: random order of the persons in each frame (a tracker must not rely on
        the order).
      min_visible: persons with less than this fraction of their whole box inside
        the frame are not detected (a detector misses a sliver of arm at the border).

    Returns (persons per frame, ids per frame) with persons as `PoseEstimator` gives
    them: ``box``, ``score``, ``box_score``, ``keypoints`` (17, 3) [x, y, score].
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    drop = set(drop)
    all_persons, all_ids = [], []
    for k, people in enumerate(gt):
        persons, ids = [], []
        for q in people:
            x1, y1, x2, y2 = q["box"]
            f1, g1, f2, g2 = q["full_box"]
            visible = (x2 - x1) * (y2 - y1) / max((f2 - f1) * (g2 - g1), 1e-9)
            if (k, q["id"]) in drop or visible < min_visible:
                continue
            kps = np.array(q["keypoints"], np.float64)
            scores = np.array([VISIBLE_SCORE[int(v)] for v in kps[:, 2]])
            xy = kps[:, :2] + (rng.normal(0, noise_px, (17, 2)) if noise_px else 0.0)
            box = np.array(q["box"], np.float64) + (rng.normal(0, noise_px, 4)
                                                     if noise_px else 0.0)
            persons.append({"box": box.tolist(), "score": 0.9, "box_score": 0.95,
                            "keypoints": np.concatenate([xy, scores[:, None]], -1)})
            ids.append(q["id"])
        if shuffle and persons:
            order = rng.permutation(len(persons))
            persons, ids = [persons[i] for i in order], [ids[i] for i in order]
        all_persons.append(persons)
        all_ids.append(ids)
    return all_persons, all_ids
