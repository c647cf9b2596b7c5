"""Bad input to the command-line tools, run as users run them (train.py, eval.py,
predict.py, prtr-export / export/*.py, prtr-convert): the cases of the
"Bad input" table that no other test covers.

Every case checks the exit status (2: a usage error, 1: a user error), that the
message is one ``error: ...`` line naming the bad file, flag or value, whether the
pointer to ``--help`` follows it, and that there is no traceback. Nothing here
trains a model: each run stops at its first check (a few seconds, mostly imports).
"""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
BIN = os.path.dirname(sys.executable)
HINT = "(run with --help for the flags)"
# A synthetic set small enough to generate in a moment, and a batch it fills.
SMALL_SYNTHETIC = ['--config.data.synthetic={"train": (2, 1), "val": (2, 2)}',
                   "--config.train.batch_size=2"]


def run(*args, script=None):
    """``python SCRIPT ARGS`` (``script`` under the repository, or args[0] is a module
    flag such as ``-m``) in the repository, as a user runs it."""
    cmd = [sys.executable, *([str(REPO / script)] if script else []), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=ENV,
                          timeout=300)


def assert_error(proc, status, *parts, hint=None):
    """Exit ``status``; stderr ends with one ``error: ...`` line holding every one of
    ``parts`` (then the pointer to --help when ``hint``, default: for status 2); no
    traceback. (Log lines of TensorFlow may come before it.)"""
    err = proc.stderr
    assert proc.returncode == status, proc.stdout[-2000:] + err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = err.rstrip("\n").splitlines()
    hint = status == 2 if hint is None else hint
    if hint:
        assert lines[-1] == HINT, err[-3000:]
        lines = lines[:-1]
    else:
        assert HINT not in err, err[-3000:]
    assert lines[-1].startswith("error: "), err[-3000:]
    assert sum(line.startswith("error: ") for line in lines) == 1, err[-3000:]
    for part in parts:
        assert part in lines[-1], (part, lines[-1])
    return lines[-1]


# --------------------------------------------------------------------------- train.py


@pytest.mark.parametrize("args,parts,hint", [
    (["--config=configs/nope.py"],
     ["config 'configs/nope.py' not found (no such file, nor a config name); known "
      "configs:", "synthetic_tiny"], False),
    (["--config=synthetic_tiny", "--config.train.epoch=2"],
     ["a --config override names an unknown field: 'epoch'",
      'Did you mean "epochs" instead of "epoch"?'], True),
    (["--config=synthetic_tiny", "--config.train.epochs=two"],
     ["flag --config.train.epochs=two: invalid literal for int()"], True),
    (["--config=synthetic_tiny", "--strategy=bogus"],
     ["flag --strategy=bogus: value should be one of <auto|mirrored|multiworker|default>"],
     True),
    (["--config=synthetic_tiny", "--mixed_precision=fp8"],
     ["flag --mixed_precision=fp8: value should be one of <float32|bfloat16|float16>"], True),
    (["--config=synthetic_tiny", "--epochs=3"], ["Unknown command line flag 'epochs'"], True),
    (["--config=synthetic_tiny", "extra"], ["unexpected arguments: ['extra']"], True),
], ids=["missing_config", "override_typo", "override_type", "strategy", "mixed_precision",
        "unknown_flag", "stray_argument"])
def test_train_usage_errors(args, parts, hint, tmp_path):
    proc = run(*args, f"--workdir={tmp_path / 'run'}", script="train.py")
    assert_error(proc, 2, *parts, hint=hint)
    assert not (tmp_path / "run").exists()


def test_train_without_workdir(tmp_path):
    proc = run("--config=synthetic_tiny", script="train.py")
    assert_error(proc, 2, "--config and --workdir are required")


def test_train_config_file_with_a_syntax_error(tmp_path):
    (tmp_path / "broken.py").write_text("def get_config(:\n    pass\n")
    proc = run(f"--config={tmp_path / 'broken.py'}", f"--workdir={tmp_path / 'run'}",
               script="train.py")
    assert_error(proc, 2, "SyntaxError: invalid syntax (broken.py, line 1)")
    assert not (tmp_path / "run").exists()


