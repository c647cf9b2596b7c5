"""Every shell block of the docs (README.md, docs/*.md: ```sh, bash, shell, console) is
run here, on tiny data, as the reader types it, or is listed in `NOT_RUN` with the
reason. A new block fails `test_every_block_is_run_or_excused` until it is run (often
with no change here) or excused; an entry of `NOT_RUN` naming a command the docs no
longer show fails `test_not_run_names_only_commands_in_the_docs`.

How a page runs (`test_page_commands`): its blocks, in page order (`RUN_AFTER` moves a
block after another one of the page), form one bash script (``set -e``) run in a fresh
folder, so that a later block sees what an earlier one wrote (``runs/mine``) and the
shell variables it set (``D=...``). Each command is the docs' text (continuations joined,
comments dropped) with only these changes:

* the folder holds links to the checkout's ``train.py``, ``eval.py``, ``predict.py``,
  ``export/`` and ``tools/`` (the commands are written for the checkout's root), and
  ``.venv/bin`` is first on PATH (``python``, ``prtr-*``);
* ``configs/`` holds a stand-in for every config of the checkout, the real config at
  tiny sizes (tests/docs_harness.py ``tiny_config``): the model and image sizes of the
  tiny config of its family (configs/tiny.py, deform_tiny, synthetic_detector_tiny,
  deformable_detr_tiny, e2e_tiny), its data, keypoint set and classes kept, and one
  epoch of two steps of two samples (`docs_harness.TRAIN`), so ``--config=configs/
  coco_res50_384x288.py`` trains, converts and exports a tiny model with the same code;
* `SUBSTITUTIONS`: a few text replacements (paths on the reader's machine);
* `FIXTURES`: the inputs a page assumes the reader has (photos, a clip, a dataset, the
  official ``.pth`` checkpoints), made in the folder before the script runs.

To run a new block, add its inputs to `FIXTURES` (a maker in `MAKERS`) or a row to
`SUBSTITUTIONS`. On a failure the message shows the failing command as the docs print
it, the script that ran and the last 40 lines of its output.
"""
import contextlib
import io
import json
import os
import re
import subprocess
import time

import pytest

from tests import docs_harness as h
from tests.conftest import require_shared

pytestmark = pytest.mark.slow  # minutes: one process per command, each imports TensorFlow

# (regular expression, replacement, why): applied to every command that runs.
SUBSTITUTIONS = [
    (r"(?<![\w.])/data/mine\b", "data/mine",
     "the reader's dataset folder: FIXTURES' data/mine, a shared COCO-format set"),
    (r"(tools\.video_benchmark) --frames=24 --warmup=4 (--backends=keras)\b",
     r"\1 --frames=2 --warmup=2 \2",
     "a clip of 2 frames: the benchmark's rows in under a minute (its numbers mean nothing)"),
]

SAME_AS = "same command as {}, run there"  # a NOT_RUN reason checked by a test

