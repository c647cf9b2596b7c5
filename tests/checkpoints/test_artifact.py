"""The self-contained model file (prtr_tf.checkpoints.artifact; issue 30) and the config a
model records (issue 26): a ``.keras`` file that Keras and `prtr_tf.load` open without
a config, that predict, eval and export take as ``--model``, with its model card; a
``--config`` that computes otherwise than the recorded one refused naming the fields.
(Training's best/last model files and config.json: tests/training/test_max_steps.py.)
"""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from prtr_tf.checkpoints import artifact, weights
from prtr_tf.config import load_config
from prtr_tf.models import registry

REPO = pathlib.Path(__file__).resolve().parents[2]


def _outputs(model, shape, seed=0):
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    out = model(x, training=False)
    return {k: np.asarray(v) for k, v in out.items()} if isinstance(out, dict) else \
        [np.asarray(o) for o in out]


def _assert_same(a, b):
    if isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5, err_msg=k)
    else:
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Random tiny keypoint and detector models as model files and as weights files."""
    root = tmp_path_factory.mktemp("artifact")
    out = {}
    for key, name in (("kpt", "synthetic_tiny"), ("det", "synthetic_detector_tiny")):
        config = load_config(name)
        model = registry.build_model(config)
        model.save_weights(str(root / f"{key}.weights.h5"))
        artifact.save(model, config, str(root / f"{key}.keras"), tool="test")
        out[key], out[f"{key}_model"], out[f"{key}_config"] = str(root / f"{key}.keras"), \
            model, config
        out[f"{key}_h5"] = str(root / f"{key}.weights.h5")
    out["root"] = root
    return out


@pytest.mark.parametrize("name,shape", [("synthetic_tiny", (1, 128, 96, 3)),
                                        ("synthetic_detector_tiny", (1, 64, 80, 3)),
                                        ("e2e_tiny", (1, 64, 80, 3))])
def test_a_model_file_gives_the_same_model_to_keras_and_prtr_tf_load(tmp_path, name, shape):
    """Rules out: weights lost or reordered in the archive, a config that comes back
    otherwise (tuples as lists), a file Keras itself cannot open, no card."""
    import keras

    import prtr_tf
    config = load_config(name)
    model = registry.build_model(config)
    expected = _outputs(model, shape)
    path, card = artifact.save(model, config, str(tmp_path / "m.keras"), tool="test",
                               metrics={"AP": 0.5})
    loaded = prtr_tf.load(path)
    _assert_same(expected, _outputs(loaded, shape))
    assert loaded.prtr_config.model == config.model  # tuples stay tuples
    wrapper = keras.saving.load_model(path)  # Keras alone, once prtr_tf is imported
    _assert_same(expected, _outputs(wrapper.model, shape))
    assert wrapper.info["kind"] == config.model.kind
    text = pathlib.Path(card).read_text()
    assert card == str(tmp_path / "m.md") and "AP: 0.5000" in text
    assert f"model.kind`: {config.model.kind!r}" in text
    if config.model.get("num_joints"):
        assert "17 joints (coco): nose, left_eye" in text


def test_files_that_are_no_prtr_tf_model_are_clear_errors(tmp_path):
    import keras
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    plain.save(str(tmp_path / "plain.keras"))
    with pytest.raises(ValueError, match="is a Keras model file but not a prtr-tf model"):
        artifact.read_info(str(tmp_path / "plain.keras"))
    (tmp_path / "cut.keras").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="is not a Keras model file"):
        artifact.read_info(str(tmp_path / "cut.keras"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        weights.load_model(None, str(tmp_path / "nope.keras"))
    with pytest.raises(ValueError, match="records none"):  # weights alone carry no config
        plain.save_weights(str(tmp_path / "w.weights.h5"))
        weights.load_model(None, str(tmp_path / "w.weights.h5"))


def test_a_config_that_computes_otherwise_is_refused_naming_the_fields(files):
    """Rules out: weights loaded into a config of another crop size or token layout
    (keypoints hundreds of pixels off) without a word; a harmless difference (test
    thresholds, data paths, training fields) refused; --force_config not honoured."""
    other = load_config("synthetic_tiny")
    other.model.pos_in_tokens = True
    other.data.pixel_std = 100.0
    with pytest.raises(ValueError) as e:
        weights.load_model(other, files["kpt"])
    message = str(e.value)
    assert "model.pos_in_tokens=True (recorded False)" in message
    assert "data.pixel_std=100.0 (recorded 200.0)" in message and "--force_config" in message
    notes = []
    model, config, _ = weights.load_model(other, files["kpt"], force_config=True,
                                          log=notes.append)
    assert config is other and "model.pos_in_tokens" in notes[0]
    harmless = load_config("synthetic_tiny")
    harmless.test.image_thre, harmless.data.root = 0.3, "/elsewhere"
    harmless.model.dropout, harmless.train.lr = 0.1, 1.0
    assert weights.load_model(harmless, files["kpt"])[1] is harmless
    # A workdir records its config too: the same rule for a weights file in it.
    workdir = files["root"] / "run"
    workdir.mkdir()
    os.link(files["kpt_h5"], workdir / "best.weights.h5")
    artifact.record_config(str(workdir), files["kpt_config"])
    again = load_config("synthetic_tiny")  # (`other` was accepted by --force_config)
    again.model.pos_in_tokens = True
    with pytest.raises(ValueError, match=r"model.pos_in_tokens=True \(recorded False\)"):
        weights.load_model(again, str(workdir))
    assert weights.load_model(None, str(workdir))[1].model == files["kpt_config"].model
    # Another tool's config.json beside a weights file is no record: --config decides.
    elsewhere = files["root"] / "theirs"
    elsewhere.mkdir()
    os.link(files["kpt_h5"], elsewhere / "kpt.weights.h5")
    (elsewhere / "config.json").write_text('{"learning_rate": 0.1}')
    assert artifact.recorded_config(str(elsewhere / "kpt.weights.h5")) == (None, None)
    assert weights.load_model(other, str(elsewhere / "kpt.weights.h5"))[1] is other
    # --force_config's acceptance holds for that config object (a CLI checks it, then
    # loads with it: no second refusal, no second warning).
    notes.clear()
    assert weights.load_model(other, files["kpt"], log=notes.append)[1] is other
    assert not notes


def test_convert_writes_a_model_file_with_its_source_hash_and_card(tmp_path):
    """prtr-convert --output=X.keras: the provenance names the source file and its
    SHA-256; the card is written beside it and an existing card is kept."""
    import tensorflow as tf

    from prtr_tf.checkpoints.convert import convert_backbone
    from prtr_tf.checkpoints.torch_import import backbone_mapping
    from prtr_tf.nn.backbones import build_backbone

    backbone = build_backbone("resnet_tiny")
    backbone(tf.zeros((1, 32, 32, 3)))
    rng = np.random.default_rng(0)
    state = {n: rng.normal(size=s).astype(np.float32)
             for n, (s, _) in backbone_mapping(backbone).items()}
    np.savez(tmp_path / "imagenet.npz", **state)
    config = load_config("synthetic_tiny")
    out = str(tmp_path / "tiny.keras")
    convert_backbone(config, str(tmp_path / "imagenet.npz"), out, licence="BSD-3-Clause")
    info, recorded = artifact.read_info(out)
    digest = hashlib.sha256((tmp_path / "imagenet.npz").read_bytes()).hexdigest()
    assert info["provenance"]["source"] == "imagenet.npz"
    assert info["provenance"]["source_sha256"] == digest
    assert info["provenance"]["licence"] == "BSD-3-Clause"
    assert recorded.model == config.model
    card = (tmp_path / "tiny.md").read_text()
    assert digest in card and "BSD-3-Clause" in card
    loaded = artifact.load(out, fold=False)[0]
    np.testing.assert_array_equal(loaded.backbone.conv1.kernel.numpy(),
                                  state["conv1.weight"].transpose(2, 3, 1, 0))
    (tmp_path / "other.md").write_text("my notes\n")
    with pytest.raises(FileExistsError, match="other.md"):
        convert_backbone(config, str(tmp_path / "imagenet.npz"), str(tmp_path / "other.keras"))
    assert (tmp_path / "other.md").read_text() == "my notes\n"
    assert not (tmp_path / "other.keras").exists()


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          cwd=str(REPO), env=env)


def test_predict_and_export_take_the_model_files_alone(files, tmp_path):
    """predict --model --detector gives the persons the config + weights flags give;
    export saved_model takes them too; a plain Keras file is one line, exit 2."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), np.uint8)).save(photos / "a.png")
    by_file = _run("predict.py", f"--source={photos}", f"--output={tmp_path / 'a'}",
                   f"--model={files['kpt']}", f"--detector={files['det']}", "--box_thr=0.0")
    assert by_file.returncode == 0, by_file.stderr
    by_flags = _run("predict.py", f"--source={photos}", f"--output={tmp_path / 'b'}",
                    "--config=synthetic_tiny", f"--checkpoint={files['kpt_h5']}",
                    "--detector_config=synthetic_detector_tiny",
                    f"--detector_checkpoint={files['det_h5']}", "--box_thr=0.0")
    assert by_flags.returncode == 0, by_flags.stderr
    a = json.loads((tmp_path / "a" / "results.json").read_text())[0]["persons"]
    b = json.loads((tmp_path / "b" / "results.json").read_text())[0]["persons"]
    assert len(a) == len(b) > 0
    for p, q in zip(a, b):
        np.testing.assert_allclose(p["keypoints"], q["keypoints"], atol=1e-3)
    exported = _run("-m", "prtr_tf.cli.export", "saved_model", f"--model={files['kpt']}",
                    f"--detector={files['det']}", f"--output={tmp_path / 'sm'}")
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "sm" / "saved_model.pb").is_file()
    import keras
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    plain.save(str(tmp_path / "plain.keras"))
    bad = _run("predict.py", f"--source={photos}", f"--output={tmp_path / 'c'}",
               f"--model={tmp_path / 'plain.keras'}", f"--detector={files['det']}")
    assert bad.returncode in (1, 2) and "not a prtr-tf model" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_eval_takes_a_model_file_with_the_data_of_a_config(files, coco_mini, tmp_path):
    """eval --model with a --config that only moves the data (same computation)."""
    flags = ["--config=synthetic_tiny", f"--config.data.root={coco_mini}",
             "--config.data.val_ann=person_keypoints.json", "--config.data.val_images=images",
             "--use_gt_bbox", f"--output={tmp_path / 'r.json'}"]
    ok = _run("eval.py", f"--model={files['kpt']}", *flags)
    assert ok.returncode == 0, ok.stderr
    assert "| Model | AP | AP .5 |" in ok.stdout  # the COCO table (format_table)
    results = json.loads((tmp_path / "r.json").read_text())
    assert results and {r["image_id"] for r in results} <= {785, 40083, 196141, 197388}
    refused = _run("eval.py", f"--model={files['kpt']}", *flags[:-1],
                   "--config.model.pos_in_tokens=True", f"--output={tmp_path / 's.json'}")
    assert refused.returncode == 1
    assert "model.pos_in_tokens=True (recorded False)" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_pose_estimator_takes_the_loaded_models_alone(files):
    """docs/inference.md's API: prtr_tf.PoseEstimator(prtr_tf.load(...), detector=
    prtr_tf.load(...)) finds the persons the explicit configs and detector find."""
    import prtr_tf
    from prtr_tf.models.detector.predict import DetrPersonDetector
    from prtr_tf.serving.estimator import PoseEstimator

    pose, det = prtr_tf.load(files["kpt"]), prtr_tf.load(files["det"])
    image = np.random.default_rng(2).integers(0, 255, (120, 160, 3), np.uint8)
    short = prtr_tf.PoseEstimator(pose, detector=det)
    short.detector.threshold = 0.0  # random weights: low scores
    explicit = PoseEstimator(pose, files["kpt_config"], detector=DetrPersonDetector(
        det, files["det_config"], score_threshold=0.0))
    a, b = short(image), explicit(image)
    generic = prtr_tf.estimator(pose, det)
    generic.detector.threshold = 0.0
    c = generic(image)
    assert len(a) == len(b) == len(c) > 0
    for p, q, r in zip(a, b, c):
        np.testing.assert_allclose(p["keypoints"], q["keypoints"], atol=1e-4)
        np.testing.assert_allclose(p["keypoints"], r["keypoints"], atol=1e-4)
    with pytest.raises(ValueError, match="load it with prtr_tf.load"):
        PoseEstimator(files["kpt_model"])