def test_train_without_the_dataset(tmp_path):
    proc = run("--config=tiny", f"--config.data.root={tmp_path / 'coco'}",
               f"--workdir={tmp_path / 'run'}", script="train.py")
    assert_error(proc, 1, f"annotation file {tmp_path / 'coco'}/annotations/person_keypoints_"
                 "train2017.json not found", "see the README's 'Data' section")
    assert not (tmp_path / "run").exists()


def test_train_on_a_truncated_annotation_file(tmp_path):
    ann = tmp_path / "coco" / "annotations" / "person_keypoints_train2017.json"
    ann.parent.mkdir(parents=True)
    ann.write_text('{"images": [{"id": 1, ')
    proc = run("--config=tiny", f"--config.data.root={tmp_path / 'coco'}",
               f"--workdir={tmp_path / 'run'}", script="train.py")
    assert_error(proc, 1, f"annotation file '{ann}'", "it is truncated")


def test_train_keeps_out_of_a_users_data_folder(tmp_path):
    """config.data.synthetic set and config.data.root holding a user's files: nothing
    is generated there (tests/data/test_synthetic_ownership.py: the same, in-process)."""
    train = tmp_path / "mine" / "train"
    (train / "images").mkdir(parents=True)
    (train / "person_keypoints.json").write_text('{"images": []}')
    proc = run("--config=synthetic_tiny", f"--config.data.root={tmp_path / 'mine'}",
               f"--workdir={tmp_path / 'run'}", script="train.py")
    assert_error(proc, 1, f"{train} holds files that prtr-tf did not generate (no "
                 ".prtr-synthetic marker)", "--config.data.synthetic='{}'")
    assert sorted(os.listdir(train)) == ["images", "person_keypoints.json"]
    assert os.listdir(train / "images") == []


def test_train_with_fewer_samples_than_a_batch(tmp_path):
    proc = run("--config=synthetic_tiny", f"--config.data.root={tmp_path / 'data'}",
               SMALL_SYNTHETIC[0], f"--workdir={tmp_path / 'run'}", script="train.py")
    assert_error(proc, 1, "training samples are fewer than one batch "
                 "(config.train.batch_size=16)")


def test_train_into_a_busy_workdir(tmp_path):
    """A second train.py into a workdir another live run holds (the lock itself:
    tests/training/test_workdir.py)."""
    workdir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\n"
         "from prtr_tf.training.workdir import WorkdirLock\n"
         f"with WorkdirLock({str(workdir)!r}):\n"
         "    print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = run("--config=synthetic_tiny", f"--config.data.root={tmp_path / 'data'}",
                   *SMALL_SYNTHETIC, f"--workdir={workdir}", script="train.py")
    finally:
        holder.kill()
        holder.wait()
    assert_error(proc, 1, f"{workdir / '.lock'} is held by PID {holder.pid}: another run is "
                 "training into this workdir")
    assert os.listdir(workdir) == [".lock"]  # nothing written by the refused run


# ---------------------------------------------------------------------------- eval.py


@pytest.mark.parametrize("args,parts", [
    (["--config=tiny"], ["--model, or --config and --checkpoint, are required"]),
    (["--config=tiny", "--checkpoint=x.weights.h5", "--split=test"],
     ["flag --split=test: value should be one of <val|train>"]),
    (["--config=tiny", "--checkpoint=x.weights.h5", "--det_json=DIR/nope.json"],
     ["--det_json 'DIR/nope.json' does not exist"]),
    (["--config=tiny", "--checkpoint=x.weights.h5", "--det_json=DIR/dets.json",
      "--use_gt_bbox"], ["--use_gt_bbox and --det_json exclude each other"]),
    (["--config=synthetic_detector_tiny", "--checkpoint=x.weights.h5", "--flip_test"],
     ["--flip_test does not apply to DETR person detector configs"]),
], ids=["no_checkpoint", "split", "missing_det_json", "gt_and_det_json",
        "flag_not_for_detector"])
def test_eval_usage_errors(args, parts, tmp_path):
    (tmp_path / "dets.json").write_text("[]")
    proc = run(*[a.replace("DIR", str(tmp_path)) for a in args], script="eval.py")
    assert_error(proc, 2, *[p.replace("DIR", str(tmp_path)) for p in parts])