# (docs file, first line of a command as printed, comment dropped): why it is not run.
NOT_RUN = {
    ("README.md", "make demo"):
        "creates .venv and pip-installs (network), then minutes of training; the demo "
        "itself runs in tests/test_demo.py (its --quick variant)",
    ("README.md", "make test"): "the test suite itself",
    ("README.md", "python3 -m venv .venv && . .venv/bin/activate"):
        "creates a virtual environment for the pip installs below (network)",
    ("README.md", "pip install -e ."): "needs the network (PyPI)",
    ("README.md", "pip install -e '.[export]'"): "needs the network (PyPI)",
    ("docs/testing.md", "make test"): "the test suite itself (CI runs it)",
    ("docs/testing.md", "make test-all"): "the whole test suite, this test included",
    ("docs/testing.md", "make test-docs"): "this test, for every page",
    ("docs/testing.md", 'make test-all PYTEST_ARGS="--junitxml=$PWD/suite.xml"'):
        "the whole test suite (about 70 minutes on 2 cores); the page's next command "
        "reads a report of the same format (FIXTURES: suite.xml)",
    ("docs/benchmarks.md",
     "python -m tools.benchmark --formats=function,saved_model,function_bf16,"
     "saved_model_bf16,onnx,pytorch,pipeline_saved_model"):
        "minutes per format on the full-size models (and PyTorch for 'pytorch'); "
        "tests/cli/test_benchmark.py runs tools.benchmark on the tiny model",
    ("docs/benchmarks.md",
     "python -m tools.benchmark --formats=detector,pipeline_saved_model,"
     "pipeline_saved_model_bf16,saved_model_bf16 --batches=1"):
        "minutes on the full-size models; tests/cli/test_benchmark.py runs "
        "tools.benchmark on the tiny model",
    ("docs/benchmarks.md", "python -m tools.benchmark --formats=function,saved_model,"
                           "pytorch --repeats=10 --slow_repeats=5"):
        "minutes on the full-size models (and PyTorch for 'pytorch'); "
        "tests/cli/test_benchmark.py runs tools.benchmark on the tiny model",
    ("docs/benchmarks.md", "python -m tools.benchmark "
                           "--config=configs/coco_deform_res50_384x288.py"):
        "minutes on the full-size deformable model (and PyTorch for 'pytorch'); "
        "tests/cli/test_benchmark.py runs tools.benchmark on the tiny models "
        "(configs/deform_tiny.py in process)",
    ("docs/benchmarks.md", "pip install -e '.[gpu]'"): "needs the network (PyPI) and a GPU",
    ("docs/benchmarks.md", "tools/gpu_check.sh"):
        "needs a CUDA GPU (8 minutes); tests/tools/test_gpu_check.py runs its CPU smoke "
        "variant and its no-GPU message",
    ("docs/inference.md", "python -m tools.threshold_sweep "
                          "--data_root=/tmp/prtr_convergence/data"):
        "scores the trained detectors of docs/demo.md's tools.detector_convergence run "
        "(/tmp/prtr_convergence/...), which only its two hours of training make; "
        "tests/tools/test_threshold_sweep.py checks the tool's counts by hand",
    ("docs/demo.md", "python -m tools.detector_convergence --workdir=/tmp/prtr_convergence "
                     "--minutes=26 --output=/tmp/prtr_convergence/report.md"):
        "the measurement itself: two detectors, three seeds, up to 26 training minutes "
        "each (about two hours on 2 cores); tests/tools/test_detector_convergence.py runs "
        "the tool with its training faked",
    ("docs/demo.md", "python -m tools.detector_convergence --workdir=/tmp/kptconv "
                     "--detectors=demo_keypoints,demo_deform_keypoints --seeds=0,1 --minutes=9 "
                     "--output=/tmp/kptconv/report.md"):
        "the measurement itself: two keypoint models, two seeds, 9 training minutes each "
        "(about 25 minutes on 2 cores); tests/tools/test_detector_convergence.py runs "
        "the tool with its training faked",
    ("docs/demo.md", "python -m tools.demo_seeds --workdir=/tmp/demo_seeds "
                     "--output=/tmp/demo_seeds_table.md"):
        "the measurement itself: make demo's job for three seeds (half an hour each on "
        "2 cores); tests/tools/test_demo_seeds.py runs the tool on demo results written "
        "there, tests/test_demo.py the demo (--quick)",
    ("docs/inference.md", "prtr-predict --source=0 --output=out/ --track --smooth --show ..."):
        "a webcam (/dev/video0) and a display; '...' stands for the model flags",
    ("docs/inference.md", "prtr-predict --source=rtsp://camera.local/stream --output=out/ "
                          "--track ..."):
        "a camera stream; '...' stands for the model flags",
    ("docs/inference.md", "prtr-predict --source='frames/%06d.png' --fps=25 --output=out/ "
                          "--track ..."):
        "'...' stands for the model flags; tests/inference/test_predict_video.py reads "
        "frame patterns",
    ("docs/inference.md", "python -m tools.video_benchmark --frames=24 --warmup=4 "
                          "--backends=tflite,saved_model --batches=1,4"):
        "minutes even at --frames=2 (6 min on the loaded 2-core host: a SavedModel export "
        "and three TFLite conversions of the demo-sized models); "
        "tests/tools/test_video_benchmark.py runs the tool on the tiny models (its Keras "
        "rows), tests/serving/test_predict.py::test_exported_backends_on_video the "
        "SavedModel and TFLite backends on a video",
}

