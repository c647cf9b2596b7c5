"""Image input (`prtr_tf.inference.media`), --boxes_json (`prtr_tf.data.boxes_json`) and
drawing (`prtr_tf.drawing.visualize`): pixels of the pose drawing (also one colour per
track id) and the model figures on the tiny keypoint model (random weights). Moved
out of tests/serving/test_predict.py (the 450-line module limit).
"""
import json

import numpy as np
import pytest
from PIL import Image

from prtr_tf.data.boxes_json import load_boxes_json
from prtr_tf.drawing.visualize import draw_poses
from prtr_tf.inference import media
from prtr_tf.inference.tracking import track_color
from tests.conftest import REPO


def _exif_jpeg(path, size=(120, 80)):
    """A JPEG stored as 120x80 (W x H) with EXIF orientation 6 (displayed 80x120):
    left half red, right half blue as stored."""
    array = np.zeros((size[1], size[0], 3), np.uint8)
    array[:, : size[0] // 2] = (255, 0, 0)
    array[:, size[0] // 2:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(array).save(path, exif=exif.tobytes(), quality=95)


@pytest.fixture(scope="module")
def weights():
    """The tiny keypoint model with random weights."""
    from prtr_tf.config import load_config
    from prtr_tf.models.keypoint.model import build_model
    return {"model": build_model(load_config(str(REPO / "configs/synthetic_tiny.py")).model)}


def test_load_image_conversions(tmp_path):
    sixteen = np.array([[0, 257 * 128, 65535]], np.uint16).repeat(4, axis=0)
    Image.fromarray(sixteen).save(tmp_path / "a.png")
    rgb, size, scale, notes = media.load_image(str(tmp_path / "a.png"))
    assert rgb.dtype == np.uint8 and rgb.shape == (4, 3, 3)
    assert rgb[0, :, 0].tolist() == [0, 128, 255] and "16-bit" in notes[0]

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)                 # opaque: kept; transparent: white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    rgb = media.load_image(str(tmp_path / "b.png"))[0]
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[1, 1].tolist() == [255, 255, 255]

    _exif_jpeg(tmp_path / "r.jpg")
    rgb, size, scale, notes = media.load_image(str(tmp_path / "r.jpg"))
    assert rgb.shape == (120, 80, 3) and size == (80, 120) and scale == (1.0, 1.0)
    # Orientation 6 turns the stored image 90 degrees clockwise: left (red) goes on top.
    assert rgb[5, 40, 0] > 200 and rgb[5, 40, 2] < 60
    assert rgb[-5, 40, 2] > 200 and rgb[-5, 40, 0] < 60

    rgb, size, scale, notes = media.load_image(str(tmp_path / "r.jpg"), max_side=60)
    assert rgb.shape == (60, 40, 3) and size == (80, 120) and scale == (2.0, 2.0)


def test_boxes_json_coco_layout(tmp_path, coco_mini):
    lookup = load_boxes_json(str(coco_mini / "person_detections.json"))
    detections = json.loads((coco_mini / "person_detections.json").read_text())
    image_id = detections[0]["image_id"]
    mine = [d for d in detections if d["image_id"] == image_id and d.get("category_id", 1) == 1]
    boxes, scores = lookup(f"some/dir/{image_id:012d}.jpg")
    assert boxes.shape == (len(mine), 4)
    assert np.allclose(boxes, [d["bbox"] for d in mine])
    assert np.allclose(scores, [d["score"] for d in mine])
    assert lookup("unrelated.jpg") is None


def test_draw_poses_pixels():
    image = np.zeros((200, 200, 3), np.uint8)
    kpts = np.zeros((17, 3))
    kpts[:] = (150, 20, 0.1)                        # everything else below threshold
    kpts[5] = (50, 50, 0.9)                         # left_shoulder, visible
    kpts[6] = (120, 120, 0.1)                       # right_shoulder, below threshold
    person = {"box": [10, 10, 190, 190], "score": 0.7, "keypoints": kpts}
    out = np.asarray(draw_poses(image, [person], [(5, 6)], kpt_thr=0.3))
    assert out.shape == image.shape
    assert out[50, 50].any()                        # joint drawn where it is
    # Below kpt_thr: drawn faint (the model's guess stays visible), as is the limb to it.
    for y, x in ((120, 120), (85, 85), (20, 150)):
        assert 0 < out[y, x].max() < 0.6 * out[50, 50].max()
    hidden = np.asarray(draw_poses(image, [person], [(5, 6)], kpt_thr=0.3, faint=0.0))
    assert hidden[50, 50].any()
    assert not hidden[120, 120].any() and not hidden[85, 85].any()  # faint=0: not drawn
    assert not hidden[20, 150].any()
    assert out[100, 10].any()                       # box outline
    assert not image.any()                          # input untouched
    # box_thr drops the whole person.
    assert not np.asarray(draw_poses(image, [person], [(5, 6)], box_thr=0.8)).any()
    # Left and right limbs get different colours.
    kpts2 = np.zeros((17, 3))
    kpts2[:, 2] = 0.0
    kpts2[7], kpts2[9] = (30, 100, 1), (30, 180, 1)        # left elbow -> left wrist
    kpts2[8], kpts2[10] = (170, 100, 1), (170, 180, 1)     # right elbow -> right wrist
    out = np.asarray(draw_poses(image, [{"score": 1.0, "keypoints": kpts2}],
                                [(7, 9), (8, 10)]))
    assert out[140, 30].any() and out[140, 170].any()
    assert out[140, 30].tolist() != out[140, 170].tolist()


def test_figures(tmp_path, weights):
    import tensorflow as tf

    from prtr_tf.config import load_config
    from prtr_tf.models.keypoint.readout import readout
    from prtr_tf.drawing.visualize import (denormalize_crop, plot_decoder_refinement, plot_query_class_distribution)

    config = load_config(str(REPO / "configs/synthetic_tiny.py"))
    model = weights["model"]
    crops = tf.random.stateless_normal((5, 128, 96, 3), seed=(1, 2))
    out = {k: v.numpy() for k, v in model(crops, training=False).items()}
    num_layers = config.model.dec_layers

    path = tmp_path / "refine.png"
    traj = plot_decoder_refinement(denormalize_crop(crops[1].numpy(), config), out, str(path),
                                   index=1)
    assert path.stat().st_size > 1000 and Image.open(path).format == "PNG"
    assert traj["coords"].shape == (17, num_layers, 2)          # L points per joint
    query = readout(out["pred_logits"][1:2], out["pred_coords"][1:2])["query"].numpy()[0]
    np.testing.assert_array_equal(traj["query"], query)
    np.testing.assert_allclose(traj["coords"][:, -1], out["pred_coords"][1, query])
    np.testing.assert_allclose(traj["coords"][:, 0], out["aux_pred_coords"][0, 1, query])
    np.testing.assert_allclose(traj["coords_px"][:, -1], out["pred_coords"][1, query] * [96, 128],
                               rtol=1e-5)

    for kind in ("heatmap", "bar"):
        path = tmp_path / f"classes_{kind}.png"
        counts = plot_query_class_distribution([out["pred_logits"][:3], out["pred_logits"][3:]],
                                               str(path), kind=kind)
        assert path.stat().st_size > 1000 and Image.open(path).format == "PNG"
        assert counts.shape == (config.model.num_queries, 18)
        assert (counts.sum(axis=1) == 5).all()
        top = out["pred_logits"].argmax(-1)
        for q in range(counts.shape[0]):
            assert counts[q, top[0, q]] >= 1
            assert counts[q].tolist() == np.bincount(top[:, q], minlength=18).tolist()


def test_draw_poses_colour_per_track():
    # color_of: each person's box and limbs in its own colour (a tracked person keeps its
    # colour from frame to frame), "#id" leading the label; rules out a colour option
    # that is ignored, or that colours every person alike.
    image = np.zeros((120, 200, 3), np.uint8)
    people = []
    for tid, x in ((1, 20), (2, 120)):
        kpts = np.zeros((17, 3))
        kpts[7], kpts[9] = (x + 20, 40, 1), (x + 20, 100, 1)      # left elbow -> wrist
        people.append({"box": [x, 10, x + 60, 110], "score": 0.9, "track_id": tid,
                       "keypoints": kpts})
    out = np.asarray(draw_poses(image, people, [(7, 9)], color_of=lambda p: track_color(
        p["track_id"])))
    for p in people:
        x = int(p["box"][0])
        assert tuple(out[70, x + 20]) == track_color(p["track_id"])   # the limb
        assert tuple(out[80, x]) == track_color(p["track_id"])        # the box's left side
    assert track_color(1) != track_color(2)
    plain = np.asarray(draw_poses(image, people, [(7, 9)]))
    assert tuple(plain[70, 40]) != track_color(1)        # without it: side colours