def test_eval_checkpoint_folder_without_weights(tmp_path):
    (tmp_path / "run").mkdir()
    proc = run("--config=tiny", f"--checkpoint={tmp_path / 'run'}", script="eval.py")
    assert_error(proc, 1, f"checkpoint '{tmp_path / 'run'}' is a folder without "
                 "best.weights.h5 or last.weights.h5")


# ------------------------------------------------------------------------- predict.py


KEYPOINT = ["--config=synthetic_tiny", "--checkpoint=x.weights.h5"]


@pytest.mark.parametrize("args,parts", [
    (["--source=DIR/nope.jpg", "--output=DIR/out", *KEYPOINT, "--boxes_json=DIR/boxes.json"],
     ["--source 'DIR/nope.jpg': no such file or folder"]),
    (["--source=DIR/empty", "--output=DIR/out", *KEYPOINT, "--boxes_json=DIR/boxes.json"],
     ["--source 'DIR/empty' matches no files"]),
    (["--source=DIR/image.png", "--output=DIR/boxes.json", *KEYPOINT,
      "--boxes_json=DIR/boxes.json"],
     ["--output 'DIR/boxes.json' is a file: --output is the folder for the annotated "
      "images and results.json"]),
    (["--source=DIR/image.png", "--output=DIR/out", "--config=synthetic_tiny",
      "--checkpoint=DIR/nope.weights.h5", "--boxes_json=DIR/boxes.json"],
     ["--checkpoint 'DIR/nope.weights.h5' does not exist"]),
    (["--source=DIR/image.png", "--output=DIR/out", *KEYPOINT, "--boxes_json=DIR/cut.json"],
     ["--boxes_json", "'DIR/cut.json'", "it is truncated"]),
    (["--source=DIR/image.png", "--output=DIR/out", *KEYPOINT,
      "--detector_config=synthetic_detector_tiny"],
     ["--detector_config and --detector_checkpoint go together"]),
    (["--source=DIR/image.png", "--output=DIR/out", "--config=synthetic_detector_tiny",
      "--checkpoint=x.weights.h5", "--boxes_json=DIR/boxes.json"],
     ["--config is a DETR person detector config (model.kind 'detr'); --config needs a "
      "PRTR keypoint Transformer, deformable PRTR keypoint Transformer or end-to-end PRTR "
      "config"]),
    (["--source=DIR/image.png", "--output=DIR/out", *KEYPOINT, "--boxes_json=DIR/boxes.json",
      "--max_side=-1"], ["--max_side and --max_frames must be >= 0"]),
    (["--source=DIR/image.png", "--output=DIR/out", "--saved_model=DIR/empty",
      "--precision=bfloat16"],
     ["--precision=bfloat16 is for the Keras models (--config, --checkpoint); an exported "
      "model keeps the precision it was exported in"]),
], ids=["missing_source", "source_matches_nothing", "output_is_a_file", "missing_checkpoint",
        "truncated_boxes_json", "detector_config_alone", "detector_as_keypoint_config",
        "negative_max_side", "precision_of_an_export"])
def test_predict_usage_errors(args, parts, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "image.png").write_bytes(b"")
    (tmp_path / "boxes.json").write_text("{}")
    (tmp_path / "cut.json").write_text('{"image.png": [[1, 2')
    proc = run(*[a.replace("DIR", str(tmp_path)) for a in args], script="predict.py")
    assert_error(proc, 2, *[p.replace("DIR", str(tmp_path)) for p in parts])
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- prtr-export, export/


def _prtr_export(*args):
    script = os.path.join(BIN, "prtr-export")
    if not os.path.exists(script):
        pytest.skip(f"{script} is not installed (pip install -e .)")
    return subprocess.run([script, *args], cwd=REPO, capture_output=True, text=True,
                          env=ENV, timeout=300)


def test_prtr_export_unknown_or_no_format():
    proc = _prtr_export("bogus", "--config=tiny")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines() == [
        "error: unknown format 'bogus': the first argument is one of saved_model, tflite, "
        "onnx", "(run prtr-export --help)"]
    proc = _prtr_export()
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.startswith("usage: prtr-export {saved_model,tflite,onnx} [flags]")