# Blocks whose commands appear verbatim on another page, run there (checked by
# test_same_as_commands_are_run_on_their_page).
SAME_AS_PAGE = {  # (data.md's trainings run there too: its later commands read them)
    "docs/checkpoints.md": {
        "prtr-convert --config=configs/coco_res50_384x288.py": "README.md",
        "prtr-convert --config=configs/detr_r50_person.py": "README.md",
    },
}

# The pages this file runs by default: the README's quick starts (convert, predict on
# images and a clip, train a custom set and its detector, eval, export to SavedModel,
# ONNX and TFLite, predict with the export; about 6 minutes: extended, so `make test-all`
# and `make test-docs` run it, tests/conftest.py EXTENDED) and docs/testing.md (one
# command, seconds: in CI). The other pages take minutes each (trainings of every
# family, a dozen exports): `make test-docs` runs every page (PRTR_DOCS_ALL=1).
CI_PAGES = ("README.md", "docs/testing.md")
ALL_PAGES = os.environ.get("PRTR_DOCS_ALL") == "1"

# {page: {first command of a block: first command of the block it must follow}}
RUN_AFTER = {
    "docs/inference.md": {  # predict with the exports, once the page has exported them
        "python predict.py --source=photos/ --output=out_saved_model/ "
        "--saved_model=exported/prtr_r50":
            "python export/to_saved_model.py --config=configs/coco_res50_384x288.py "
            "--checkpoint=kpt.weights.h5",
    },
}

# {page: [inputs made in its folder before it runs]}: names of `MAKERS`.
FIXTURES = {
    "README.md": ["photos/", "clip.mp4", "pose_transformer_res50_384x288.pth",
                  "detr-r50-e632da11.pth", "data/mine"],
    "docs/checkpoints.md": ["deform_pose_transformer_res50_384x288.pth",
                            "deform_pose_transformer_res101_384x288.pth",
                            "r50_deformable_detr-checkpoint.pth"],
    "docs/data.md": ["data/mine", "photos/", "boxes.json"],
    "docs/demo.md": ["runs/demo/detections_val.json"],
    "docs/end_to_end.md": ["data/coco", "photos/", "detr_r101_person.weights.h5"],
    "docs/inference.md": ["data/coco", "res50_384x288.weights.h5",
                          "COCO_val2017_detr_detections.json", "data/mpii", "runs/w32",
                          "gt_valid.mat", "runs/detector", "photos/", "detr.weights.h5",
                          "clip.mp4", "runs/demo", "kpt.weights.h5", "crops.npy"],
    "docs/training.md": ["data/coco"],
    "docs/testing.md": ["suite.xml"],
}

# Fixtures that no command names: where the configs' defaults point.
IMPLICIT = {"data/coco": "the data.root of the coco_* and e2e_* configs",
            "data/mpii": "the data.root of the mpii_* configs"}


# ----------------------------------------------------------------------- the makers

def _photos(folder):
    """Two COCO val2017 images of ../shared/data/coco_mini (links)."""
    images = require_shared("data", "coco_mini", "images")
    (folder / "photos").mkdir()
    for path in sorted(images.iterdir())[:2]:
        (folder / "photos" / path.name).symlink_to(path)


