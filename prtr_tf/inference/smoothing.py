"""Temporal smoothing of tracked poses: a One-Euro filter (Casiez, Roussel and Vogel,
CHI 2012) per track and joint, as MediaPipe and TF.js pose-detection smooth landmarks.

    smoother = PoseSmoother(min_cutoff=1.0, beta=2.0)
    for index, t, rgb in source:
        persons = smoother.update(tracker.update(estimator(rgb)), t)

The One-Euro filter is a low-pass filter whose cutoff frequency grows with the speed:
``cutoff = min_cutoff + beta * speed`` (Hz); slow joints are smoothed strongly (less
jitter), fast ones lightly (less lag). As in MediaPipe, the speed is measured in
object sizes per second (the person's box (width + height) / 2), so ``beta`` does not
depend on how large the person appears. ``min_cutoff`` lower: smoother, more lag at
rest; ``beta`` higher: less lag when moving.

Each joint of each track has its own state, updated with NumPy over all joints of a
track at once. Joints scoring below ``kpt_thr`` (or not finite) are passed through
unchanged and do not update their state; a joint unseen for more than ``reset_after_s``
starts afresh, and so does a track unseen that long (its state is dropped). Persons
without a ``track_id`` pass through unchanged.
"""
import numpy as np


def _alpha(cutoff, dt):
    """Smoothing factor of an exponential filter with ``cutoff`` (Hz) at step ``dt``."""
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Vectorised One-Euro filter over N points of D coordinates ((N, D) arrays).

    ``scale`` in `__call__` divides the speed (e.g. the object size, so that ``beta``
    works in object sizes per second); ``valid`` (N,) marks the points to update (the
    others keep their state and come out as given).
    """

    def __init__(self, min_cutoff=1.0, beta=0.0, d_cutoff=1.0, reset_after_s=1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"need min_cutoff > 0, d_cutoff > 0, beta >= 0; got "
                             f"{min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset_after_s = float(reset_after_s)
        self.x = None      # (N, D) filtered values
        self.dx = None     # (N, D) filtered derivatives
        self.t = None      # (N,) time of each point's last update (NaN: never)

    def __call__(self, x, t, valid=None, scale=1.0):
        x = np.asarray(x, np.float64)
        n = x.shape[0]
        valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool).copy()
        valid &= np.all(np.isfinite(x), axis=-1)
        if self.x is None or self.x.shape != x.shape:
            self.x = np.zeros_like(x)
            self.dx = np.zeros_like(x)
            self.t = np.full(n, np.nan)
        dt = t - self.t
        fresh = valid & (np.isnan(self.t) | (dt > self.reset_after_s))
        step = valid & ~fresh & (dt > 0)
        same = valid & ~fresh & ~step  # a repeated timestamp: keep the previous output
        out = x.copy()
        # first sight (or after a long gap): the value itself, derivative zero
        self.x[fresh], self.dx[fresh], self.t[fresh] = x[fresh], 0.0, t
        if step.any():
            d = dt[step][:, None]
            dx = (x[step] - self.x[step]) / d
            a_d = _alpha(self.d_cutoff, d)
            dx_hat = a_d * dx + (1.0 - a_d) * self.dx[step]
            speed = np.linalg.norm(dx_hat, axis=-1, keepdims=True) / max(float(scale), 1e-9)
            a = _alpha(self.min_cutoff + self.beta * speed, d)
            x_hat = a * x[step] + (1.0 - a) * self.x[step]
            self.x[step], self.dx[step], self.t[step] = x_hat, dx_hat, t
            out[step] = x_hat
        out[same] = self.x[same]
        return out


class PoseSmoother:
    """One-Euro filters for the keypoints (and boxes) of tracked persons.

    Args:
      min_cutoff: cutoff frequency at rest (Hz).
      beta: speed coefficient (Hz per object size per second).
      d_cutoff: cutoff frequency of the speed estimate (Hz).
      kpt_thr: joints scoring below it are neither smoothed nor used to update.
      smooth_boxes: smooth the box corners too.
      reset_after_s: a joint or track unseen for longer starts afresh.
    """

    def __init__(self, min_cutoff=1.0, beta=2.0, d_cutoff=1.0, kpt_thr=0.3,
                 smooth_boxes=True, reset_after_s=1.0):
        OneEuroFilter(min_cutoff, beta, d_cutoff)  # checks the values
        self.params = dict(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff,
                           reset_after_s=reset_after_s)
        self.kpt_thr = kpt_thr
        self.smooth_boxes = smooth_boxes
        self.reset_after_s = float(reset_after_s)
        self.filters = {}     # track id -> OneEuroFilter over J joints (+ 2 box corners)
        self.last_seen = {}   # track id -> time

    def forget(self, track_ids):
        """Drops the state of these tracks (e.g. `PoseTracker.removed_ids`)."""
        for tid in track_ids:
            self.filters.pop(tid, None)
            self.last_seen.pop(tid, None)

    def update(self, persons, timestamp_s):
        """Returns new person dicts with smoothed ``keypoints`` (and ``box``)."""
        t = float(timestamp_s)
        stale = [tid for tid, seen in self.last_seen.items() if t - seen > self.reset_after_s]
        self.forget(stale)
        out = []
        for p in persons:
            tid = p.get("track_id")
            if tid is None:
                out.append(p)
                continue
            kpts = np.array(p["keypoints"], np.float64).reshape(-1, 3)
            box = np.asarray(p["box"], np.float64).reshape(4)
            points = kpts[:, :2]
            valid = kpts[:, 2] >= self.kpt_thr
            if self.smooth_boxes:
                points = np.concatenate([points, box.reshape(2, 2)])
                valid = np.concatenate([valid, [True, True]])
            filt = self.filters.get(tid)
            if filt is None:
                filt = self.filters[tid] = OneEuroFilter(**self.params)
            scale = max(((box[2] - box[0]) + (box[3] - box[1])) / 2.0, 1.0)
            smoothed = filt(points, t, valid, scale)
            self.last_seen[tid] = t
            q = dict(p)
            new_kpts = kpts.copy()
            new_kpts[:, :2] = smoothed[:len(kpts)]
            q["keypoints"] = new_kpts
            if self.smooth_boxes:
                q["box"] = smoothed[len(kpts):].reshape(4).tolist()
            out.append(q)
        return out