@pytest.mark.parametrize("script,args,status,parts", [
    ("export/to_tflite.py", ["--config=tiny", "--output=DIR/out", "--quantization=fp32,int4"], 2,
     ["--quantization: unknown ['int4']; choose from ('fp32', 'fp16', 'int8', 'int8_full')"]),
    ("export/to_tflite.py", ["--config=tiny", "--output=DIR/out", "--detector_size=800,1333"], 2,
     ["--detector_size needs --detector_config"]),
    ("export/to_tflite.py", ["--config=tiny", "--output=DIR/out",
                          "--detector_config=synthetic_detector_tiny", "--detector_size=800"],
     2, ["--detector_size must be H,W (two positive integers), got '800'"]),
    ("export/to_saved_model.py", ["--config=e2e_tiny", "--checkpoint=x.weights.h5",
                               "--output=DIR/out", "--max_persons=0"], 2,
     ["flag --max_persons=0: 0 is not a positive integer"]),
    ("export/to_onnx.py", ["--saved_model=DIR/empty", "--output=DIR/out.onnx"], 1,
     ["'DIR/empty' is not a SavedModel directory (no saved_model.pb)"]),
], ids=["tflite_quantization", "tflite_detector_size_alone", "tflite_detector_size_value",
        "saved_model_max_persons", "onnx_not_a_saved_model"])