def _boxes(folder):
    """boxes.json for photos/: one box per image, {file name: [[x, y, w, h, score]]}."""
    from PIL import Image
    boxes = {}
    for path in sorted((folder / "photos").iterdir()):
        w, h = Image.open(path).size
        boxes[path.name] = [[w * 0.25, h * 0.1, w * 0.5, h * 0.8, 0.9]]
    (folder / "boxes.json").write_text(json.dumps(boxes))


def _suite_report(folder):
    """suite.xml: a pytest JUnit report of three tests, one of them extended."""
    from tests.conftest import EXTENDED
    test, sibling = next(iter(EXTENDED.items()))
    cases = [(test.split("[")[0], 120.5), (sibling, 30.0),
             ("tests/test_tiers.py::test_suite_times_reads_a_junit_report", 0.5)]
    rows = []
    for nodeid, seconds in cases:
        path, _, name = nodeid.partition("::")
        rows.append(f'<testcase classname="{path[:-3].replace("/", ".")}" name="{name}" '
                    f'time="{seconds}" />')
    (folder / "suite.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">'
        + "".join(rows) + "</testsuite></testsuites>")


def _clip(folder):
    """A 6-frame synthetic clip of walking stick figures (prtr_tf.inference.synthetic_clip)."""
    from prtr_tf.inference.synthetic_clip import make_clip
    from prtr_tf.inference.video_out import VideoWriter
    clip = make_clip(num_frames=6, size=(160, 96), fps=15.0)
    with VideoWriter(str(folder / "clip.mp4"), fps=clip.fps) as writer:
        for frame in clip.frames:
            writer.write(frame)


def _custom_set(folder):
    """data/mine in the layout of the docs' $D (annotations/{train,val}.json,
    images/{train,val}): links to ../shared/data/onehand10k_mini (21 hand joints)."""
    shared = require_shared("data", "onehand10k_mini")
    root = folder / "data" / "mine"
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    for split in ("train", "val"):
        (root / "annotations" / f"{split}.json").symlink_to(shared / "hand_keypoints.json")
        (root / "images" / split).symlink_to(shared / "images")


def _coco(folder):
    """data/coco in COCO's layout (the coco_* configs' defaults): ../shared/data/coco_mini
    as both splits (links)."""
    shared = require_shared("data", "coco_mini")
    root = folder / "data" / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    for split in ("train2017", "val2017"):
        (root / "annotations" / f"person_keypoints_{split}.json").symlink_to(
            shared / "person_keypoints.json")
        (root / "images" / split).symlink_to(shared / "images")


def _official(config_file, training=False):
    """An official-layout checkpoint for the stand-in of ``config_file``, written as
    torch.save writes it (random values; ``training``: a DETR-style training
    checkpoint with an argparse.Namespace)."""
    def make(folder, name):
        from prtr_tf.config import load_config
        config = load_config(str(folder / config_file))
        h.write_torch_file(folder / name, h.official_state_dict(config),
                           training_args={"lr": 2e-4, "backbone": "resnet50"} if training
                           else None)
    return make


def _weights(config_file):
    """A Keras weights file of the stand-in of ``config_file`` (fresh initialisation)."""
    def make(folder, name):
        from prtr_tf.config import load_config
        h.write_weights(load_config(str(folder / config_file)), folder / name)
    return make


def _shared_link(*parts):
    """A link to a file of ../shared."""
    def make(folder, name):
        (folder / name).symlink_to(require_shared(*parts))
    return make


def _mpii(folder):
    """data/mpii in the layout of the mpii_* configs (annot/{train,valid}.json in the
    HRNet JSON layout, images/): ../shared/data/mpii_mini as both splits (links)."""
    shared = require_shared("data", "mpii_mini")
    root = folder / "data" / "mpii"
    (root / "annot").mkdir(parents=True)
    for split in ("train", "valid"):
        (root / "annot" / f"{split}.json").symlink_to(shared / "annotations.json")
    (root / "images").symlink_to(shared / "images")


