"""The end-to-end PRTR trained by the shared trainer, then evaluated by eval.py and
exported as a SavedModel (issue: end-to-end variant).

One tiny model is trained once for the module (about 3 minutes on 2 CPU cores) on 4
synthetic images (15 persons) and evaluated on the same images: the check is that
detection, STN crops, keypoint matching, loss, readout and the coordinate mappings
work together well enough to memorise these persons, not generalisation.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EPOCHS = 60

CONFIG_FILE = """
from prtr_tf.config import load_config


def get_config():
    c = load_config("e2e_tiny")
    c.data.root = {root!r}
    c.data.synthetic = {{"train": (4, 21), "val": (4, 21)}}
    c.data.val_ann, c.data.val_images = c.data.train_ann, c.data.train_images
    c.data.scales = (256,)  # no scale augmentation: memorise these images
    c.train.batch_size, c.train.steps_per_epoch = 4, 10
    c.train.epochs = c.train.eval_every_epochs = {epochs}
    c.train.lr_steps = ({epochs} - 3,)
    c.train.checkpoint_every_steps = 0
    return c
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from prtr_tf.config import load_config
    from prtr_tf.training.trainer import Trainer

    tmp = tmp_path_factory.mktemp("e2e")
    config_path = tmp / "e2e_overfit.py"
    config_path.write_text(CONFIG_FILE.format(root=str(tmp / "data"), epochs=EPOCHS))
    config = load_config(str(config_path))
    workdir = tmp / "run"
    trainer = Trainer(config, str(workdir), strategy="default")
    history = trainer.fit()
    return dict(config=config, config_path=config_path, workdir=workdir, history=history,
                model=trainer.model, tmp=tmp)


def test_tiny_end_to_end_model_learns_a_small_synthetic_set(trained):
    """Threshold: untrained (and still after 10 epochs, while the detector has not
    found the persons) the keypoint AP is 0.00. Measured on this 2-core CPU, 600
    steps, seeds 1 and 2: loss 37 -> 0.51 / 0.58 (detection 8.4 -> 0.11 / 0.12), AP
    1.00 / 1.00; at 400 steps AP 0.79-0.88, except one clean-clone run (seed 0, other
    float rounding under pytest-xdist) whose detector lagged: AP 0.53, loss 5.5. Set
    prediction trajectories diverge on rounding (a near-tied match flips), hence 600
    steps and thresholds with room: AP >= 0.5 and a 5x loss drop, while a wrong box
    conversion, crop, target normalisation, matcher or readout mapping leaves AP
    near 0. (At 160 px it trains 3x faster, AP 0.29 / 0.81 / 1.00 after 200 / 400 / 600
    steps, but then the ONNX export's persons differed from the SavedModel's in
    test_onnx_export_of_the_end_to_end_pipeline: not understood yet, so 256 px stays.)"""
    history = trained["history"]
    first, last = history[0], history[-1]
    print(f"loss {first['loss']:.3f} -> {last['loss']:.3f}, det {first['loss_det']:.3f} -> "
          f"{last['loss_det']:.3f}, kpt {first['loss_kpt_set']:.3f} -> "
          f"{last['loss_kpt_set']:.3f}, AP {last['AP']:.3f}, AP .5 {last['AP .5']:.3f}")
    assert last["loss"] < first["loss"] / 5
    assert last["loss_det"] < first["loss_det"] / 2
    assert last["loss_kpt_set"] < first["loss_kpt_set"] / 5
    assert last["num_crops"] == 15  # each batch holds the 4 images: all 15 persons cropped
    assert last["AP"] >= 0.5
    assert os.path.exists(trained["workdir"] / "best.weights.h5")


