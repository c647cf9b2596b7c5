"""Mutation testing of the fast pure-Python / NumPy modules (issue 27): how many
small bugs (mutants) planted in a module its fast tests catch.

    python -m tools.mutation                      # every module of MODULES, then the report
    python -m tools.mutation --modules=pck,hungarian --max_children=2
    python -m tools.mutation --report_only        # docs/mutation.md from the last runs

The tester is mutmut 3 (``pip install 'mutmut>=3.8,<4'``; not a dependency of the
package). Each module runs in its own scratch copy of the project
(``--scratch``/NAME: prtr_tf/, tests/, pytest.ini and a generated setup.cfg), so
the working tree is never modified: mutmut 3 writes its mutants into
``scratch/NAME/mutants/`` and imports the package from there. Only the test files
mapped to the module in `MODULES` run (mutmut runs, for each mutant, the tests that
call the mutated function).

The report (``docs/mutation.md``, written atomically) gives per module the mutants,
killed, survived, equivalent (`EQUIVALENT`: mutant name -> why no test can tell it
from the original) and the kill rate over the non-equivalent mutants, lists every
surviving mutant that is not known to be equivalent with its diff, and the table of
the mutants planted by hand in the TensorFlow-heavy modules (`HAND_PLANTED`), which
are too slow for a mutation run.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tests' ../shared material (tests/conftest.py), seen from the scratch copies too.
SHARED = os.environ.get("PRTR_SHARED", os.path.join(os.path.dirname(REPO), "shared"))
PYTHON = sys.executable

# The tests of a mapped file left out of mutation runs (too slow per mutant).
DESELECT = ["tests/data/test_keypoint_sets.py::test_training_mirrors_only_sets_with_pairs",
            "tests/training/test_workdir.py::test_a_checkpoint_holds_every_model_variable",
            # these import TensorFlow (the record loaders): 8 s per mutant run
            "tests/data/test_keypoint_sets.py::test_ap10k_species_are_one_object_class",
            "tests/data/test_keypoint_sets.py::"
            "test_custom_detector_and_end_to_end_configs_take_the_set"]

# name -> (module file, the fast test files that cover it).
MODULES = {
    "keypoint_sets": ("prtr_tf/data/keypoint_sets.py",
                      ["tests/data/test_keypoint_sets.py",
                       "tests/data/test_keypoint_sets_values.py"]),
    "keypoint_file": ("prtr_tf/data/keypoint_file.py",
                      ["tests/data/test_keypoint_sets.py",
                       "tests/data/test_keypoint_file_values.py"]),
    "keypoint_record": ("prtr_tf/training/keypoint_record.py",
                        ["tests/training/test_keypoint_record_values.py"]),
    "pck": ("prtr_tf/evaluation/pck.py", ["tests/evaluation/test_pck_values.py"]),
    "nms": ("prtr_tf/evaluation/nms.py", ["tests/evaluation/test_nms_values.py"]),
    "hungarian": ("prtr_tf/nn/hungarian.py", ["tests/nn/test_hungarian_values.py"]),
    "workdir": ("prtr_tf/training/workdir.py",
                ["tests/training/test_workdir.py", "tests/training/test_workdir_values.py"]),
    "progress": ("prtr_tf/training/progress.py", ["tests/training/test_progress_values.py"]),
    "atomic": ("prtr_tf/files/atomic.py", ["tests/files/test_atomic_values.py"]),
    "predict_results": ("prtr_tf/inference/predict.py",
                        ["tests/inference/test_predict_values.py"]),
    "tflite_metadata": ("prtr_tf/export/tflite/metadata.py",  # (metadata texts and writers)
                        ["tests/export/test_metadata_values.py"]),
    "boxes": ("prtr_tf/nn/boxes.py", ["tests/nn/test_boxes_values.py"]),
}

# Mutant name -> why it cannot be told from the original by any test (reviewed by hand).
_P = "prtr_tf.evaluation.pck.x_"
_NEG = "NumPy's reshape takes any negative size as the inferred one (-2 == -1)"
_K = "prtr_tf.data.keypoint_sets.x_"
_FLOATS = "known_sigmas returns Python floats: np.asarray makes float64 of them anyway"
_NAME = ("resolve reads only skeleton, flip_pairs, sigmas and sigma_source of the set "
         "it makes, never its name")
_F64 = "of_config's sigmas are float64 arrays already (make_keypoint_set, of_config)"
_N = "prtr_tf.evaluation.nms.x_"
_G = ("g enters only as d - g with d float64: an int or float (<= 64 bit) g gives the "
      "same float64 difference")
_DEAD = ("unreachable: poses without joints fail at d.reshape(-1, 0, 3), so e has at "
         "least one column")
_SCORES = ("the scores are only argsorted: a dtype holding them exactly gives the same "
           "order (a list of Python floats is float64 either way)")
_AREAS = ("oks_iou converts a_d to float64, and a_g (a NumPy scalar of the areas) is "
          "promoted exactly when added to it")
_TF_SIGMAS = ("oks_iou_matrix_tf converts the sigmas to float64 itself; the shape check "
              "is dtype-blind")
_STABLE = "tf.argsort ignores `stable` (`del stable  # Unused.`: its sort is always stable)"
_STATELESS = ("tf.numpy_function tests `if stateful:`: None is falsy like False "
              "(a PyFuncStateless op either way)")
_T = "prtr_tf.export.tflite.metadata.x_"
_UTF8 = "Python's codec names are case-insensitive: 'UTF-8' is 'utf-8'"
_R = "prtr_tf.inference.predict.x_"
_JPEG = ("PIL upper-cases the format and infers it from the temporary file's .jpg "
         "suffix when None: a JPEG either way")
EQUIVALENT = {
    # pck
    _P + "distances__mutmut_3": "gt stays float64, so pred - gt is float64 whatever pred's dtype",
    _P + "distances__mutmut_5": "gt stays float64, so pred - gt is float64 whatever pred's dtype",
    _P + "distances__mutmut_7": "pred stays float64, so pred - gt is float64 whatever gt's dtype",
    _P + "distances__mutmut_9": "pred stays float64, so pred - gt is float64 whatever gt's dtype",
    _P + "distances__mutmut_25": _NEG,
    _P + "distances__mutmut_27": "None stored into a bool array is False",
    _P + "distances__mutmut_53": "axis=+1 of the (K, 2) selection is its last axis, as -1",
    _P + "box_normalizer__mutmut_11": _NEG,
    # keypoint_sets
    _K + "normalized_names__mutmut_5":
        "with side None no word is '<side>' (words() are [a-z0-9]+): the list is list(key)",
    _K + "make_keypoint_set__mutmut_91": _FLOATS,
    _K + "make_keypoint_set__mutmut_93": _FLOATS,
    _K + "resolve__mutmut_87": _NAME,
    _K + "resolve__mutmut_94": _NAME,
    _K + "oks_sigmas__mutmut_9": _F64,
    _K + "oks_sigmas__mutmut_11": _F64,
    # nms
    _N + "oks_iou__mutmut_7": _G,
    _N + "oks_iou__mutmut_9": _G,
    _N + "oks_iou__mutmut_11": _NEG,
    _N + "oks_iou__mutmut_25": _NEG,
    _N + "oks_iou__mutmut_35": _NEG,
    _N + "oks_iou__mutmut_68": _DEAD,
    _N + "oks_iou__mutmut_74": _DEAD,
    _N + "oks_iou__mutmut_99":
        "a pose of d with count 0 has total 0 (every joint masked): 0 / max(0, 1) is 0.0",
    _N + "oks_nms__mutmut_6": _SCORES,
    _N + "oks_nms__mutmut_8": _SCORES,
    _N + "oks_nms__mutmut_16": "oks_iou reshapes g to (J, 3) and d to (M, J, 3) itself",
    _N + "oks_nms__mutmut_18": "oks_iou converts the poses to float64 itself (exactly)",
    _N + "oks_nms__mutmut_20": "oks_iou converts the poses to float64 itself (exactly)",
    _N + "oks_nms__mutmut_24": _NEG,
    _N + "oks_nms__mutmut_28": _AREAS,
    _N + "oks_nms__mutmut_30": _AREAS,
    _N + "oks_nms_tf__mutmut_11": _TF_SIGMAS,
    _N + "oks_nms_tf__mutmut_13": _TF_SIGMAS,
    _N + "oks_nms_tf__mutmut_35": _STABLE,
    _N + "oks_nms_tf__mutmut_37": _STABLE,
    _N + "oks_nms_tf__mutmut_38": _STABLE,
    _N + "oks_nms_tf__mutmut_45": "oks_iou_matrix_tf takes x, y (keypoints[..., :2]) itself",
    # hungarian
    "prtr_tf.nn.hungarian.x_solve__mutmut_4":
        "scipy's linear_sum_assignment converts the costs to float64 itself",
    "prtr_tf.nn.hungarian.x_solve__mutmut_6":
        "scipy's linear_sum_assignment converts the costs to float64 itself",
    "prtr_tf.nn.hungarian.x_solve__mutmut_39": _NEG,
    "prtr_tf.nn.hungarian.x_assign__mutmut_9": _STATELESS,
    "prtr_tf.nn.hungarian.x_assign__mutmut_27": _STATELESS,
    # tflite_metadata
    _T + "keypoint_metadata__mutmut_19":
        "keypoint_sets.metadata(config), spread after it, sets 'dataset' to the same value",
    _T + "embed_metadata__mutmut_22": _UTF8,
    _T + "embed_metadata__mutmut_36":
        "pack's size hint only sizes the builder's first buffer (same bytes: it grows)",
    _T + "read_metadata__mutmut_5": "GetRootAsModel's offset defaults to 0",
    _T + "read_metadata__mutmut_20": _UTF8,
    # predict_results
    _R + "predict_files__mutmut_53": _JPEG,
    _R + "predict_files__mutmut_56": _JPEG,
    _R + "predict_files__mutmut_59": _JPEG,
    _R + "predict_files__mutmut_101":
        "the slice drops 5 characters either way; '_POSE' dedupes video stems alike and "
        "image names (ending .jpg) never equal a video stem",
    _R + "predict_files__mutmut_167":
        "fit_boxes_to_image reshapes the boxes to (-1, 4): an empty array of any width "
        "is (0, 4)",
    # progress
    "prtr_tf.training.progress.xǁProgressǁ__init____mutmut_15":
        "updates is >= 1 when compared with warmup, so warmup 0 and 1 behave alike",
    "prtr_tf.training.progress.xǁProgressǁrate__mutmut_15":
        "d1 == d0 with t1 > t0 gives 0 / (t1 - t0) = 0.0, the value of the else branch",
    "prtr_tf.training.progress.xǁProgressǁupdate__mutmut_18": 'float("NAN") is NaN as well',
    # atomic
    "prtr_tf.files.atomic.x__default_mode__mutmut_3":
        "os.umask(1) returns the same old umask and it is set back at once (one thread)",
    "prtr_tf.files.atomic.x_write_text__mutmut_4":
        "newline=None writes os.linesep, which is '\\n' on POSIX: the same bytes",
    "prtr_tf.files.atomic.x_write_text__mutmut_7":
        "newline=None writes os.linesep, which is '\\n' on POSIX: the same bytes",
    # workdir
    "prtr_tf.training.workdir.xǁWorkdirLockǁ__init____mutmut_7": "None is falsy like False",
    "prtr_tf.training.workdir.xǁWorkdirLockǁrelease__mutmut_1": "None is falsy like False",
    "prtr_tf.training.workdir.xǁWorkdirLockǁacquire__mutmut_4":
        "check_folder of a name that does not exist checks its existing parent, the cwd",
    "prtr_tf.training.workdir.x_check_folder__mutmut_15":
        "the else branch is reached only at '/', which is always a folder: the loop ends first",
    "prtr_tf.training.workdir.x_check_folder__mutmut_19":
        "the else branch is reached only at '/', which is always a folder: the loop ends first",
    "prtr_tf.training.workdir.x_upsert_csv_row__mutmut_21":
        "csv writes None as an empty field, as restval ''",
    "prtr_tf.training.workdir.x_upsert_csv_row__mutmut_24":
        "csv's DictWriter restval defaults to '' itself",
    # keypoint_record
    "prtr_tf.training.keypoint_record.x__plain__mutmut_1":
        "both sides come from JSON / metadata() as lists: list() never changes a comparison",
    "prtr_tf.training.keypoint_record.x__plain__mutmut_2":
        "list() of a joint name (a str) on both sides compares as the strings do",
}

# Notes appended to the report (why mutmut, real bugs found, what is not covered).
EXTRA_NOTES = [
    "", "## The tester", "",
    "mutmut 3 (`pip install 'mutmut>=3.8,<4'`), chosen because it runs here (Python "
    "3.11, pytest 9) and never edits the working tree: it writes its mutants into "
    "`mutants/` and switches them on per test run through trampolines, so a run cannot "
    "leave a mutated file behind in `prtr_tf/` (another engineer edits it concurrently), "
    "and it runs for each mutant only the tests that call the mutated function. "
    "cosmic-ray and mutmut 2 rewrite the source files in place. mutmut mutates function "
    "bodies, not module-level constants (e.g. `COCO_SIGMAS`, `DEFAULT_SIGMA`): those are "
    "pinned by the value tests directly.",
    "",
    "Run settings (setup.cfg written into each scratch copy): `process_isolation=forkserver` "
    "(a forked worker must not inherit what the stats run left in the process, e.g. an "
    "already-resolved config), `PRTR_SHARED` pointing at the project's `../shared` "
    "(otherwise the tests that need it skip in the scratch copy and every mutant they "
    "cover survives).",
    "", "## What the numbers cover", "",
    "Every module was run to the end, one at a time with `--max_children=1` (2 CPU "
    "cores shared with a test-suite run; 30 s to 9 min per module). Two tests of "
    "`tests/data/test_keypoint_sets.py` are deselected (`DESELECT`): they import "
    "TensorFlow for the record loaders, 8 s per mutant, and the value tests pin what "
    "they check of the module. The concurrent "
    "refactor added code to mapped modules during the session: "
    "`keypoint_record.other_joints` and `keypoint_sets.has_own_set` / `adopt` (both "
    "pinned by value tests since).",
    "",
    "Warnings' `stacklevel` is pinned by recording the `warnings.warn` call "
    "(monkeypatched), not by the file a warning is attributed to: mutmut's trampolines "
    "add two frames to every call of a mutated module, so a `filename == __file__` "
    "check fails the run's clean test pass (mutmut then reports nothing).",
    "", "## Real bugs found", "",
    "1. `prtr_tf/training/trainer.py` `_summary`: a float16 row's `loss_scale` column "
    "starts with `loss_`, so the epoch summary line prints it among the loss terms "
    "(`scale 16384.0000`) before the float16 note. Fix: `... for k in row if "
    "k.startswith(\"loss_\") and k != \"loss_scale\"]`. Test: "
    "`tests/training/test_trainer_values.py::test_summary_line` (fixed in d0d79db).",
    "2. `prtr_tf/data/keypoint_sets.py` `resolve`: a custom set with no published sigmas and "
    "`default_sigma` 0 (documented: scored without OKS) crashes with `TypeError: 'NoneType' "
    "object is not iterable` at `kp.sigmas = tuple(float(s) for s in kset[\"sigmas\"])`. "
    "Fix: `kp.sigmas = () if kset[\"sigmas\"] is None else tuple(...)`, and in `of_config` "
    "`sigmas=np.asarray(kp.sigmas, np.float64) if len(kp.sigmas) else None` (so "
    "`oks_sigmas` returns None). Test: `tests/data/test_keypoint_sets_values.py::"
    "test_resolve_without_sigmas_scores_without_oks` (fixed in d0d79db).",
]

STATUS_KILLED = ("killed", "timeout", "segfault")

# Run in the scratch folder: {"statuses": {mutant: status}, "diffs": {survivor: diff}}.
_STATUS_SCRIPT = """
import json, sys
from pathlib import Path
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
m = SourceFileMutationData(path=Path(sys.argv[1]))
m.load()
killed = sys.argv[2].split(",")
statuses = {k: status_by_exit_code[v] for k, v in m.exit_code_by_key.items()}
diffs = {k: get_diff_for_mutant(k, path=m.path) for k, s in statuses.items()
         if s not in killed}
