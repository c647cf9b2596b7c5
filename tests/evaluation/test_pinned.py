"""Values that no other test pins: the OKS sigmas (against pycocotools' own), the
default OKS-NMS threshold (a pose pair with OKS between 0.5 and 0.9 through the
defaults) and the keypoint configs' matcher and loss weights (spec §3-4)."""
import pathlib

import numpy as np
import pytest

from prtr_tf.config import load_config
from prtr_tf.data.keypoint_sets import COCO_SIGMAS
from prtr_tf.evaluation.coco import results_from_predictions
from prtr_tf.evaluation.nms import oks_iou, oks_nms

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
KEYPOINT_CONFIGS = sorted(p.stem for p in CONFIGS.glob("*.py")
                          if p.stem.startswith(("coco_", "mpii_")))


def test_coco_sigmas_are_pycocotools():
    from pycocotools.cocoeval import Params
    np.testing.assert_array_equal(COCO_SIGMAS, Params(iouType="keypoints").kpt_oks_sigmas)


def _pair(target_oks=0.7, area=200.0 * 200.0):
    """Two poses whose OKS lies strictly between 0.5 and 0.9 (a shift of the second)."""
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(50, 250, (17, 2)), np.ones((17, 1))], axis=1)
    lo, hi = 0.0, 100.0
    for _ in range(60):  # bisect the shift for the target OKS
        shift = (lo + hi) / 2
        b = a + [shift, 0.0, 0.0]
        oks = float(oks_iou(a, b[None], area, [area])[0])
        lo, hi = (shift, hi) if oks > target_oks else (lo, shift)
    assert 0.5 < oks < 0.9
    return a, b, oks


def test_oks_nms_default_threshold_keeps_a_pair_between_0_5_and_0_9():
    a, b, oks = _pair()
    db = [{"keypoints": a, "score": 0.9, "area": 200.0 * 200.0},
          {"keypoints": b, "score": 0.8, "area": 200.0 * 200.0}]
    assert oks_nms(db) == [0, 1]  # thresh 0.9: OKS ~0.7 suppresses nothing
    assert oks_nms(db, 0.5) == [0]  # the threshold the default must not be


def test_results_from_predictions_default_threshold():
    a, b, _ = _pair()
    keypoints = np.stack([a, b])
    center = np.array([[150.0, 150.0]] * 2)
    scale = np.array([[1.0, 1.0]] * 2)  # area (200 s)^2, as in _pair
    results = results_from_predictions(keypoints, center, scale, [1.0, 0.9], [7, 7])
    assert len(results) == 2


@pytest.mark.parametrize("name", KEYPOINT_CONFIGS)
def test_keypoint_matcher_and_loss_weights(name):
    loss = load_config(str(CONFIGS / f"{name}.py")).loss
    assert dict(loss) == dict(cost_class=1.0, cost_coord=5.0, eos_coef=0.1,
                              kpt_loss_coef=5.0, ce_loss_coef=1.0)