def _gt_valid_mat(folder):
    """gt_valid.mat in the official layout (pos_gt_src, jnt_missing, headboxes_src,
    dataset_joints) for the persons of ../shared/data/mpii_mini, in its order: their
    joints and visibility, and a square head box between head_top and upper_neck."""
    import numpy as np
    from scipy.io import savemat

    from prtr_tf.data.keypoint_sets import MPII_JOINTS

    people = json.loads(require_shared("data", "mpii_mini", "annotations.json").read_text())
    joints = np.array([p["joints"] for p in people], np.float64)  # (N, 16, 2), 1-based
    vis = np.array([p["joints_vis"] for p in people], np.float64)
    top, neck = (joints[:, MPII_JOINTS.index(j)] for j in ("head_top", "upper_neck"))
    centre, side = (top + neck) / 2, np.linalg.norm(top - neck, axis=1)[:, None]
    boxes = np.stack([centre - side / 2, centre + side / 2], axis=1)  # (N, 2, 2)
    names = ["rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head",
             "rwri", "relb", "rsho", "lsho", "lelb", "lwri"]  # the official dataset_joints
    savemat(str(folder / "gt_valid.mat"), {
        "dataset_joints": np.array(names, dtype=object).reshape(1, -1),  # a MATLAB cell
        "jnt_missing": (1 - vis).T, "pos_gt_src": joints.transpose(1, 2, 0),
        "headboxes_src": boxes.transpose(1, 2, 0)})


