"""More bad input, run as users run the tools (issue 26): boxes from ``--boxes_json``
that leave the image, 12-bit data in a 16-bit PNG, detections of another split given
to eval, a training set whose image files are missing, and numeric config fields out
of range. Each case is a row of docs/errors.md ("Bad input"), checked by
`test_the_table_lists_these_tests`.
"""
import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.cli.test_bad_input import assert_error, run, missing_from_the_table


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Random weights of configs/tiny.py's keypoint model (the shapes of synthetic_tiny)."""
    from prtr_tf.config import load_config
    from prtr_tf.models.keypoint.model import build_model

    path = tmp_path_factory.mktemp("weights") / "tiny.weights.h5"
    build_model(load_config("tiny").model).save_weights(str(path))
    return path


# ------------------------------------------------------------ predict.py --boxes_json


def test_predict_boxes_outside_the_image_are_clipped_or_refused(tmp_path, tiny_weights):
    """A box partly outside the image is clipped to it (the person's box in results.json
    ends at the image's edge); a box with no overlap fails its file, the box named;
    the other files still run (exit 0)."""
    src = tmp_path / "photos"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("partly.png", "outside.png"):
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), np.uint8)).save(src / name)
    boxes = {"partly.png": [[600, -20, 200, 220, 0.9]],
             "outside.png": [[100, 50, 80, 160, 0.9], [5000, 10, 50, 100, 0.9]]}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    proc = run(f"--source={src}", f"--output={out}", "--config=tiny",
               f"--checkpoint={tiny_weights}", f"--boxes_json={tmp_path / 'boxes.json'}",
               script="predict.py")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    results = {r["file"].rsplit("/", 1)[-1]: r
               for r in json.loads((out / "results.json").read_text())}
    assert list(results) == ["partly.png"]
    persons = results["partly.png"]["persons"]
    assert [p["box"] for p in persons] == [[600.0, 0.0, 640.0, 200.0]]
    assert "1 --boxes_json box(es) clipped to the image" in proc.stdout
    failures = json.loads((out / "failures.json").read_text())
    assert len(failures) == 1 and failures[0]["file"].endswith("outside.png")
    assert failures[0]["reason"] == (
        "--boxes_json box #1 [5000.0, 10.0, 50.0, 100.0] of outside.png lies outside the "
        "640x480 image (1 such box(es)): boxes are [x, y, w, h] in the original image's "
        "pixels; fix or drop the box")


# --------------------------------------------------------------- 16-bit PNG, 12-bit data


def _png16(path, values):
    image = Image.fromarray(np.asarray(values, np.uint16))
    assert image.mode == "I;16"
    image.save(path)
    with Image.open(path) as check:
        assert check.mode == "I;16"  # a real 16-bit PNG, as a camera writes it
    return path


@pytest.mark.parametrize("values,expected", [
    ([[0, 2048, 4095]] * 2, [0, 128, 255]),           # max <= 4095: 12-bit data
    ([[0, 257 * 128, 65535]] * 2, [0, 128, 255]),     # full 16-bit range
    ([[0, 1024, 8000]] * 2, [0, 4, 31]),              # max > 4095: / 65535
], ids=["12_bit", "16_bit", "dark_16_bit"])
def test_a_16_bit_png_holding_12_bit_data_is_scaled_as_12_bit(values, expected, tmp_path):
    """predict's reader (`prtr_tf.inference.media.load_image`) and the input pipelines'
    decoder (`prtr_tf.data.image.decode_image`) give the same pixels: a 16-bit image
    whose maximum is <= 4095 is scaled by 255/4095 (not divided by 65535 to black)."""
    from prtr_tf.data.image import decode_image
    from prtr_tf.inference import media

    path = _png16(tmp_path / "deep.png", values)
    rgb, size, _, notes = media.load_image(str(path))
    assert size == (3, 2) and rgb[0, :, 0].tolist() == expected, (rgb[0], notes)
    assert (rgb == rgb[..., :1]).all()
    assert ("read as 12-bit" in notes[0]) == (max(values[0]) <= 4095), notes
    decoded = decode_image(str(path)).numpy()
    assert decoded.dtype == np.uint8 and decoded.shape == (2, 3, 3)
    assert decoded[0, :, 0].tolist() == expected and (decoded == rgb).all()


