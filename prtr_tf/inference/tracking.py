"""Persistent person identities across video frames: a ByteTrack-style tracker on
boxes and poses.

    tracker = PoseTracker()
    for index, t, rgb in source:
        persons = tracker.update(estimator(rgb), image_size=(w, h))   # + "track_id"

Each frame (ByteTrack, Zhang et al. 2022, with poses):

1. persons are split by score: high (>= ``high_thr``), low (>= ``low_thr``), the rest
   ignored (``track_id`` None);
2. every track is predicted to this frame (constant velocity, measured on the joints
   confident in consecutive poses, else on the box centre; a
   track lost at the image border stays where it left, people come back there);
3. high persons are matched to all tracks (tracked and lost) on a similarity
   ``(1 - w) * IoU + w * OKS``, ``w = oks_weight * oks_decay ** frames_lost`` (IoU
   alone when no joint is confident in both poses), by the Hungarian algorithm
   (`scipy.optimize.linear_sum_assignment`), pairs below ``match_thr`` refused;
4. low persons are matched to the tracks still unmatched that were seen in the previous
   frame, on IoU alone (>= ``low_match_thr``): occluded or blurred persons keep
   their track without starting new ones;
5. unmatched tracks become lost and are dropped after ``max_lost`` frames unseen;
   unmatched high persons scoring >= ``new_track_thr`` start new tracks (new ids,
   never reused).

OKS: COCO's formula with the per-joint ``sigmas`` (COCO's for 17 joints by default) and
the track's box area as the object scale, over joints scoring >= ``kpt_thr`` in both
poses.
"""
import colorsys
import dataclasses

import numpy as np
from scipy.optimize import linear_sum_assignment

from prtr_tf.data.keypoint_sets import COCO_SIGMAS


