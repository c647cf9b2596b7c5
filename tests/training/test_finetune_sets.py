"""Fine-tuning across keypoint sets (issue 30): ``config.train.init_weights`` from a
tiny COCO-17 model starts a 21-joint (onehand10k_mini) and a 14-joint (crowdpose_mini)
run (one step each, then evaluated): every tensor whose shape fits is loaded, the class head (other joints) and the
query embedding (25 queries against 20) are re-initialised and named in one line,
the runs train a few steps and evaluate, and their workdirs record their own set.
Only training's init is lenient: eval/predict/export loading stays strict, and a
file of which almost nothing fits (another backbone) is refused.

The crowdpose run reads a copy of its file without 'iscrowd', 'area' and
'num_keypoints' (annotation files as converters write them): it trains and
evaluates with one summary warning.
"""
import io
import json
import logging
import os
import warnings

import h5py
import numpy as np
import pytest

from prtr_tf.checkpoints import weights
from prtr_tf.config import load_config
from prtr_tf.data import keypoint_sets
from prtr_tf.models import registry
from prtr_tf.training import keypoint_record
from prtr_tf.training.trainer import Trainer
from tests.custom_sets import TINY_MODEL, custom_config


@pytest.fixture(scope="module")
def coco_model(tmp_path_factory):
    """(workdir, model): a workdir holding a tiny COCO-17 keypoint model (configs/tiny.py: 20 queries, the
    sizes of tests/custom_sets.py otherwise) and its keypoint_set.json. Untrained: its
    initial weights, drawn with another seed than the runs' own initial ones, so
    that a loaded tensor and a re-initialised one differ."""
    import keras
    workdir = tmp_path_factory.mktemp("coco17") / "run"
    workdir.mkdir()
    config = load_config("tiny")
    assert config.model.num_joints == 17 and config.model.num_queries == 20
    assert all(config.model[k] == v for k, v in TINY_MODEL.items()
               if k not in ("num_queries", "image_size"))
    keras.utils.set_random_seed(12345)
    model = registry.get(config).build(config.model)
    model.save_weights(str(workdir / "last.weights.h5"))
    keypoint_record.record(str(workdir), config)
    return workdir, model


def _arrays(path):
    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(lambda n, o: out.__setitem__(n, o[...]) if isinstance(o, h5py.Dataset)
                     else None)
        return out


def _run_config(name, init_weights, ann=None):
    config = custom_config(name, resolve=False)
    if ann is not None:
        config.data.root, config.data.train_ann, config.data.val_ann = ann
    t = config.train
    t.init_weights = str(init_weights)
    t.batch_size, t.steps_per_epoch, t.epochs, t.eval_every_epochs = 2, 1, 1, 1
    t.checkpoint_every_steps, t.log_every_steps = 0, 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keypoint_sets.resolve(config)
    return config


def _finetune(config, workdir):
    """(trainer, the weights it started from as {file path: array}, history, log)."""
    log = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(config, str(workdir), strategy="default", stream=log)
        start = workdir.parent / f"{workdir.name}_start.weights.h5"
        trainer.model.save_weights(str(start))  # the same layout as the source file
        history = trainer.fit()
    return trainer, _arrays(start), history, log.getvalue()


def _check_start(source_dir, started, log, joints):
    """One init line naming what was re-initialised, and the run's starting weights:
    every tensor of the file whose shape fits, the run's own for the class head and
    the queries."""
    lines = [line for line in log.splitlines() if "config.train.init_weights" in line]
    assert len(lines) == 1, log
    line = lines[0]
    assert "re-initialised 3:" in line, line
    assert f"class_embed:0 [64, {joints + 1}] (file: [64, 18])" in line, line
    assert f"class_embed:1 [{joints + 1}] (file: [18])" in line, line
    assert "embedding:0 [25, 64] (file: [20, 64])" in line, line  # the query embedding
    source = _arrays(source_dir / "last.weights.h5")
    assert set(started) == set(source)
    different = sorted(p for p in source if source[p].shape != started[p].shape)
    assert different == ["class_embed/vars/0", "class_embed/vars/1",
                         "layers/embedding/vars/0"]
    for path, value in started.items():
        if path not in different:
            np.testing.assert_array_equal(value, source[path], err_msg=path)