print(json.dumps({"statuses": statuses, "diffs": diffs}))
"""


def _copy_project(scratch, module, tests):
    if os.path.exists(scratch):
        shutil.rmtree(scratch)
    os.makedirs(scratch)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(os.path.join(REPO, "prtr_tf"), os.path.join(scratch, "prtr_tf"),
                    ignore=ignore)
    shutil.copytree(os.path.join(REPO, "tests"), os.path.join(scratch, "tests"), ignore=ignore)
    shutil.copy2(os.path.join(REPO, "pytest.ini"), scratch)
    deselect = [f"    --deselect={d}" for d in DESELECT if d.split("::")[0] in tests]
    lines = ["[mutmut]", "source_paths=prtr_tf/", f"only_mutate={module}",
             "pytest_add_cli_args=", "    -p", "    no:cacheprovider", "    -q", *deselect,
             "pytest_add_cli_args_test_selection="] + [f"    {t}" for t in tests]
    lines += ["use_git_change_detection=false", "process_isolation=forkserver",
              "forkserver_warmup=collect", ""]
    with open(os.path.join(scratch, "setup.cfg"), "w") as f:
        f.write("\n".join(lines))


def _mutmut(scratch, *args, timeout=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1",
               PRTR_SHARED=SHARED)
    return subprocess.run([PYTHON, "-m", "mutmut", *args], cwd=scratch, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_module(name, scratch_root, max_children, timeout, collect_only=False):
    module, tests = MODULES[name]
    missing = [t for t in tests if not os.path.exists(os.path.join(REPO, t))]
    if missing:
        raise FileNotFoundError(f"{name}: test files {missing} do not exist")
    scratch = os.path.join(scratch_root, name)
    start = time.time()
    if collect_only:  # the results of an earlier (interrupted) run in scratch
        run = subprocess.CompletedProcess([], 0, "", "")
    else:
        _copy_project(scratch, module, tests)
        run = _mutmut(scratch, "run", "--max-children", str(max_children), timeout=timeout)
    seconds = time.time() - start
    # Statuses and the diffs of the survivors in one process (``mutmut show`` per
    # mutant starts mutmut each time).
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([PYTHON, "-c", _STATUS_SCRIPT, module, ",".join(STATUS_KILLED)],
                          cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"{name}: no mutmut results\n{run.stdout[-3000:]}\n"
                           f"{run.stderr[-3000:]}\n{proc.stderr[-3000:]}")
    found = json.loads(proc.stdout)
    statuses, diffs = found["statuses"], found["diffs"]
    if not statuses:
        raise RuntimeError(f"{name}: mutmut produced no mutants\n{run.stdout[-3000:]}\n"
                           f"{run.stderr[-3000:]}")
    result = dict(module=module, tests=tests, seconds=round(seconds, 1), statuses=statuses,
                  diffs=diffs, output=(run.stdout[-2000:] + run.stderr[-2000:]),
                  started=start)
    with open(os.path.join(scratch_root, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    shutil.rmtree(os.path.join(scratch, "mutants"), ignore_errors=True)
    return result


def _cell(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def _write_atomic(path, text):
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.partial-", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _host_and_dates(started):
    """"Runs of DATE[ to DATE] on CPU (N cores)." (the machine that writes the report:
    run the tool where the modules ran)."""
    import datetime

    from tools.machine import cpu_model
    days = sorted({datetime.datetime.fromtimestamp(t, datetime.timezone.utc).date()
                   .isoformat() for t in started if t})
    when = (days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}") if days else "?"
    return f"Runs of {when} on {cpu_model()} ({os.cpu_count()} cores)."


def report(scratch_root, path):
    rows, survivors, totals, started = [], [], [0, 0, 0, 0, 0], []
    for name in MODULES:
        result_file = os.path.join(scratch_root, f"{name}.json")
        if not os.path.exists(result_file):
            rows.append(f"| {name} | `{MODULES[name][0]}` | not run | | | | | | |")
            continue
        with open(result_file) as f:
            result = json.load(f)
        statuses = result["statuses"]
        started.append(result.get("started", 0))
        unchecked = [k for k, st in statuses.items() if st == "not checked"]
        killed = sum(st in STATUS_KILLED for st in statuses.values())
        equivalent = [k for k, st in statuses.items()
                      if st not in STATUS_KILLED and k in EQUIVALENT]
        alive = [k for k, st in statuses.items()
                 if st not in STATUS_KILLED and k not in EQUIVALENT and k not in unchecked]
        counted = len(statuses) - len(equivalent) - len(unchecked)
        rate = 100.0 * killed / counted if counted else 100.0
        for i, v in enumerate((len(statuses), killed, len(equivalent), len(alive),
                               len(unchecked))):
            totals[i] += v
        stale = [t for t in MODULES[name][1] + [MODULES[name][0]]
                 if os.path.getmtime(os.path.join(REPO, t)) > result.get("started", 0)]
        note = " (tests or module changed since this run)" if stale else ""
        rows.append(f"| {name}{note} | `{result['module']}` | {len(statuses)} | {killed} | "
                    f"{len(equivalent)} | {len(alive)} | {len(unchecked)} | {rate:.1f}% | "
                    f"{result['seconds']:.0f} |")
        for key in alive:
            survivors.append((key, statuses[key], result["diffs"].get(key, "")))
        for key in equivalent:
            survivors.append((key, "equivalent: " + EQUIVALENT[key], None))
    counted = totals[0] - totals[2] - totals[4]
    rate = 100.0 * totals[1] / counted if counted else 100.0
    out = ["# Mutation testing", "",
           "Generated by `python -m tools.mutation` (mutmut 3; see the tool's docstring). "
           "Kill rate = killed / (mutants - equivalent - not checked); *survived* counts "
           "mutants no test killed, including *no tests* (no mapped test calls the "
           "function); *not checked*: the run was stopped before it got to them. "
           + _host_and_dates(started), "",
           "| module | file | mutants | killed | equivalent | survived | not checked | "
           "kill rate | run (s) |",
           "|---|---|---|---|---|---|---|---|---|", *rows,
           f"| **all** | | {totals[0]} | {totals[1]} | {totals[2]} | {totals[3]} | "
           f"{totals[4]} | **{rate:.1f}%** | |", "",
           "Test files per module (deselected: " + ", ".join(f"`{d}`" for d in DESELECT) +
           "):", ""]
    out += [f"- {name}: " + ", ".join(f"`{t}`" for t in tests)
            for name, (_, tests) in MODULES.items()]
    out += ["", "## Surviving mutants", ""]
    if not survivors:
        out.append("None.")
    for key, status, diff in survivors:
        if diff is None:
            out.append(f"- `{key}`: {status}")
        else:
            out += [f"- `{key}`: **{status}**", "", "```diff", diff, "```", ""]
    out += ["", "## Mutants planted by hand (TensorFlow-heavy modules)", "",
            "`python -m tools.mutation_hand`: each mutant planted alone in a scratch copy of "
            "the project (a `cp` backup restored and compared byte for byte after it), its "
            "test files run. *new* = a test file added for issue 27.", ""]
    hand_file = os.path.join(scratch_root, "hand.json")
    if os.path.exists(hand_file):
        with open(hand_file) as f:
            hand = json.load(f)
        out += ["| # | file | original -> mutant | caught by | by the earlier tests alone |",
                "|---|---|---|---|---|"]
        for r in hand:
            by_file = {}
            for t in r["failed"]:
                by_file.setdefault(t.split("::")[0].split("/")[-1], []).append(t.split("::")[-1])
            caught = "; ".join(
                f"`{f}`{' (new)' if '_values.py' in f else ''}: " + (
                    f"`{tests[0]}`" if len(tests) == 1 else f"{len(tests)} tests")
                for f, tests in by_file.items()) if r["killed"] else "**not caught**"
            earlier = [t.split("/")[-1] for t in r["tests"] if "_values.py" not in t]
            alone = ("not run (slow suites)" if not earlier else
                     "yes" if any("_values.py" not in f for f in by_file) else "**no**")
            out.append(f"| {r['number']} | `{r['file']}` | `{_cell(r['old'])}` -> "
                       f"`{_cell(r['new'])}` | {caught} | {alone} |")
        hand_killed = sum(r["killed"] for r in hand)
        out += ["", f"{hand_killed} of {len(hand)} caught."]
    else:
        out.append("Not run.")
    out += EXTRA_NOTES
    _write_atomic(path, "\n".join(out) + "\n")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", default=",".join(MODULES),
                        help="comma-separated names of MODULES")
    parser.add_argument("--max_children", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per module")
    parser.add_argument("--scratch", default=os.path.join(tempfile.gettempdir(),
                                                          "prtr-mutation"))
    parser.add_argument("--report", default=os.path.join(REPO, "docs", "mutation.md"))
    parser.add_argument("--report_only", action="store_true")
    parser.add_argument("--collect_only", action="store_true",
                        help="read the results of an earlier run in --scratch, run nothing")
    args = parser.parse_args(argv)
    os.makedirs(args.scratch, exist_ok=True)
    if not args.report_only:
        names = [n for n in args.modules.split(",") if n]
        unknown = [n for n in names if n not in MODULES]
        if unknown:
            parser.error(f"unknown modules {unknown}; choose from {list(MODULES)}")
        for name in names:
            result = run_module(name, args.scratch, args.max_children, args.timeout,
                                args.collect_only)
            st = list(result["statuses"].values())
            killed = sum(s in STATUS_KILLED for s in st)
            print(f"{name}: {killed}/{len(st)} killed ({result['seconds']:.0f} s)", flush=True)
    print(report(args.scratch, args.report))


if __name__ == "__main__":
    main()