def test_8_bit_png_decodes_as_before(tmp_path):
    from prtr_tf.data.image import decode_image

    pixels = np.array([[[0, 7, 15], [200, 100, 50]]], np.uint8)  # dark: not rescaled
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    assert (decode_image(str(tmp_path / "rgb.png")).numpy() == pixels).all()


# ------------------------------------------------------------------- eval.py --det_json


EVAL = ["--config=tiny", "--config.data.val_ann=person_keypoints.json",
        "--config.data.val_images=images"]


def test_eval_detections_of_another_split_are_refused(coco_mini, tmp_path, tiny_weights):
    """Detections whose image ids are not images of the evaluated split: exit 1, one
    line counting them with examples, naming the split and its annotation file."""
    ann = coco_mini / "person_keypoints.json"
    dets = [{"image_id": i, "category_id": 1, "bbox": [10, 10, 50, 100], "score": 0.9}
            for i in (1, 2, 3)]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    proc = run(*EVAL, f"--config.data.root={coco_mini}", f"--checkpoint={tiny_weights}",
               f"--det_json={tmp_path / 'dets.json'}", script="eval.py")
    assert_error(proc, 1, f"detections {tmp_path / 'dets.json'}: none of the 3 image ids it "
                 f"holds are images of the val split ({ann}) (not there: 1, 2, 3)")
    assert not list(tmp_path.glob("*results*"))


def test_eval_detections_partly_of_another_split_are_refused(coco_mini, tmp_path):
    """The same when only some ids are outside the split (library call: what eval runs)."""
    from prtr_tf.config import load_config
    from prtr_tf.data.splits import load_records

    known = json.loads((coco_mini / "person_detections.json").read_text())
    dets = known + [dict(known[0], image_id=i) for i in (999999901, 999999902)]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    config = load_config("tiny")
    config.data.update(root=str(coco_mini), val_ann="person_keypoints.json",
                       val_images="images")
    ids = len({d["image_id"] for d in dets})
    with pytest.raises(ValueError, match=re.escape(
            f"2 of the {ids} image ids it holds are images of the val split") + ".*" +
            re.escape("(not there: 999999901, 999999902)")):
        load_records(config, "val", det_json=str(tmp_path / "dets.json"))
    assert len(load_records(config, "val", det_json=str(coco_mini / "person_detections.json")))


# ------------------------------------------------------------- train.py, missing images


def test_train_with_missing_image_files(coco_mini, tmp_path):
    """Image files of the training set missing: one line before any pipeline (it used to
    be a warning per file, then OutOfRangeError), how many of how many, the first
    ones and the config.data fields; even one missing file is an error."""
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    shutil.copy(coco_mini / "person_keypoints.json", root / "train.json")
    ann = json.loads((root / "train.json").read_text())
    files = sorted({im["file_name"] for im in ann["images"]})
    for name in files[1:]:
        shutil.copy(coco_mini / "images" / name, root / "images" / name)
    data = [f"--config.data.root={root}", "--config.data.train_ann=train.json",
            f"--workdir={tmp_path / 'run'}"]
    proc = run("--config=tiny", *data, "--config.data.train_images=images", script="train.py")
    assert_error(proc, 1, f"1 of the {len(files)} image files of the train split are missing "
                 f"(e.g. {root / 'images' / files[0]}); the image folder exists: "
                 f"{root / 'images'} (config.data.root='{root}', config.data.train_images="
                 "'images', listed in config.data.train_ann='train.json')")
    assert "OutOfRange" not in proc.stderr and not (tmp_path / "run").exists()
    proc = run("--config=tiny", *data, "--config.data.train_images=nope", script="train.py")
    assert_error(proc, 1, f"{len(files)} of the {len(files)} image files of the train split",
                 f"the image folder does not exist: {root / 'nope'}")


# ----------------------------------------------------- numeric config fields (--config.X)