@contextlib.contextmanager
def _inside(folder):
    """The current folder is ``folder`` (the configs' relative data roots)."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _train(folder, config_file, workdir, **data):
    """A training workdir of the stand-in ``config_file`` (its one short epoch, as
    ``python train.py --config=... --workdir=...``; ``data``: config.data overrides);
    returns the config."""
    from prtr_tf.config import load_config
    from prtr_tf.training.trainer import Trainer

    with _inside(folder):
        config = load_config(config_file)
        config.data.update(data)
        Trainer(config, workdir, strategy="default", stream=io.StringIO()).fit()
    return config


def _trained(config_file):
    """A training workdir of the stand-in of ``config_file`` (one short epoch)."""
    def make(folder, name):
        _train(folder, config_file, name.rstrip("/"))
    return make


def _demo_run(folder, keypoints=True):
    """runs/demo as `make demo` leaves it, from the demo's stand-in configs: the
    synthetic set (data/), the keypoint and detector workdirs (keypoints/, detector/:
    one short epoch each) and the detector's boxes on the held-out split
    (detections_val.json); without ``keypoints``, all but the keypoint workdir."""
    from prtr_tf.checkpoints.weights import load_model
    from prtr_tf.evaluation.coco import write_results
    from prtr_tf.models.detector.evaluate import detection_results

    root = "runs/demo/data"
    if keypoints:
        _train(folder, "configs/demo_keypoints.py", "runs/demo/keypoints", root=root)
    config = _train(folder, "configs/demo_deformable_detector.py", "runs/demo/detector",
                    root=root)
    with _inside(folder):
        detector = load_model(config, "runs/demo/detector/last.weights.h5")[0]
        write_results(detection_results(detector, config, "val", stream=io.StringIO()),
                      "runs/demo/detections_val.json")


def _crops(config_file):
    """crops.npy: two normalised crops of the stand-in of ``config_file``'s crop size,
    float32 (2, H, W, 3), as ``serve_crops`` takes them."""
    def make(folder, name):
        import numpy as np

        from prtr_tf.config import load_config
        height, width = load_config(str(folder / config_file)).model.image_size
        rng = np.random.default_rng(0)
        np.save(folder / name, rng.normal(size=(2, height, width, 3)).astype(np.float32))
    return make


MAKERS = {
    "photos/": lambda folder, name: _photos(folder),
    "boxes.json": lambda folder, name: _boxes(folder),
    "clip.mp4": lambda folder, name: _clip(folder),
    "suite.xml": lambda folder, name: _suite_report(folder),
    "data/mine": lambda folder, name: _custom_set(folder),
    "data/coco": lambda folder, name: _coco(folder),
    "pose_transformer_res50_384x288.pth": _official("configs/coco_res50_384x288.py"),
    "detr-r50-e632da11.pth": _official("configs/detr_r50_person.py"),
    "deform_pose_transformer_res50_384x288.pth":
        _official("configs/coco_deform_res50_384x288.py"),
    "deform_pose_transformer_res101_384x288.pth":
        _official("configs/coco_deform_res101_384x288.py"),
    "r50_deformable_detr-checkpoint.pth":
        _official("configs/deformable_detr_r50_coco.py", training=True),
    "detr_r101_person.weights.h5": _weights("configs/detr_r50_person.py"),
    "res50_384x288.weights.h5": _weights("configs/coco_res50_384x288.py"),
    "kpt.weights.h5": _weights("configs/coco_res50_384x288.py"),
    "detr.weights.h5": _weights("configs/detr_r50_person.py"),
    "COCO_val2017_detr_detections.json":
        _shared_link("data", "coco_mini", "person_detections.json"),
    "data/mpii": lambda folder, name: _mpii(folder),
    "gt_valid.mat": lambda folder, name: _gt_valid_mat(folder),
    "runs/w32": _trained("configs/mpii_w32_256x256.py"),
    "runs/detector": _trained("configs/synthetic_detector_tiny.py"),
    "runs/demo": lambda folder, name: _demo_run(folder),
    "runs/demo/detections_val.json": lambda folder, name: _demo_run(folder, keypoints=False),
    "crops.npy": _crops("configs/coco_res50_384x288.py"),
}


# ----------------------------------------------------------------------- the plan

def _excused(block, command):
    if (block.file, command.first_line) in NOT_RUN:
        return NOT_RUN[(block.file, command.first_line)]
    page = SAME_AS_PAGE.get(block.file, {}).get(command.first_line)
    return SAME_AS.format(page) if page else None


def _page_blocks(page):
    blocks = h.shell_blocks(page)
    for first, after in RUN_AFTER.get(page, {}).items():
        moving = next(b for b in blocks if b.first == first)
        blocks.remove(moving)
        blocks.insert(next(i for i, b in enumerate(blocks) if b.first == after) + 1, moving)
    return blocks


def substitute(text):
    for pattern, replacement, _ in SUBSTITUTIONS:
        text = re.sub(pattern, replacement, text)
    return text


def page_script(page):
    """(bash script of the page's commands that run, [(block, command)] they came from)."""
    lines, ran = ["set -e"], []
    for block in _page_blocks(page):
        for command in block.commands:
            if _excused(block, command) and not h.assigned_variables(command.text):
                continue
            label = f"### {page}:{command.line}: {command.first_line}"
            lines += [f"echo {_quote(label)}", substitute(command.text)]
            ran.append((block, command))
    return "\n".join(lines) + "\n", ran


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def _runnable_pages():
    return [p for p in h.docs_files()
            if any(not _excused(b, c) for b in h.shell_blocks(p) for c in b.commands)]


# ----------------------------------------------------------------------- the tests

def test_every_block_is_run_or_excused():
    """Every docs command is run by test_page_commands or excused with a reason; a
    block that is run in part has its other commands excused one by one."""
    for block in h.all_blocks():
        assert block.commands, f"{block.where()}: an empty shell block"
    # (run_or_excused is by construction: a command is excused or in its page's script)
    for page in h.docs_files():
        _, ran = page_script(page)
        ran_lines = {c.line for _, c in ran}
        for block in _page_blocks(page):
            for c in block.commands:
                assert c.line in ran_lines or _excused(block, c), (page, c.first_line)
    for reason in NOT_RUN.values():
        assert reason and not reason.startswith(" ")


def test_not_run_names_only_commands_in_the_docs():
    shown = {(b.file, c.first_line) for b in h.all_blocks() for c in b.commands}
    gone = [key for key in NOT_RUN if key not in shown]
    gone += [(page, first) for page, rows in SAME_AS_PAGE.items() for first in rows
             if (page, first) not in shown]
    assert not gone, f"NOT_RUN / SAME_AS_PAGE name commands the docs no longer show: {gone}"


def test_same_as_commands_are_run_on_their_page():
    """A command excused as "the same as on page P" is, word for word, a command that
    runs on page P (variables it uses included)."""
    for page, rows in SAME_AS_PAGE.items():
        blocks = {c.first_line: c for b in h.shell_blocks(page) for c in b.commands}
        for first, other in rows.items():
            _, ran = page_script(other)
            texts = {c.text for _, c in ran}
            assert blocks[first].text in texts, (
                f"{page}: {first!r} is not the same as a command that runs in {other}")


def test_substitutions_and_fixtures_are_used():
    """Every row of SUBSTITUTIONS changes a command that runs; every FIXTURES name has
    a maker and is named by a command of its page."""
    scripts = {p: page_script(p)[1] for p in h.docs_files()}
    texts = [c.text for ran in scripts.values() for _, c in ran]
    for pattern, _, why in SUBSTITUTIONS:
        assert any(re.search(pattern, t) for t in texts), f"unused substitution: {why}"
    for page, names in FIXTURES.items():
        page_text = " ".join(c.text for _, c in scripts[page])
        for name in names:
            assert name in MAKERS, name
            assert name in IMPLICIT or name.rstrip("/") in page_text, \
                f"{page} does not use {name}"


def _prepare(folder, page):
    for name in ("train.py", "eval.py", "predict.py", "export", "tools"):
        (folder / name).symlink_to(h.REPO / name)
    h.write_tiny_configs(folder)
    for name in FIXTURES.get(page, []):
        MAKERS[name](folder, name)


def _tail(text, n=40):
    return "\n".join(text.splitlines()[-n:])


@pytest.mark.parametrize("page", _runnable_pages())
def test_page_commands(page, tmp_path):
    """The page's shell blocks run as a reader runs them, on tiny data (module doc)."""
    if page not in CI_PAGES and not ALL_PAGES:
        pytest.skip(f"{page}: run by make test-docs (PRTR_DOCS_ALL=1); make test runs "
                    f"{', '.join(CI_PAGES)}")
    folder = tmp_path / "reader"
    folder.mkdir()
    _prepare(folder, page)
    script, ran = page_script(page)
    (folder / "docs_commands.sh").write_text(script)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1",
               PATH=f"{h.REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    start = time.time()
    proc = subprocess.run(["bash", "docs_commands.sh"], cwd=folder, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    took = time.time() - start
    print(f"{page}: {len(ran)} commands in {took:.0f} s")
    if proc.returncode != 0:
        markers = re.findall(r"^### (.*)$", proc.stdout, re.M)
        failed = next((c for _, c in ran if markers and markers[-1].endswith(c.first_line)
                       and markers[-1].startswith(f"{page}:{c.line}:")), None)
        block = next((b for b, c in ran if c is failed), None)
        pytest.fail(
            f"{page}: a documented command failed (exit {proc.returncode})\n"
            f"--- the command ({page}:{failed.line if failed else '?'}):\n"
            f"{failed.text if failed else markers[-1:] }\n"
            f"--- its block as the docs show it ({block.where() if block else '?'}):\n"
            f"{block.text if block else ''}\n"
            f"--- the script that ran (in {folder}):\n{script}"
            f"--- the last 40 lines of output:\n{_tail(proc.stdout)}", pytrace=False)