# The CLI tests of this file (eval.py, export/*.py, predict.py) stay here, marked cli, for
# the module fixture `trained`; slow: they need it (~8 min on 2 CPU cores), then take
# ~30 s (eval.py, predict.py) to ~90 s (the ONNX export) each.
@pytest.mark.slow
@pytest.mark.cli
def test_eval_py_reproduces_the_trainer_metric(trained):
    """eval.py on the training workdir writes results that score the trainer's AP."""
    from prtr_tf.evaluation.coco import evaluate_coco

    output = trained["tmp"] / "eval_results.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "eval.py"), f"--config={trained['config_path']}",
         f"--checkpoint={trained['workdir']}", f"--output={output}"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "| Model | AP | AP .5 |" in proc.stdout
    results = json.loads(output.read_text())
    assert results and all(len(r["keypoints"]) == 17 * 3 for r in results)
    config = trained["config"]
    ann = os.path.join(config.data.root, config.data.val_ann)
    ap = evaluate_coco(ann, results)["AP"]
    np.testing.assert_allclose(ap, trained["history"][-1]["AP"], atol=1e-6)

    bad = subprocess.run(
        [sys.executable, os.path.join(ROOT, "eval.py"), f"--config={trained['config_path']}",
         f"--checkpoint={trained['workdir']}", "--use_gt_bbox"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert bad.returncode != 0 and "--use_gt_bbox does not apply" in bad.stderr


@pytest.mark.slow
@pytest.mark.cli
def test_exported_saved_model_equals_the_keras_model(trained):
    """export/to_saved_model.py writes the end-to-end model; its serve_encoded gives the
    persons of the Keras evaluation path (poses, rescoring, OKS-NMS in NumPy)."""
    import tensorflow as tf

    from prtr_tf.models.end_to_end.predict import predict_split
    from prtr_tf.models.end_to_end.evaluate import results

    config = trained["config"]
    output = trained["tmp"] / "saved_model"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "export", "to_saved_model.py"),
         f"--config={trained['config_path']}",
         f"--checkpoint={trained['workdir'] / 'best.weights.h5'}", f"--output={output}",
         "--score_threshold=0.0"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    loaded = tf.saved_model.load(str(output))
    assert set(loaded.signatures) == {"serving_default", "serve_encoded"}

    config.test.batch_size = 1  # one image per batch: the same padding as the export
    preds = predict_split(trained["model"], config, "val")
    expected = results(preds, config)
    images = json.loads(open(os.path.join(config.data.root, config.data.val_ann)).read())
    files = {im["id"]: im["file_name"] for im in images["images"]}
    compared = 0
    for image_id, name in files.items():
        path = os.path.join(config.data.root, config.data.val_images, name)
        got = loaded.signatures["serve_encoded"](
            image_bytes=tf.constant(open(path, "rb").read()))
        want = [r for r in expected if r["image_id"] == image_id]
        assert int(got["num_persons"]) == len(want)
        kpts = np.concatenate([got["keypoints"].numpy(),
                               got["keypoint_scores"].numpy()[..., None]], -1)
        for k, r in enumerate(want):  # both best first
            np.testing.assert_allclose(kpts[k], np.reshape(r["keypoints"], (17, 3)),
                                       atol=1e-3)
            np.testing.assert_allclose(float(got["scores"][k]), r["score"], atol=1e-5)
            compared += 1
    assert compared >= 10
    # serving_default (raw uint8 image) gives the same as serve_encoded.
    from prtr_tf.data.image import decode_bytes
    image = decode_bytes(tf.constant(open(path, "rb").read()))
    direct = loaded.signatures["serving_default"](image=image)
    np.testing.assert_allclose(direct["keypoints"].numpy(), got["keypoints"].numpy(),
                               atol=1e-4)


@pytest.mark.slow
@pytest.mark.cli
def test_predict_py_runs_the_end_to_end_model(trained):
    """predict.py --config=<end-to-end> --checkpoint finds and draws the persons: the
    same poses as the Keras evaluation path (results.json rounds to 0.01 px)."""
    from prtr_tf.models.end_to_end.predict import predict_split
    from prtr_tf.models.end_to_end.evaluate import results

    config = trained["config"]
    out = trained["tmp"] / "predicted"
    source = os.path.join(config.data.root, config.data.val_images)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "predict.py"), f"--config={trained['config_path']}",
         f"--checkpoint={trained['workdir']}", f"--source={source}", f"--output={out}",
         "--box_thr=0.0"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    got = {os.path.basename(r["file"]): r for r in json.loads((out / "results.json").read_text())}
    config.test.batch_size = 1
    expected = results(predict_split(trained["model"], config, "val"), config)
    images = json.loads(open(os.path.join(config.data.root, config.data.val_ann)).read())
    compared = 0
    for image in images["images"]:
        persons = got[image["file_name"]]["persons"]
        want = [r for r in expected if r["image_id"] == image["id"]]
        assert len(persons) == len(want)
        for p, r in zip(persons, want):
            np.testing.assert_allclose(p["keypoints"], np.reshape(r["keypoints"], (17, 3)),
                                       atol=0.01 + 1e-3)
            compared += 1
        assert (out / got[image["file_name"]]["annotated"]).is_file()
    assert compared >= 10

    bad = subprocess.run(
        [sys.executable, os.path.join(ROOT, "predict.py"), f"--config={trained['config_path']}",
         f"--checkpoint={trained['workdir']}", f"--source={source}", f"--output={out}",
         "--boxes_json=x.json"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert bad.returncode == 2 and "end-to-end model" in bad.stderr


def test_train_and_evaluate_on_real_coco_images(coco_mini, tmp_path):
    """Two steps and an evaluation on coco_mini: real images of different sizes
    (padded batches, masks, valid fractions), DETR's flip and random-crop branches
    with keypoints, then pycocotools on the real annotation file. Checks that all of
    it runs and stays finite (a tiny random model's AP is meaningless here)."""
    from prtr_tf.config import load_config
    from prtr_tf.training.trainer import Trainer

    config = load_config("e2e_tiny")
    config.data.root = str(coco_mini)
    config.data.synthetic = None
    for split in ("train", "val"):
        config.data[f"{split}_ann"] = "person_keypoints.json"
        config.data[f"{split}_images"] = "images"
    config.data.flip_prob, config.data.crop_prob = 0.5, 0.5
    config.data.scales, config.data.max_size = (128, 160), 224
    config.data.crop_resize_scales, config.data.crop_min_size = (160, 192), 96
    config.data.crop_max_size, config.data.test_size = 160, 160
    config.train.batch_size, config.train.steps_per_epoch, config.train.epochs = 2, 2, 1
    config.train.eval_every_epochs, config.train.checkpoint_every_steps = 1, 0
    history = Trainer(config, str(tmp_path / "run"), strategy="default").fit()
    row = history[0]
    assert np.isfinite(row["loss"]) and row["loss_kpt_set"] > 0 and row["num_crops"] > 0
    assert 0.0 <= row["AP"] <= 1.0 and "AR" in row


@pytest.mark.slow
@pytest.mark.cli
def test_onnx_export_of_the_end_to_end_pipeline(trained):
    """--onnx_compatible (matrix-product resize) + export/to_onnx.py: the whole
    end-to-end serving_default in onnxruntime equals its SavedModel."""
    import onnxruntime as ort
    import tensorflow as tf

    from prtr_tf.data.image import decode_bytes

    sm, onnx_path = trained["tmp"] / "saved_model_onnx", trained["tmp"] / "e2e.onnx"
    for cmd in ([os.path.join(ROOT, "export", "to_saved_model.py"),
                 f"--config={trained['config_path']}",
                 f"--checkpoint={trained['workdir'] / 'best.weights.h5'}", f"--output={sm}",
                 "--score_threshold=0.0", "--onnx_compatible"],
                [os.path.join(ROOT, "export", "to_onnx.py"), f"--saved_model={sm}",
                 "--signature=serving_default", f"--output={onnx_path}"]):
        proc = subprocess.run([sys.executable, *cmd], capture_output=True, text=True,
                              timeout=600, cwd=ROOT)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    fn = tf.saved_model.load(str(sm)).signatures["serving_default"]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    config = trained["config"]
    folder = os.path.join(config.data.root, config.data.val_images)
    persons = 0
    for name in sorted(os.listdir(folder)):
        image = decode_bytes(tf.constant(open(os.path.join(folder, name), "rb").read()))
        want = {k: v.numpy() for k, v in fn(image=image).items()}
        got = dict(zip(names, session.run(None, {"image": image.numpy()})))
        assert int(got["num_persons"]) == int(want["num_persons"])
        # Persons best first; a model this well fitted scores several persons the same
        # (P(person) and joint scores saturate at 1.0), and the two runtimes break such
        # ties differently: compare in one order (score to 1e-4, then box corner).
        for out in (got, want):
            order = np.lexsort((out["boxes"][:, 1], out["boxes"][:, 0],
                                -np.round(out["scores"], 4)))
            for key in ("keypoints", "boxes", "scores", "box_scores", "keypoint_scores"):
                out[key] = out[key][order]
        # Pixels to 5e-3: a joint at 68.13 px differed by 1.007e-3 on the CI host (the
        # two runtimes sum the STN's bilinear weights in different orders); a wrong
        # resize or crop is off by pixels.
        for key in ("keypoints", "boxes"):
            np.testing.assert_allclose(got[key], want[key], atol=5e-3)
        # Scores to 1e-4: a joint score 0.3626 differed by 1.05e-5 on an Intel Xeon host.
        for key in ("scores", "box_scores", "keypoint_scores"):
            np.testing.assert_allclose(got[key], want[key], atol=1e-4)
        persons += int(want["num_persons"])
    assert persons >= 10