@pytest.mark.parametrize("script,override,message", [
    ("train.py", "--config.train.lr=nan", "config.train.lr=nan: must be a finite number > 0"),
    ("train.py", "--config.train.epochs=-1", "config.train.epochs=-1: must be a whole "
     "number >= 1"),
    ("train.py", "--config.test.oks_thre=1.5", "config.test.oks_thre=1.5: must be a finite "
     "number between 0 and 1"),
    ("eval.py", "--config.test.image_thre=inf", "config.test.image_thre=inf: must be a "
     "finite number between 0 and 1"),
], ids=["train_lr_nan", "train_epochs_negative", "train_oks_thre_1.5", "eval_image_thre_inf"])
def test_config_fields_out_of_range_are_usage_errors(script, override, message, tmp_path):
    """A --config.FIELD override (or a config file) with a NaN, negative or out-of-range
    number: exit 2 before any work, naming the field (`prtr_tf.config_checks.RANGES`)."""
    where = (f"--workdir={tmp_path / 'run'}" if script == "train.py"
             else f"--checkpoint={tmp_path / 'x.weights.h5'}")
    proc = run("--config=synthetic_tiny", f"--config.data.root={tmp_path / 'data'}",
               override, where, script=script)
    assert_error(proc, 2, message, f"--config.{message.split('=')[0][len('config.'):]}=")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("name,field,value,message", [
    ("tiny", "train.batch_size", 0, "config.train.batch_size=0: must be a whole number >= 1"),
    ("tiny", "test.in_vis_thre", -0.2, "config.test.in_vis_thre=-0.2: must be a finite "
     "number between 0 and 1"),
    ("synthetic_detector_tiny", "test.score_thre", 2.0, "config.test.score_thre=2.0: must "
     "be a finite number between 0 and 1"),
    ("e2e_tiny", "model.person_threshold", float("nan"), "config.model.person_threshold=nan"),
    ("tiny", "train.lr_backbone", -1e-5, "config.train.lr_backbone=-1e-05: must be a finite "
     "number >= 0"),
], ids=["batch_size_0", "in_vis_thre_negative", "score_thre_2", "person_threshold_nan",
        "lr_backbone_negative"])
def test_every_shipped_config_passes_the_checks_and_the_table_is_checked(
        name, field, value, message):
    """The shipped configs are valid; a field of the table out of range is refused by
    `prtr_tf.config_checks.validate` (what train.py and eval.py call), as a ValueError."""
    from prtr_tf.config import config_names, load_config
    from prtr_tf.config_checks import RANGES, validate

    if name == "tiny":
        for shipped in config_names():
            validate(load_config(shipped))
    config = load_config(name)
    assert field in RANGES
    section, key = field.split(".")
    config[section][key] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        validate(config)


# ------------------------------------------------- files that are not what they should be


def test_a_savedmodel_not_exported_by_prtr_tf_is_one_line(tmp_path):
    """predict --saved_model of another SavedModel: one line naming its inputs and
    outputs (was: a KeyError traceback after a warning)."""
    import tensorflow as tf

    class Other(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def double(self, x):
            return {"y": 2.0 * x}

    other = Other()
    tf.saved_model.save(other, str(tmp_path / "sm"), signatures={"serving_default": other.double})
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(tmp_path / "a.png")
    proc = run(f"--saved_model={tmp_path / 'sm'}", f"--source={tmp_path / 'a.png'}",
               f"--output={tmp_path / 'out'}", script="predict.py")
    assert_error(proc, 2, f"--saved_model '{tmp_path / 'sm'}' is not a prtr-tf pose export: "
                 "its serving_default takes ['x'] and returns ['y']",
                 "write one with prtr-export saved_model")
    assert not (tmp_path / "out").exists()


def test_a_weights_file_given_as_config_is_one_line(tmp_path, tiny_weights):
    """--config=WEIGHTS (a binary file): says what the flag takes (was: "SyntaxError:
    source code string cannot contain null bytes")."""
    proc = run(f"--config={tiny_weights}", f"--checkpoint={tiny_weights}", "--use_gt_bbox",
               script="eval.py")
    assert_error(proc, 2, f"--config '{tiny_weights}' is not a config file (a Python file "
                 "whose get_config() returns the ConfigDict): a weights or model file goes "
                 "in --checkpoint or --model")


def test_the_table_lists_these_tests():
    """Each test of this file is named in the "Bad input" table of docs/errors.md."""
    assert not missing_from_the_table("tests/cli/test_bad_input_more.py",
                                            list(globals()))
