"""A tiny keypoint Transformer overfits each custom keypoint set (crowdpose_mini: 14
joints, ap10k_mini: 17 animal joints in 54 categories, onehand10k_mini: 21 hand
joints without flip pairs) through configs/custom_keypoints.py, pointed at the
folder by root / train_ann / train_images / val_ann / val_images alone, and eval.py
prints AP and PCK / AUC / EPE for it.

Measured on this 2-core CPU (10 epochs of 20 steps, no augmentation, trained and
evaluated on the same images): crowdpose AP 0.96 (loss 17.8 -> 1.75), ap10k AP 1.00
(21.9 -> 1.8), onehand10k AP 0.87, PCK@0.2 1.00 (23.5 -> 3.5); in earlier runs
crowdpose 1.00 and ap10k 1.00 (20 queries), onehand10k 0.73 (PCK 0.98). The
thresholds (AP >= 0.5,
PCK >= 0.8, a 4x loss drop) leave room for platform differences while a model whose
joints are mis-sized, mis-ordered or mapped back wrongly fails them.
"""
import subprocess
import sys
import warnings

import numpy as np
import pytest

from tests.custom_sets import SETS, TINY_MODEL, custom_config

pytestmark = pytest.mark.slow  # ~2.5 CPU minutes in all (3 trainings, eval.py, 3 exports)

EPOCHS, STEPS = 10, 20
BATCH = {"crowdpose_mini": 4, "ap10k_mini": 2, "onehand10k_mini": 4}  # every instance


def overfit_config(name):
    config = custom_config(name)
    t = config.train
    t.batch_size, t.steps_per_epoch = BATCH[name], STEPS
    t.epochs = t.eval_every_epochs = EPOCHS
    t.lr, t.lr_backbone, t.clip_norm, t.lr_steps = 1e-3, 1e-3, 1.0, (EPOCHS - 2,)
    t.checkpoint_every_steps, t.log_every_steps = 0, 100
    config.data.scale_factor = config.data.rotation_factor = 0.0
    config.data.flip = False
    return config


