"""The demo's annotated pictures pinned (issue 27): enlarged drawings scale the boxes
and joint POSITIONS by ``upscale`` on both axes, never the scores drawn with them."""
import numpy as np
from PIL import Image

from prtr_tf.demo import pictures


def test_annotated_images_scale_positions_not_scores(tmp_path, monkeypatch):
    src = tmp_path / "img7.png"
    Image.fromarray(np.zeros((5, 8, 3), np.uint8)).save(src)  # 8 wide, 5 high
    seen = {}

    def draw_poses(image, persons, skeleton, kpt_thr, box_thr, joint_names):
        seen.update(size=image.size, persons=persons, skeleton=skeleton, kpt_thr=kpt_thr,
                    box_thr=box_thr, joint_names=joint_names)
        return image

    calls = []

    def estimator(rgb, boxes=None):
        calls.append((rgb.shape, boxes))
        return [{"box": [1.0, 2.0, 3.0, 4.5], "score": 0.7, "box_score": 0.6,
                 "keypoints": np.array([[1.0, 2.0, 0.9], [0.5, 4.0, 0.2]])}]

    monkeypatch.setattr(pictures.visualize, "draw_poses", draw_poses)
    written = pictures.annotated_images(estimator, [str(src)], str(tmp_path / "out"),
                                        [(0, 1)], ["a", "b"], kpt_thr=0.25, box_thr=0.1,
                                        upscale=3, boxes=[[[0, 0, 4, 4]]], prefix="p_")
    assert written == [str(tmp_path / "out" / "p_img7.png")]
    assert calls == [((5, 8, 3), [[0, 0, 4, 4]])]  # the image's own boxes, original size
    assert seen["size"] == (24, 15)
    person = seen["persons"][0]
    assert person["box"] == [3.0, 6.0, 9.0, 13.5]
    np.testing.assert_allclose(person["keypoints"], [[3.0, 6.0, 0.9], [1.5, 12.0, 0.2]])
    assert person["score"] == 0.7 and person["box_score"] == 0.6
    assert (seen["kpt_thr"], seen["box_thr"], seen["joint_names"]) == (0.25, 0.1, ["a", "b"])
    with Image.open(written[0]) as im:
        assert im.size == (24, 15)
