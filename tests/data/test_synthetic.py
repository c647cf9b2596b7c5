"""The synthetic COCO-format stick-figure dataset (its command line:
tests/cli/test_tools.py)."""
import json
import os

import numpy as np
from PIL import Image

from prtr_tf.data.keypoint_sets import COCO_JOINTS
from prtr_tf.data.synthetic import ANN_FILE, IMAGE_DIR, ensure_synthetic, generate


def _files(root):
    names = sorted(os.listdir(root / IMAGE_DIR))
    return {n: (root / IMAGE_DIR / n).read_bytes() for n in names}


def test_same_seed_same_bytes(tmp_path):
    generate(tmp_path / "a", 4, seed=3, progress=False)
    generate(tmp_path / "b", 4, seed=3, progress=False)
    generate(tmp_path / "c", 4, seed=4, progress=False)
    assert (tmp_path / "a" / ANN_FILE).read_bytes() == (tmp_path / "b" / ANN_FILE).read_bytes()
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a") != _files(tmp_path / "c")
    # Image i depends only on (seed, i): a larger dataset extends a smaller one.
    generate(tmp_path / "d", 6, seed=3, progress=False)
    files_d = _files(tmp_path / "d")
    assert all(files_d[n] == b for n, b in _files(tmp_path / "a").items())


def test_coco_schema_loads_with_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    ann_file = generate(tmp_path, 8, seed=0, progress=False)
    coco = COCO(ann_file)
    assert len(coco.getImgIds()) == 8
    cat = coco.loadCats(1)[0]
    assert cat["name"] == "person" and tuple(cat["keypoints"]) == COCO_JOINTS
    assert len(cat["skeleton"]) == 19 and min(min(p) for p in cat["skeleton"]) == 1
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) >= 8
    visibilities = set()
    for ann in anns:
        im = coco.loadImgs(ann["image_id"])[0]
        assert (im["height"], im["width"]) == (256, 320)
        assert Image.open(tmp_path / IMAGE_DIR / im["file_name"]).size == (320, 256)
        kp = np.array(ann["keypoints"]).reshape(17, 3)
        visibilities |= set(kp[:, 2].tolist())
        assert ann["num_keypoints"] == int((kp[:, 2] > 0).sum())
        assert not kp[kp[:, 2] == 0].any()  # unlabelled: 0, 0, 0
        xy = kp[kp[:, 2] > 0, :2]
        assert ((xy >= 0) & (xy <= [319, 255])).all()
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and ann["iscrowd"] == 0 and ann["area"] >= 0
    assert visibilities == {0, 1, 2}  # occluded and out-of-image joints occur


def test_ensure_synthetic_generates_once(tmp_path, capsys):
    ann_file = ensure_synthetic(str(tmp_path), 3, seed=1)
    assert "3/3 images" in capsys.readouterr().err
    stamp = os.path.getmtime(ann_file)
    assert ensure_synthetic(str(tmp_path), 3, seed=1) == ann_file
    assert os.path.getmtime(ann_file) == stamp and capsys.readouterr().err == ""
    ensure_synthetic(str(tmp_path), 3, seed=2)  # another seed: regenerated
    assert json.loads(open(ann_file).read())["info"]["seed"] == 2


def test_records_and_crops_from_synthetic(tmp_path):
    from prtr_tf.config import load_config
    from prtr_tf.models.keypoint.data import build_dataset
    from prtr_tf.data.coco import load_coco_keypoints

    ann_file = generate(tmp_path, 4, seed=0, progress=False)
    records = load_coco_keypoints(ann_file, tmp_path / IMAGE_DIR, (128, 96))
    assert records
    batch = next(iter(build_dataset(records, load_config("tiny"), training=True,
                                    deterministic=True, batch=len(records))))
    assert batch["image"].shape == (len(records), 128, 96, 3)
    weight = batch["target_weight"].numpy()
    target = batch["target"].numpy()[weight > 0]
    assert np.isfinite(target).all() and ((target > -1) & (target < 2)).all()