def box_iou(a, b):
    """IoU matrix (N, M) of boxes a (N, 4) and b (M, 4), [x1, y1, x2, y2]."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def pose_oks(a, b, areas, sigmas, kpt_thr=0.3):
    """OKS matrix (N, M) between poses a (N, J, 3) and b (M, J, 3) [x, y, score], the
    object scale of row i being ``areas[i]``; NaN where no joint scores >= ``kpt_thr``
    in both poses."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]))
    sigmas = np.asarray(sigmas, np.float64)
    if sigmas.shape != (a.shape[1],) or b.shape[1] != a.shape[1]:
        raise ValueError(f"{a.shape[1]} and {b.shape[1]} joints with {sigmas.shape[0]} "
                         "OKS sigmas")
    d2 = np.sum((a[:, None, :, :2] - b[None, :, :, :2]) ** 2, axis=-1)       # (N, M, J)
    var = (2.0 * sigmas) ** 2
    area = np.maximum(np.asarray(areas, np.float64), 1.0)[:, None, None]
    e = d2 / (2.0 * area * var[None, None, :])
    valid = ((a[:, None, :, 2] >= kpt_thr) & (b[None, :, :, 2] >= kpt_thr)
             & np.isfinite(d2))
    count = valid.sum(-1)
    total = np.where(valid, np.exp(-np.where(valid, e, 0.0)), 0.0).sum(-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def track_color(track_id):
    """A stable RGB colour (0-255 ints) per track id: hues spread by the golden ratio,
    so that consecutive ids differ clearly."""
    if track_id is None:
        return (200, 200, 200)
    hue = (int(track_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))


@dataclasses.dataclass
class Track:
    id: int
    box: np.ndarray             # (4,) last matched box
    keypoints: np.ndarray       # (J, 3) last matched pose
    velocity: np.ndarray        # (2,) box centre velocity, pixels per frame
    last_frame: int             # frame number when last matched
    hits: int = 1
    at_border: bool = False     # the last box touched the image border


class PoseTracker:
    """ByteTrack-style multi-person tracker on boxes and poses (module docstring).

    Args:
      high_thr, low_thr: person score thresholds of the two association rounds.
      new_track_thr: a high person left unmatched starts a track when scoring above it.
      match_thr: minimum similarity for a first-round match (IoU/OKS mix; 0.2 as
        ByteTrack's IoU threshold).
      low_match_thr: minimum IoU for a second-round (low-score) match.
      max_lost: frames a track is kept unseen before it is dropped (its id is never
        reused).
      oks_weight: weight of OKS in the similarity (0: boxes only).
      oks_decay: for a track unseen for n frames the OKS weight is multiplied by
        ``oks_decay ** n`` (its last pose is less telling the longer it is away).
      sigmas: per-joint OKS sigmas (J,); None: COCO's (17 joints).
      kpt_thr: joints below this score do not count in OKS.
      score_key: the person dict key used as the detection score ("score": keypoint x
        box score of `PoseEstimator`; "box_score": the detector's).
      max_predict: a lost track is moved along its velocity for at most this many
        frames (then it waits where it is).
      velocity_momentum: weight of the previous velocity in its running average.
      border_px: a box within this many pixels of the image edge (when ``image_size``
        is given to `update`) is "at the border": its velocity is not updated from it
        (a clipped box moves oddly) and, once lost, it is not moved.
    """

    def __init__(self, high_thr=0.5, low_thr=0.1, new_track_thr=0.6, match_thr=0.2,
                 low_match_thr=0.5, max_lost=30, oks_weight=0.5, sigmas=None, kpt_thr=0.3,
                 score_key="score", max_predict=10, velocity_momentum=0.5, border_px=4.0,
                 oks_decay=0.9):
        if not 0.0 <= low_thr <= high_thr:
            raise ValueError(f"need 0 <= low_thr <= high_thr, got {low_thr}, {high_thr}")
        if not 0.0 <= oks_weight <= 1.0:
            raise ValueError(f"oks_weight must be in [0, 1], got {oks_weight}")
        if max_lost < 0:
            raise ValueError(f"max_lost must be >= 0, got {max_lost}")
        self.high_thr, self.low_thr, self.new_track_thr = high_thr, low_thr, new_track_thr
        self.match_thr, self.low_match_thr = match_thr, low_match_thr
        self.max_lost = int(max_lost)
        self.oks_weight = float(oks_weight)
        self.sigmas = None if sigmas is None else np.asarray(sigmas, np.float64)
        self.kpt_thr = kpt_thr
        self.score_key = score_key
        self.max_predict = int(max_predict)
        self.momentum = float(velocity_momentum)
        self.border_px = float(border_px)
        self.oks_decay = float(oks_decay)
        self.reset()

    def reset(self):
        self.tracks = []          # tracked and lost tracks
        self.frame = -1           # number of the last frame given to `update`
        self.next_id = 1
        self.removed_ids = []     # ids dropped by the last `update` (for the smoother)

    @property
    def active_ids(self):
        """Ids of the tracks matched in the last frame."""
        return [t.id for t in self.tracks if t.last_frame == self.frame]

    # ------------------------------------------------------------------ internals

    def _score(self, person):
        value = person.get(self.score_key)
        if value is None:  # e.g. box_score None for boxes without scores
            value = person.get("score", 1.0)
        return float(value)

    def _sigmas(self, num_joints):
        if self.sigmas is not None:
            return self.sigmas
        if num_joints == len(COCO_SIGMAS):
            return COCO_SIGMAS
        return None  # unknown joint set without sigmas: boxes only

    def _predict(self, track, image_size=None):
        """(box (4,), keypoints (J, 3)) of ``track`` predicted to the current frame:
        moved along its velocity (for at most ``max_predict`` frames; not at all when
        it was last seen at the image border), its centre kept inside the image."""
        steps = 0 if track.at_border else min(self.frame - track.last_frame, self.max_predict)
        shift = track.velocity * steps
        if image_size is not None and steps:
            centre = (track.box[:2] + track.box[2:]) / 2.0
            shift = np.clip(centre + shift, 0.0, np.asarray(image_size, np.float64)) - centre
        box = track.box + np.tile(shift, 2)
        kpts = track.keypoints.copy()
        kpts[:, :2] += shift
        return box, kpts

    def _similarity(self, boxes_t, kpts_t, boxes_d, kpts_d, use_oks, lost=None):
        """IoU/OKS similarity (tracks x persons); the OKS weight of a track lost for
        ``lost`` frames is multiplied by ``oks_decay ** lost`` (a pose changes while
        unseen)."""
        iou = box_iou(boxes_t, boxes_d)
        if not use_oks or self.oks_weight == 0.0:
            return iou
        sigmas = self._sigmas(kpts_d.shape[1]) if len(kpts_d) else None
        if sigmas is None:
            return iou
        areas = np.prod(np.clip(boxes_t[:, 2:] - boxes_t[:, :2], 1.0, None), axis=-1)
        oks = pose_oks(kpts_t, kpts_d, areas, sigmas, self.kpt_thr)
        weight = np.full((len(boxes_t), 1), self.oks_weight)
        if lost is not None:
            weight = weight * self.oks_decay ** np.asarray(lost, np.float64)[:, None]
        mixed = (1.0 - weight) * iou + weight * np.nan_to_num(oks)
        return np.where(np.isnan(oks), iou, mixed)

    @staticmethod
    def _assign(similarity, threshold):
        """Hungarian matching maximising the similarity; pairs below ``threshold``
        refused. Returns [(row, col)]."""
        if similarity.size == 0:
            return []
        cost = np.where(similarity >= threshold, 1.0 - similarity, 1e6)
        rows, cols = linear_sum_assignment(cost)
        return [(r, c) for r, c in zip(rows, cols) if similarity[r, c] >= threshold]

    def _touches_border(self, box, image_size):
        if image_size is None:
            return False
        width, height = image_size
        b = self.border_px
        return bool(box[0] <= b or box[1] <= b or box[2] >= width - b or box[3] >= height - b)

    def _displacement(self, track, box, kpts):
        """How far the person moved since ``track`` was last seen: the mean shift of
        the joints confident in both poses (less noisy than the box centre), the box
        centre's shift when fewer than 3 such joints."""
        if kpts.shape == track.keypoints.shape:
            both = (kpts[:, 2] >= self.kpt_thr) & (track.keypoints[:, 2] >= self.kpt_thr)
            both &= np.all(np.isfinite(kpts[:, :2]) & np.isfinite(track.keypoints[:, :2]), -1)
            if both.sum() >= 3:
                return np.mean(kpts[both, :2] - track.keypoints[both, :2], axis=0)
        return ((box[:2] + box[2:]) - (track.box[:2] + track.box[2:])) / 2.0

    def _update_track(self, track, box, kpts, image_size):
        border = self._touches_border(box, image_size)
        gap = self.frame - track.last_frame
        if not border and not track.at_border and gap > 0:
            new_v = self._displacement(track, box, kpts) / gap
            track.velocity = self.momentum * track.velocity + (1.0 - self.momentum) * new_v
        elif border:
            track.velocity = track.velocity * 0.5
        track.box, track.keypoints = box, kpts
        track.last_frame = self.frame
        track.hits += 1
        track.at_border = border

    # ------------------------------------------------------------------ API

    def update(self, persons, image_size=None):
        """Associates this frame's persons with the tracks.

        Args:
          persons: person dicts (``box`` [x1, y1, x2, y2], ``keypoints`` (J, 3), the
            ``score_key`` score), e.g. from `PoseEstimator`.
          image_size: (width, height) of the frame (lets tracks that leave the frame
            wait at the border); optional.

        Returns new dicts, in the input order, with ``track_id`` (int, or None for a
        person that matched no track and started none).
        """
        self.frame += 1
        n = len(persons)
        boxes = np.array([np.asarray(p["box"], np.float64).reshape(4) for p in persons]
                         ).reshape(n, 4)
        kpts = [np.asarray(p["keypoints"], np.float64).reshape(-1, 3) for p in persons]
        num_joints = {k.shape[0] for k in kpts}
        if len(num_joints) > 1:
            raise ValueError(f"persons with different joint counts: {sorted(num_joints)}")
        kpts = np.stack(kpts) if n else np.zeros((0, 0, 3))
        scores = np.array([self._score(p) for p in persons], np.float64)
        ids = [None] * n
        high = [i for i in range(n) if scores[i] >= self.high_thr]
        low = [i for i in range(n) if self.low_thr <= scores[i] < self.high_thr]

        tracks = self.tracks
        use_oks = bool(len(tracks)) and all(t.keypoints.shape[0] == kpts.shape[1]
                                            for t in tracks) and n > 0
        pred = [self._predict(t, image_size) for t in tracks]
        lost = [self.frame - t.last_frame - 1 for t in tracks]
        pred_boxes = np.array([b for b, _ in pred]).reshape(len(tracks), 4)
        pred_kpts = (np.stack([k for _, k in pred]) if tracks and use_oks else None)

        # 1. high-score persons against every track
        matched_tracks = set()
        if high and tracks:
            sim = self._similarity(pred_boxes, pred_kpts, boxes[high], kpts[high], use_oks,
                                   lost)
            for r, c in self._assign(sim, self.match_thr):
                i = high[c]
                self._update_track(tracks[r], boxes[i], kpts[i], image_size)
                ids[i] = tracks[r].id
                matched_tracks.add(r)
        # 2. low-score persons against the unmatched tracks seen in the previous frame
        recent = [r for r, t in enumerate(tracks)
                  if r not in matched_tracks and t.last_frame == self.frame - 1]
        if low and recent:
            sim = box_iou(pred_boxes[recent], boxes[low])
            for r, c in self._assign(sim, self.low_match_thr):
                i = low[c]
                self._update_track(tracks[recent[r]], boxes[i], kpts[i], image_size)
                ids[i] = tracks[recent[r]].id
                matched_tracks.add(recent[r])
        # 3. drop tracks lost for too long
        kept, self.removed_ids = [], []
        for t in tracks:
            if self.frame - t.last_frame > self.max_lost:
                self.removed_ids.append(t.id)
            else:
                kept.append(t)
        # 4. new tracks for confident unmatched persons
        for i in high:
            if ids[i] is None and scores[i] >= self.new_track_thr:
                track = Track(self.next_id, boxes[i], kpts[i], np.zeros(2), self.frame,
                              at_border=self._touches_border(boxes[i], image_size))
                self.next_id += 1
                kept.append(track)
                ids[i] = track.id
        self.tracks = kept
        out = []
        for p, track_id in zip(persons, ids):
            q = dict(p)
            q["track_id"] = track_id
            out.append(q)
        return out


def count_id_switches(true_ids, track_ids):
    """Identity errors of a tracking run against known identities.

    Args:
      true_ids: per frame, the true identity of each person given to the tracker.
      track_ids: per frame, the ``track_id`` the tracker returned for each (same order).

    Returns {"switches": times a true identity got a track id other than its previous
    one (MOT's IDSW), "merges": frames x pairs where two true identities shared a
    track id, "unassigned": persons left without a track id, "track_ids": distinct
    track ids used}.
    """
    last, switches, merges, unassigned, used = {}, 0, 0, 0, set()
    for truths, tracks in zip(true_ids, track_ids, strict=True):
        if len(truths) != len(tracks):
            raise ValueError(f"{len(truths)} true ids but {len(tracks)} track ids in a frame")
        seen = {}
        for truth, track in zip(truths, tracks):
            if track is None:
                unassigned += 1
                continue
            used.add(track)
            if truth in last and last[truth] != track:
                switches += 1
            last[truth] = track
            if track in seen and seen[track] != truth:
                merges += 1
            seen[track] = truth
    return {"switches": switches, "merges": merges, "unassigned": unassigned,
            "track_ids": len(used)}