def _check_run(workdir, history, config, joints):
    """Trained and evaluated; the workdir records the new set, and eval/predict/export
    load it with the run's config."""
    assert len(history) == 1 and np.isfinite(history[0]["loss"])
    assert "AP" in history[0] and "PCK@0.2" in history[0]  # the end-of-epoch evaluation
    with open(workdir / keypoint_record.FILE, encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["keypoint_names"] == list(config.data.keypoints.joints)
    assert len(saved["keypoint_names"]) == joints
    weights.load_model(config, str(workdir), fold=False)  # strict, and the set checks


@pytest.mark.slow  # a training run and its evaluation: ~35 CPU seconds
def test_a_coco_model_starts_a_21_joint_hand_run(coco_model, tmp_path):
    """Rules out: "does not fit" for another keypoint set; a tensor that fits left at its
    initial value; more than one line (or none) about the init; a workdir recording
    the source's set."""
    config = _run_config("onehand10k_mini", coco_model[0])
    trainer, started, history, log = _finetune(config, tmp_path / "run")
    _check_start(coco_model[0], started, log, 21)
    _check_run(tmp_path / "run", history, config, 21)
    # Strict everywhere else: the COCO file does not load as the hand model.
    with pytest.raises(ValueError, match="does not fit"):
        weights.load_into(trainer.model, str(coco_model[0]), "--checkpoint")


@pytest.mark.slow  # a training run and its evaluation: ~35 CPU seconds
def test_a_coco_model_starts_a_14_joint_run_on_a_converted_file(coco_model, tmp_path,
                                                                 caplog):
    """The 14-joint CrowdPose set from a copy of its file without 'iscrowd', 'area'
    and 'num_keypoints': it trains and evaluates (AP through pycocotools, whose ground
    truth needs the fields) with one warning about the defaults. Rules out the old
    behaviour: every annotation skipped, then "0 training samples"."""
    from tests.conftest import require_shared
    root = require_shared("data", "crowdpose_mini")
    with open(root / "person_keypoints.json", encoding="utf-8") as f:
        data = json.load(f)
    data["annotations"] = [{k: v for k, v in a.items()
                            if k not in ("iscrowd", "area", "num_keypoints")}
                           for a in data["annotations"]]
    (tmp_path / "data").mkdir()
    os.symlink(root / "images", tmp_path / "data" / "images")
    (tmp_path / "data" / "converted.json").write_text(json.dumps(data))
    caplog.set_level(logging.WARNING, logger="prtr_tf.data")
    config = _run_config("crowdpose_mini", coco_model[0],
                         ann=(str(tmp_path / "data"), "converted.json", "converted.json"))
    _, started, history, log = _finetune(config, tmp_path / "run")
    _check_start(coco_model[0], started, log, 14)
    _check_run(tmp_path / "run", history, config, 14)
    warned = [r.getMessage() for r in caplog.records if "given defaults" in r.getMessage()]
    assert len(warned) == 1 and "converted.json" in warned[0], warned
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]


def _variant(source, folder, name, change):
    """A copy of the .weights.h5 ``source`` whose datasets with a path for which
    ``change(path)`` is true get one more row (another shape)."""
    out = folder / f"{name}.weights.h5"
    with h5py.File(source, "r") as src, h5py.File(out, "w") as dst:
        def copy(path, obj):
            if isinstance(obj, h5py.Dataset):
                value = obj[...]
                if change(path):
                    value = np.zeros((value.shape[0] + 1,) + value.shape[1:], value.dtype)
                dst.create_dataset(path, data=value)
        src.visititems(copy)
    return out


def test_another_backbone_or_architecture_is_refused(coco_model, tmp_path):
    """Nothing or almost nothing fits: a clear error, not a model left mostly at its
    initial values. Another backbone (every backbone tensor of another shape; the
    Transformer's fit) and another architecture (no tensor fits) are refused; one
    layer of another shape is loaded around. Rules out a lenient load without a
    floor, and a floor that refuses fine-tuning."""
    workdir, model = coco_model
    file = workdir / "last.weights.h5"
    backbone = _variant(file, tmp_path, "backbone", lambda p: p.startswith("backbone/"))
    with pytest.raises(ValueError, match="of its backbone have a tensor") as e:
        weights.load_fitting(model, str(backbone), "config.train.init_weights")
    assert ("0.0% of the values of its backbone have a tensor of the same name and shape "
            "in the file (97 of the model's 162 tensors fit). It is a model of another "
            "architecture (another backbone?)") in str(e.value)  # as docs/errors.md quotes
    other = _variant(file, tmp_path, "other", lambda p: True)
    with pytest.raises(ValueError, match="0.0% of the values of the model"):
        weights.load_fitting(model, str(other), "config.train.init_weights")
    one = _variant(file, tmp_path, "one_layer", lambda p: p.startswith("input_proj/"))
    report = weights.load_fitting(model, str(one), "config.train.init_weights")
    assert [p for p, _, _ in report.reinitialised] == ["input_proj/vars/0",
                                                       "input_proj/vars/1"]
