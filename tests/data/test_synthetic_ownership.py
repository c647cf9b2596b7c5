"""The synthetic generator writes only into folders it created: a user's data under
config.data.root is never replaced, extended or 'repaired'."""
import json
import os

import pytest

from prtr_tf.config import load_config
from prtr_tf.data import synthetic
from prtr_tf.data.splits import generate_synthetic


def _snapshot(folder):
    return {os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(folder) for f in files}


def _users_folder(root, truncated=False):
    train = root / "train"
    (train / "images").mkdir(parents=True)
    (train / "images" / "mine.jpg").write_bytes(b"\xff\xd8 a user's photo")
    text = json.dumps({"info": {"description": "my COCO subset"}, "images": [],
                       "annotations": [], "categories": []})
    (train / "person_keypoints.json").write_text(text[:20] if truncated else text)
    return train


@pytest.mark.parametrize("truncated", [False, True])
def test_a_users_folder_is_an_error_and_stays_unchanged(tmp_path, truncated):
    train = _users_folder(tmp_path, truncated)
    before = _snapshot(tmp_path)
    config = load_config("synthetic_tiny")
    config.data.root = str(tmp_path)
    with pytest.raises(FileExistsError, match=str(train)):
        generate_synthetic(config)
    assert _snapshot(tmp_path) == before


def test_its_own_folder_is_reused_and_regenerated(tmp_path):
    out = tmp_path / "own"
    ann = synthetic.ensure_synthetic(str(out), num_images=2, seed=1)
    assert (out / synthetic.MARKER).exists()
    stamp = os.path.getmtime(ann)
    assert synthetic.ensure_synthetic(str(out), num_images=2, seed=1) == ann
    assert os.path.getmtime(ann) == stamp  # the same set: not rewritten
    synthetic.ensure_synthetic(str(out), num_images=3, seed=1)  # other settings: redone
    assert len(json.load(open(ann))["images"]) == 3


def test_a_set_written_before_the_marker_is_still_its_own(tmp_path):
    out = tmp_path / "old"
    synthetic.generate(str(out), num_images=1, seed=0, progress=False)
    os.remove(out / synthetic.MARKER)
    synthetic.ensure_synthetic(str(out), num_images=2, seed=0)
    assert (out / synthetic.MARKER).exists()