def test_export_errors(script, args, status, parts, tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run(*[a.replace("DIR", str(tmp_path)) for a in args], script=script)
    assert_error(proc, status, *[p.replace("DIR", str(tmp_path)) for p in parts])
    assert sorted(os.listdir(tmp_path)) == ["empty"]


# ------------------------------------------------------------- prtr-convert (python -m prtr_tf.cli.convert)


def _npz(path):
    import numpy as np
    np.savez(path, **{"class_embed.bias": np.zeros(18, np.float32)})


@pytest.mark.parametrize("args,status,parts", [
    (["--config=tiny", "--checkpoint=DIR/ok.npz"], 2, ["missing --output"]),
    (["--config=tiny", "--checkpoint=DIR/nope.npz", "--output=DIR/o.weights.h5"], 1,
     ["checkpoint 'DIR/nope.npz' does not exist"]),
    (["--config=tiny", "--checkpoint=DIR/weights.safetensors", "--output=DIR/o.weights.h5"], 1,
     ["unsupported checkpoint format '.safetensors' for 'DIR/weights.safetensors'"]),
    (["--config=tiny", "--checkpoint=DIR/ok.npz", "--output=DIR/o.h5"], 1,
     ["--output 'DIR/o.h5' must end with .keras (a model file) or .weights.h5 (weights "
      "only)"]),
    (["--config=tiny", "--checkpoint=DIR/ok.npz", "--output=DIR/old.weights.h5"], 1,
     ["--output 'DIR/old.weights.h5' exists; pass --overwrite to replace it"]),
], ids=["missing_output", "missing_checkpoint", "unknown_format", "output_suffix",
        "existing_output"])
def test_convert_errors(args, status, parts, tmp_path):
    _npz(tmp_path / "ok.npz")
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    (tmp_path / "old.weights.h5").write_bytes(b"mine")
    before = sorted(os.listdir(tmp_path))
    proc = run("-m", "prtr_tf.cli.convert", *[a.replace("DIR", str(tmp_path)) for a in args])
    assert_error(proc, status, *[p.replace("DIR", str(tmp_path)) for p in parts])
    assert sorted(os.listdir(tmp_path)) == before
    assert (tmp_path / "old.weights.h5").read_bytes() == b"mine"


def test_convert_a_pth_that_is_no_checkpoint(tmp_path):
    """A .pth is read without PyTorch (`prtr_tf.checkpoints.torch_file`); one that is
    not a torch.save file is a one-line error naming it, and nothing is written."""
    (tmp_path / "official.pth").write_bytes(b"x")
    proc = run("-m", "prtr_tf.cli.convert", "--config=tiny",
               f"--checkpoint={tmp_path / 'official.pth'}",
               f"--output={tmp_path / 'o.weights.h5'}")
    assert_error(proc, 1, f"'{tmp_path / 'official.pth'}' is not a PyTorch checkpoint: it is "
                 "a text file", "torch.save")
    assert not (tmp_path / "o.weights.h5").exists()


def test_eval_output_that_exists_or_is_an_input(tmp_path):
    """eval's --output: an existing file is kept (exit 1 before any model is built,
    naming --overwrite), and the checkpoint itself is never the output, --overwrite or
    not (`prtr_tf.files.outputs`)."""
    old, weights = tmp_path / "old.json", tmp_path / "w.weights.h5"
    old.write_text("mine")
    weights.write_bytes(b"weights")
    proc = run("--config=tiny", f"--checkpoint={weights}", f"--output={old}", script="eval.py")
    assert_error(proc, 1, f"--output '{old}' exists; pass --overwrite to replace it")
    assert old.read_text() == "mine"
    proc = run("--config=tiny", f"--checkpoint={weights}", f"--output={weights}",
               "--overwrite", script="eval.py")
    assert_error(proc, 1, f"--output '{weights}' is the same path as --checkpoint")
    assert weights.read_bytes() == b"weights"


def test_predict_output_that_holds_files_or_is_the_source(tmp_path):
    """predict's --output: a folder that holds files (results.json, pictures, a user's
    notes) is kept unless --overwrite, and the --source folder is never the output, with
    or without --overwrite; both before any model is loaded (exit 1, one line)."""
    out, src = tmp_path / "out", tmp_path / "photos"
    out.mkdir()
    src.mkdir()
    (out / "results.json").write_text("[]")
    (src / "a.png").write_bytes(b"x")
    model = ["--config=tiny", f"--checkpoint={tmp_path / 'w.weights.h5'}",
             f"--boxes_json={tmp_path / 'boxes.json'}"]
    proc = run(f"--source={src}", f"--output={out}", *model, script="predict.py")
    assert_error(proc, 1, f"--output '{out}' exists and is not empty; pass --overwrite")
    assert (out / "results.json").read_text() == "[]"
    proc = run(f"--source={src}", f"--output={src}", "--overwrite", *model,
               script="predict.py")
    assert_error(proc, 1, f"--output '{src}' is the same path as --source")
    assert sorted(os.listdir(src)) == ["a.png"]


def test_export_outputs_that_exist_or_are_inputs(tmp_path):
    """prtr-export: the training workdir given as --checkpoint is never the SavedModel
    --output, even with --overwrite (that used to delete the run); an existing .onnx or
    .tflite is kept unless --overwrite; all before any model is built (exit 1)."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "best.weights.h5").write_bytes(b"w")
    proc = run("--config=e2e_tiny", f"--checkpoint={workdir}", f"--output={workdir}",
               "--overwrite", script="export/to_saved_model.py")
    assert_error(proc, 1, f"--output '{workdir}' is the same path as --checkpoint")
    assert sorted(os.listdir(workdir)) == ["best.weights.h5"]
    old = tmp_path / "model.onnx"
    old.write_bytes(b"mine")
    proc = run(f"--saved_model={tmp_path}", f"--output={old}", script="export/to_onnx.py")
    assert_error(proc, 1, f"--output '{old}' exists; pass --overwrite")
    lite = tmp_path / "lite"
    lite.mkdir()
    (lite / "keypoints_fp32.tflite").write_bytes(b"mine")
    proc = run("--config=tiny", f"--output={lite}", script="export/to_tflite.py")
    assert_error(proc, 1, f"--output '{lite / 'keypoints_fp32.tflite'}' exists; pass "
                 "--overwrite")
    assert old.read_bytes() == (lite / "keypoints_fp32.tflite").read_bytes() == b"mine"


@pytest.mark.parametrize("script,args,message", [
    ("train.py", ["--config=tiny", "--workdir=DIR/run", "--max_steps=-3"],
     "--max_steps=-3: must be a whole number >= 1"),
    ("predict.py", ["--source=DIR", "--output=DIR/o", *KEYPOINT, "--box_thr=nan"],
     "--box_thr=nan: must be a number between 0.0 and 1.0"),
    ("predict.py", ["--source=DIR", "--output=DIR/o", *KEYPOINT, "--kpt_thr=1.5"],
     "--kpt_thr=1.5: must be a number between 0.0 and 1.0"),
    ("predict.py", ["--source=DIR", "--output=DIR/o", *KEYPOINT, "--max_side=1"],
     "--max_side=1: 0 (no limit) or at least 32 pixels"),
    ("export/to_saved_model.py", ["--config=e2e_tiny", "--checkpoint=x.weights.h5",
                                  "--output=DIR/o", "--score_threshold=nan"],
     "--score_threshold=nan: must be a number between 0.0 and 1.0"),
], ids=["negative_max_steps", "nan_box_thr", "kpt_thr_above_1", "max_side_1",
        "nan_score_threshold"])
def test_numbers_out_of_range_are_usage_errors(script, args, message, tmp_path):
    """Numeric flags are checked (finite, in range) before any work: a NaN threshold
    used to export a SavedModel that never detects anyone, a negative --max_steps to
    exit 0 without training."""
    proc = run(*[a.replace("DIR", str(tmp_path)) for a in args], script=script)
    assert_error(proc, 2, message)
    assert not (tmp_path / "o").exists() and not (tmp_path / "run").exists()


def missing_from_the_table(test_file, names):
    """The test functions among ``names`` (a test module's globals) that the "Bad
    input" table of docs/errors.md does not name as ``test_file::NAME``."""
    text = (REPO / "docs" / "errors.md").read_text()
    table = text.split("\n## Bad input", 1)[1].split("\n## ", 1)[0]
    tests = [n for n in names if n.startswith("test_") and n != "test_the_table_lists_these_tests"]
    return [n for n in tests if not re.search(rf"{re.escape(test_file)}::{n}(\[|`)", table)]


def test_the_table_lists_these_tests():
    """Each test of this file is named in the "Bad input" table of docs/errors.md."""
    assert not missing_from_the_table("tests/cli/test_bad_input.py", list(globals()))


def test_train_data_root_or_workdir_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("mine")
    proc = run("--config=synthetic_tiny", f"--config.data.root={tmp_path / 'file'}",
               *SMALL_SYNTHETIC, f"--workdir={tmp_path / 'run'}", script="train.py")
    assert_error(proc, 1, f"{tmp_path / 'file'} is a file, not a folder: point "
                 "config.data.root (or --out) at a new or empty folder")
    proc = run("--config=synthetic_tiny", f"--config.data.root={tmp_path / 'data'}",
               *SMALL_SYNTHETIC, f"--workdir={tmp_path / 'file'}", script="train.py")
    assert_error(proc, 1, f"the workdir {tmp_path / 'file'} cannot be a folder: "
                 f"{tmp_path / 'file'} is a file")
    assert (tmp_path / "file").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_train_config_file_without_get_config(tmp_path):
    (tmp_path / "noget.py").write_text("X = 1\n")
    proc = run(f"--config={tmp_path / 'noget.py'}", f"--workdir={tmp_path / 'run'}",
               script="train.py")
    assert_error(proc, 2, "the --config file defines no get_config()")


def test_tflite_export_of_a_detector_config_names_config(tmp_path):
    proc = run("--config=synthetic_detector_tiny", f"--output={tmp_path / 'out'}",
               script="export/to_tflite.py")
    assert_error(proc, 1, "--config is a DETR person detector config (model.kind 'detr'); "
                 "a TFLite export needs a PRTR keypoint Transformer or deformable PRTR keypoint "
                 "Transformer config")
    assert os.listdir(tmp_path) == []


def test_eval_checkpoint_of_another_model_is_one_line(tmp_path):
    """The misfit names the file and the model, in one line (Keras' message was several)."""
    from prtr_tf.config import load_config
    from prtr_tf.models.registry import build_model

    build_model(load_config("synthetic_detector_tiny")).save_weights(
        str(tmp_path / "det.weights.h5"))
    proc = run("--config=tiny", f"--checkpoint={tmp_path / 'det.weights.h5'}", script="eval.py")
    line = assert_error(proc, 1, f"checkpoint '{tmp_path / 'det.weights.h5'}' does not fit the "
                        "model (PRTR keypoint Transformer", "check that the config is the one "
                        "it was trained with (")
    assert "config 'config'" not in line