def spy_drawing(monkeypatch):
    """The (skeleton, joint names) of every `visualize.draw_poses` call from now on."""
    from prtr_tf.drawing import visualize
    drawn = []
    real_draw = visualize.draw_poses

    def spy(image, persons, skeleton, *args):
        drawn.append((list(map(list, skeleton)), list(args[2]) if len(args) > 2 else None))
        return real_draw(image, persons, skeleton, *args)

    monkeypatch.setattr(visualize, "draw_poses", spy)
    return drawn


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{name: (workdir, history)}, each set trained once on first use."""
    from prtr_tf.training.trainer import Trainer
    runs = {}

    def get(name):
        if name not in runs:
            workdir = tmp_path_factory.mktemp(name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                history = Trainer(overfit_config(name), str(workdir / "run"),
                                  strategy="default").fit()
            runs[name] = (workdir / "run", history)
        return runs[name]
    return get


@pytest.mark.parametrize("name", sorted(SETS))
def test_a_tiny_model_overfits_each_custom_set(trained, name):
    _, history = trained(name)
    first, last = history[0], history[-1]
    print(f"{name}: loss {first['loss']:.2f} -> {last['loss']:.2f}, AP {last['AP']:.3f}, "
          f"PCK@0.2 {last['PCK@0.2']:.3f}, AUC {last['AUC']:.3f}, EPE {last['EPE']:.2f}")
    assert last["loss"] < first["loss"] / 4
    assert last["AP"] >= 0.5
    assert last["PCK@0.2"] >= 0.8


def test_eval_py_prints_ap_and_hand_metrics(trained, tmp_path):
    workdir, history = trained("onehand10k_mini")
    from tests.custom_sets import TINY_MODEL, point_at
    from prtr_tf.config import load_config
    config = point_at(load_config("custom_keypoints"), "onehand10k_mini")
    flags = [f"--config.data.{k}={config.data[k]}"
             for k in ("root", "train_ann", "train_images", "val_ann", "val_images")]
    flags += [f"--config.model.{k}={v if not isinstance(v, tuple) else ','.join(map(str, v))}"
              for k, v in TINY_MODEL.items() if k != "image_size"]
    flags.append("--config.model.image_size=(128, 96)")
    out = subprocess.run(
        [sys.executable, "eval.py", "--config=custom_keypoints", f"--checkpoint={workdir}",
         f"--output={tmp_path / 'results.json'}", *flags],
        capture_output=True, text=True, timeout=300, cwd=str(__import__("pathlib").Path(
            __file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| Model | PCK@0.2"))
    cells = [c.strip() for c in lines[header + 2].split("|")[2:5]]
    last = history[-1]
    assert cells == [f"{100 * last['PCK@0.2']:.1f}", f"{100 * last['AUC']:.1f}",
                     f"{last['EPE']:.2f}"]  # the trainer's numbers (flip test off: no pairs)
    assert "horizontal flip is disabled" in out.stderr  # the set has no flip pairs
    assert (tmp_path / "results.json").exists()


def test_exports_carry_the_keypoint_set_and_predict_draws_it(trained, tmp_path,
                                                             monkeypatch):
    """The trained ap10k model (17 animal joints, 7 flip pairs, the file's skeleton)
    through TFLite, SavedModel and ONNX: each export's metadata holds the set, and
    predict (from the .tflite alone, on the ground-truth boxes) draws the file's
    skeleton with its joint names and finds the animals' joints."""
    import json

    import numpy as np

    from prtr_tf.data import keypoint_sets
    from prtr_tf.models import registry
    from prtr_tf.checkpoints import weights
    from prtr_tf.export import onnx as onnx_export
    from prtr_tf.export import tflite
    from prtr_tf.inference.predict import predict_files
    from prtr_tf.serving import metadata
    from prtr_tf.serving.backends import build_estimator
    from prtr_tf.serving.saved_model import export_saved_model
    from tests.custom_sets import point_at

    workdir, _ = trained("ap10k_mini")
    model, config, _ = weights.load_model(overfit_config("ap10k_mini"), str(workdir))
    root = point_at(config, "ap10k_mini").data.root
    with open(f"{root}/animal_keypoints.json", encoding="utf-8") as f:
        ann = json.load(f)
    category = ann["categories"][0]
    expected = dict(
        dataset="custom", keypoint_names=category["keypoints"],
        skeleton=[[a - 1, b - 1] for a, b in category["skeleton"]],
        flip_pairs=[[0, 1], [5, 8], [6, 9], [7, 10], [11, 14], [12, 15], [13, 16]],
        sigmas=list(keypoint_sets.KNOWN_SETS["ap10k"][1]))

    # TFLite: embedded metadata (and its sidecar)
    # (no flip test: the model was trained without mirrored crops)
    (path, sidecar), = tflite.export_tflite(str(tmp_path / "tflite"), model, config, ["fp32"])
    meta = tflite.read_metadata(path)
    assert {k: meta[k] for k in expected} == expected and meta["flip_test"] is False
    with open(sidecar, encoding="utf-8") as f:
        assert json.load(f)["keypoint_names"] == expected["keypoint_names"]

    # predict from the .tflite alone (no config): the custom skeleton is drawn
    drawn = spy_drawing(monkeypatch)
    estimator, kset = build_estimator(tflite=path)
    files = [f"{root}/images/{im['file_name']}" for im in ann["images"]]
    boxes = {f"{root}/images/{im['file_name']}": ([a["bbox"] for a in ann["annotations"]
                                                  if a["image_id"] == im["id"]], [1.0])
             for im in ann["images"]}
    counts = predict_files(estimator, files, str(tmp_path / "out"), kset,
                           boxes_for=lambda p: boxes[p])
    assert counts["processed"] == 2 and counts["failed"] == 0
    assert drawn and all(d == (expected["skeleton"], expected["keypoint_names"])
                         for d in drawn)
    with open(tmp_path / "out" / "results.json", encoding="utf-8") as f:
        results = json.load(f)
    for entry in results:
        im = next(i for i in ann["images"] if entry["file"].endswith(i["file_name"]))
        gt = next(a for a in ann["annotations"] if a["image_id"] == im["id"])
        person, = entry["persons"]
        pred = np.asarray(person["keypoints"])[:, :2]
        kp = np.asarray(gt["keypoints"], float).reshape(17, 3)
        err = np.linalg.norm(pred - kp[:, :2], axis=1)[kp[:, 2] > 0]
        assert np.median(err) < 0.1 * max(gt["bbox"][2:])  # the overfit joints, in place

    # SavedModel (the crop endpoint: the metadata does not depend on the detector) and
    # ONNX; predict.py --saved_model reads the set as `saved_set` does
    serving = registry.get(config).serving(model, config)
    folder = str(tmp_path / "saved_model")
    export_saved_model(serving, folder)
    saved = metadata.read(folder)
    assert {k: saved[k] for k in expected} == expected
    saved_set = keypoint_sets.set_from_metadata(saved, folder)
    assert [list(e) for e in saved_set["skeleton"]] == expected["skeleton"]
    assert list(saved_set["joints"]) == expected["keypoint_names"]
    np.testing.assert_allclose(saved_set["sigmas"], expected["sigmas"])
    onnx_path = str(tmp_path / "crops.onnx")
    onnx_export.convert(folder, onnx_path, "serve_crops")
    assert metadata.read_onnx(onnx_path) == saved


def test_custom_detector_trains_and_predict_reads_the_saved_model_set(trained, tmp_path,
                                                                      monkeypatch):
    """configs/custom_detector.py on ap10k_mini (54 species, one object class) trains a
    few steps at tiny sizes and evaluates its box AP; the two-stage SavedModel of the
    trained ap10k keypoint model with it (serving_default) carries the set, and
    predict --saved_model (`build_estimator`, `predict_files`) draws the file's skeleton
    with its joint names."""
    import math
    import pathlib

    from prtr_tf.data import keypoint_sets
    from prtr_tf.models import registry
    from prtr_tf.checkpoints import weights
    from prtr_tf.inference.predict import predict_files
    from prtr_tf.serving.backends import build_estimator
    from prtr_tf.serving.saved_model import export_saved_model
    from prtr_tf.training.trainer import Trainer

    det_config = custom_config("ap10k_mini", "custom_detector")
    det_config.model.update(dropout=0.0)
    det_config.data.update(scales=(128,), max_size=192, crop_prob=0.0, test_size=128)
    t = det_config.train
    t.batch_size, t.steps_per_epoch, t.epochs, t.eval_every_epochs = 2, 4, 1, 1
    t.checkpoint_every_steps, t.log_every_steps = 0, 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = Trainer(det_config, str(tmp_path / "det"), strategy="default").fit()
    assert math.isfinite(history[-1]["loss"]) and 0.0 <= history[-1]["AP"] <= 1.0

    workdir, _ = trained("ap10k_mini")
    model, config, _ = weights.load_model(overfit_config("ap10k_mini"), str(workdir))
    detector, det_config, _ = weights.load_model(det_config, str(tmp_path / "det"))
    serving = registry.get(config).serving(model, config, detector, det_config,
                                           score_threshold=0.0, max_persons=2)
    folder = str(tmp_path / "saved_model")
    export_saved_model(serving, folder)

    drawn = spy_drawing(monkeypatch)
    estimator, kset = build_estimator(saved_model=folder)
    expected = keypoint_sets.of_config(config)  # the file's names and skeleton
    assert list(kset["joints"]) == list(expected["joints"])
    files = sorted(str(p) for p in pathlib.Path(config.data.root, "images").iterdir())
    counts = predict_files(estimator, files, str(tmp_path / "out"), kset)
    assert counts["processed"] == len(files) and counts["failed"] == 0
    assert drawn and all(d == ([list(e) for e in expected["skeleton"]],
                               list(expected["joints"])) for d in drawn)

    # An older custom detector workdir (no keypoint_set.json, no config.json) given with
    # a detector config without data flags: predict's Keras path gives the detector the
    # pose model's set (one set of data flags for both), as the exporters do.
    import os
    for name in ("keypoint_set.json", "config.json"):
        os.remove(tmp_path / "det" / name)
    from prtr_tf.config import load_config
    bare = load_config("custom_detector")  # data.root points nowhere: no set of its own
    for key, value in TINY_MODEL.items():
        if key in bare.model:
            bare.model[key] = value
    bare.model.update(dropout=0.0)
    bare.data.update(scales=(128,), max_size=192, crop_prob=0.0, test_size=128)
    assert not keypoint_sets.has_own_set(bare)
    estimator, kset = build_estimator(config=overfit_config("ap10k_mini"),
                                      checkpoint=str(workdir), detector_config=bare,
                                      detector_checkpoint=str(tmp_path / "det"))
    assert list(kset["joints"]) == list(expected["joints"])
    assert bare.data.keypoints.joints == tuple(expected["joints"])
    assert isinstance(estimator(np.zeros((96, 128, 3), np.uint8)), list)


def test_a_config_with_another_keypoint_set_is_refused(trained):
    """The ap10k workdir records its 17 animal joints (keypoint_set.json); a config of
    the same model sizes on COCO's 17 person joints fits the weights, and would label
    every joint wrongly: `weights.load_model` refuses it, naming the record."""
    import json

    from prtr_tf.data import keypoint_sets
    from prtr_tf.checkpoints import weights

    workdir, _ = trained("ap10k_mini")
    config = overfit_config("ap10k_mini")
    with open(workdir / "keypoint_set.json", encoding="utf-8") as f:
        assert json.load(f)["keypoint_names"] == list(keypoint_sets.of_config(config)["joints"])
    weights.load_model(config, str(workdir))  # the set it was trained on: loads
    config.data.dataset = "coco"
    with pytest.raises(ValueError, match=r"keypoint_set\.json\): keypoint_names"):
        weights.load_model(config, str(workdir / "last.weights.h5"))
