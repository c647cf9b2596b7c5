"""Shared test fixtures.

Material from ``../shared`` (golden parity fixtures, coco_mini, mpii_mini) is read
in place. When it is missing a test skips with the reason, except under CI=true,
where a missing ``../shared`` is a failure.
"""
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from prtr_tf.cli import malloc  # noqa: E402  (the tools' malloc settings, before TensorFlow)

malloc.tune()

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("PRTR_SHARED", REPO.parent / "shared"))


def require_shared(*parts):
    """Path under ../shared; skips (or fails under CI=true) when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        msg = f"{path} is missing (the project's ../shared material)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + ": it must be present in CI")
        pytest.skip(msg)
    return path


@pytest.fixture
def golden_dir():
    return require_shared("golden")


@pytest.fixture
def coco_mini():
    return require_shared("data", "coco_mini")


@pytest.fixture
def mpii_mini():
    return require_shared("data", "mpii_mini")


# The files that take longest (minutes on 2 CPU cores), started first, longest first
# (the CI tier's order of `python -m tools.suite_times`, docs/testing.md): `make test`
# hands whole files to its 2 workers (pytest-xdist --dist loadfile) in collection
# order (with --no-loadscope-reorder; by default xdist sends the files with the most tests
# first), and these at the end of the order left one worker running them alone.
LONG_FIRST = ("tests/cli/test_bad_input.py", "tests/training/test_trainer.py",
              "tests/serving/test_saved_model.py",
              "tests/keypoint/test_custom_training.py",
              "tests/checkpoints/test_artifact.py",
              "tests/training/test_faults_keypoint.py",
              "tests/detector/test_deformable_detr.py", "tests/serving/test_predict.py",
              "tests/test_demo.py", "tests/keypoint/test_deformable.py",
              "tests/export/test_tflite.py", "tests/cli/test_bad_input_more.py",
              "tests/serving/test_threshold_default.py", "tests/cli/test_export.py",
              "tests/end_to_end/test_training.py",
              "tests/training/test_mixed_precision.py", "tests/end_to_end/test_model.py",
              "tests/inference/test_predict_video.py", "tests/cli/test_benchmark.py",
              "tests/tools/test_parity.py",
              "tests/detector/test_deformable_detr_export.py",
              "tests/training/test_finetune_sets.py", "tests/training/test_max_steps.py",
              "tests/detector/test_detr.py", "tests/test_configs.py",
              "tests/test_startup.py")


# The tests `make test` (CI, 35 minutes on 2 cores) leaves to `make test-all`, marked
# ``extended``: {test (a parametrized test's id with or without its parameters): the test
# of the CI tier that runs the same code path for less}. Each one repeats that path for
# another family, backend, keypoint set or process layout, or trains long enough to
# show learning where the CI tier checks the mechanics. tests/test_tiers.py checks that
# both names exist and that no sibling is itself extended; docs/testing.md lists them
# with their times (tools/suite_times.py).
_KILLS = ("tests/training/test_faults_keypoint.py::"
          "test_keypoint_run_survives_two_kills_of_five_points")
_E2E_CI = "tests/end_to_end/test_training.py::test_train_and_evaluate_on_real_coco_images"
_ONNX_CI = "tests/serving/test_saved_model.py::test_crops_parity_keras_saved_model_onnx"
_OVERFIT = "tests/training/test_trainer.py::test_tiny_config_overfits_a_small_synthetic_set"
_CUSTOM = "tests/keypoint/test_custom_training.py::"
_BAD = "tests/cli/test_bad_input.py::"
EXTENDED = {
    # Kill -9 and resume: one trainer for every family; CI kills the keypoint run at two
    # of its five kill points (drawn by the seed), make test-all at all five.
    "tests/training/test_faults_keypoint.py::test_keypoint_run_survives_kills": _KILLS,
    "tests/training/test_faults_end_to_end.py::test_end_to_end_run_survives_kills": _KILLS,
    "tests/training/test_faults_detector.py::test_detector_run_survives_kills": _KILLS,
    # Distribution: one strategy.run loop for every family.
    "tests/training/test_trainer.py::test_end_to_end_model_two_replicas_equal_one_device":
        "tests/training/test_trainer.py::test_mirrored_two_replicas_equals_one_device",
    "tests/training/test_trainer.py::test_multiworker_two_local_processes_end_identical":
        "tests/training/test_trainer.py::test_mirrored_two_replicas_equals_one_device",
    # Learning, shown by minutes of training: the keypoint model's overfit run stays.
    "tests/training/test_trainer.py::test_tiny_detector_learns_a_small_synthetic_set":
        _OVERFIT,
    # The end-to-end model trained for 10 minutes until it has learnt (AP >= 0.5), and
    # the tools on that model; CI trains it on real images and evaluates (2 steps), and
    # its exports and tools run in tests/checkpoints/test_artifact.py.
    "tests/end_to_end/test_training.py::test_tiny_end_to_end_model_learns_a_small_synthetic_set":
        _E2E_CI,
    "tests/end_to_end/test_training.py::test_eval_py_reproduces_the_trainer_metric": _E2E_CI,
    "tests/end_to_end/test_training.py::test_exported_saved_model_equals_the_keras_model":
        _E2E_CI,
    "tests/end_to_end/test_training.py::test_predict_py_runs_the_end_to_end_model": _E2E_CI,
    # ONNX: tf2onnx on whole pipelines takes minutes each; CI converts the keypoint
    # model's crops signature and the deformable attention layer.
    "tests/end_to_end/test_training.py::test_onnx_export_of_the_end_to_end_pipeline": _ONNX_CI,
    "tests/serving/test_saved_model.py::test_onnx_full_pipeline": _ONNX_CI,
    "tests/detector/test_deformable_detr_export.py::test_onnx_full_pipeline": _ONNX_CI,
    "tests/keypoint/test_deformable.py::test_tiny_saved_model_and_onnx_match_keras":
        "tests/nn/test_ms_deform_attn.py::test_onnx_matches_keras",
    # Official-layout fixtures through the command line (CI: the parity tool imports
    # the same fixtures with the same code; the tiny models convert in CI).
    "tests/keypoint/test_deformable.py::test_prtr_convert_cli_on_the_official_fixture":
        "tests/keypoint/test_deformable.py::test_parity_tool_on_fixture",
    "tests/detector/test_deformable_detr.py::"
    "test_r50_person_model_matches_the_fixtures_person_detections":
        "tests/detector/test_deformable_detr.py::"
        "test_person_model_gives_the_full_models_person_detections",
    # A flag error of the benchmark tool per flag (CI: one of them).
    "tests/cli/test_benchmark.py::test_bad_flag_values_are_one_line_usage_errors[skip]":
        "tests/cli/test_benchmark.py::test_bad_flag_values_are_one_line_usage_errors[formats]",
    "tests/cli/test_benchmark.py::test_bad_flag_values_are_one_line_usage_errors[batches]":
        "tests/cli/test_benchmark.py::test_bad_flag_values_are_one_line_usage_errors[formats]",
    # The two-stage SavedModel with the Deformable DETR detector (the same serving module
    # as with DETR; its detector's TFLite file stays in CI).
    "tests/detector/test_deformable_detr_export.py::test_export_cli":
        "tests/cli/test_export.py::test_export_script_with_workdir_and_default_detector_size",
    "tests/detector/test_deformable_detr_export.py::test_serving_default_matches_pose_estimator":
        "tests/serving/test_saved_model.py::test_serving_default_equals_pose_estimator",
    "tests/detector/test_deformable_detr_export.py::test_padding_effect_on_raw_outputs":
        "tests/serving/test_saved_model.py::test_serving_default_equals_pose_estimator",
    # predict.py on a .tflite pair against the checkpoint (CI: the same files through
    # prtr-predict's estimators against Keras, tests/serving/test_threshold_default.py).
    "tests/serving/test_predict.py::test_tflite_equals_checkpoint":
        "tests/serving/test_threshold_default.py::"
        "test_same_default_threshold_and_persons_across_backends",
    # A SavedModel exported before box_scores existed (CI: today's export = Keras).
    "tests/serving/test_predict.py::test_old_saved_model_without_box_scores":
        "tests/serving/test_predict.py::test_saved_model_equals_checkpoint",
    # Custom keypoint sets: the hand set in CI (the others' tests use it).
    _CUSTOM + "test_a_tiny_model_overfits_each_custom_set[crowdpose_mini]":
        _CUSTOM + "test_a_tiny_model_overfits_each_custom_set[onehand10k_mini]",
    _CUSTOM + "test_a_tiny_model_overfits_each_custom_set[ap10k_mini]":
        _CUSTOM + "test_a_tiny_model_overfits_each_custom_set[onehand10k_mini]",
    _CUSTOM + "test_custom_detector_trains_and_predict_reads_the_saved_model_set":
        _CUSTOM + "test_exports_carry_the_keypoint_set_and_predict_draws_it",
    "tests/training/test_finetune_sets.py::test_a_coco_model_starts_a_21_joint_hand_run":
        "tests/training/test_finetune_sets.py::"
        "test_a_coco_model_starts_a_14_joint_run_on_a_converted_file",
    # Mixed precision: float16's loss scale across a resume, bfloat16 training (CI:
    # float16 against float32 step by step, overflow and regrowth).
    "tests/training/test_mixed_precision.py::test_the_loss_scale_is_checkpointed_and_resumes":
        "tests/training/test_mixed_precision.py::"
        "test_float16_follows_float32_an_overflow_skips_the_update_clean_steps_regrow",
    "tests/training/test_trainer.py::test_bfloat16_mixed_precision_trains_with_float32_variables":
        "tests/training/test_mixed_precision.py::"
        "test_float16_follows_float32_an_overflow_skips_the_update_clean_steps_regrow",
    # The TFLite file scored by pycocotools on a trained model (CI: = Keras on crops).
    "tests/export/test_tflite_accuracy.py::test_fp32_tflite_scores_as_keras":
        "tests/export/test_tflite.py::test_fp32_matches_keras",
    # The full-size deformable PRTR's GMACs against the official 29.1 (CI: the hand count
    # of one deformable encoder layer and the tiny model's sampling).
    "tests/tools/test_flops.py::test_official_deformable_gmacs":
        "tests/tools/test_flops.py::test_deformable_encoder_layer_hand_count",
    # The GPU check's CPU smoke run of every part (CI: its no-GPU path).
    "tests/tools/test_gpu_check.py::test_cpu_smoke_runs_every_part_and_writes_the_report":
        "tests/tools/test_gpu_check.py::test_without_a_gpu_it_says_so_and_measures_nothing",
    # tools/video_benchmark.py's table on the tiny models (a process importing TensorFlow
    # and tracing the pipeline, ~20 CPU s; CI: the same predict_video path with the Keras
    # models).
    "tests/tools/test_video_benchmark.py::test_keras_rows_on_a_two_frame_clip":
        "tests/inference/test_predict_video.py::test_cli_video_track_and_truncated",
    # A CLI's bad input: one case per check in CI, its variants (another flag through the
    # same check, another value) here; each case is a process importing TensorFlow.
    _BAD + "test_numbers_out_of_range_are_usage_errors[nan_box_thr]":
        _BAD + "test_numbers_out_of_range_are_usage_errors[max_side_1]",
    _BAD + "test_numbers_out_of_range_are_usage_errors[kpt_thr_above_1]":
        _BAD + "test_numbers_out_of_range_are_usage_errors[max_side_1]",
    _BAD + "test_predict_usage_errors[negative_max_side]":
        _BAD + "test_numbers_out_of_range_are_usage_errors[max_side_1]",
    _BAD + "test_predict_usage_errors[source_matches_nothing]":
        _BAD + "test_predict_usage_errors[missing_source]",
    _BAD + "test_predict_usage_errors[detector_config_alone]":
        _BAD + "test_predict_usage_errors[detector_as_keypoint_config]",
    _BAD + "test_eval_usage_errors[gt_and_det_json]":
        _BAD + "test_eval_usage_errors[missing_det_json]",
    _BAD + "test_convert_errors[unknown_format]": _BAD + "test_convert_errors[existing_output]",
    _BAD + "test_convert_errors[output_suffix]": _BAD + "test_convert_errors[existing_output]",
    # The full-size Deformable DETR in-process: its parameter count and its outputs on
    # the official fixture (CI: the parity tool builds the same R50 model, imports the
    # fixture's weights and compares the same outputs with the same rules).
    "tests/detector/test_deformable_detr.py::test_r50_parameter_count_and_import":
        "tests/detector/test_deformable_detr.py::test_parity_tool_passes_the_fixture",
    "tests/detector/test_deformable_detr.py::test_r50_forward_and_postprocess_match_the_fixture":
        "tests/detector/test_deformable_detr.py::test_parity_tool_passes_the_fixture",
    # The README's commands, as a reader types them (minutes: a process per command); CI
    # runs its tools' paths in tests/cli/ and predict/export from model files here.
    "tests/test_docs_commands.py::test_page_commands[README.md]":
        "tests/checkpoints/test_artifact.py::test_predict_and_export_take_the_model_files_alone",
}


def extended_sibling(nodeid):
    """The CI-tier sibling of an extended test, or None (the test runs in CI)."""
    return EXTENDED.get(nodeid) or EXTENDED.get(nodeid.split("[")[0])


def pytest_collection_modifyitems(config, items):
    """Tests of the command-line tools (they run a tool in a subprocess, as users do)
    carry the marker ``cli``: ``-m cli`` runs them, ``-m "not cli"`` the rest. Those of
    `EXTENDED` carry ``extended`` (`make test` deselects them). The files of
    `LONG_FIRST` come first (in that order), the rest as collected."""
    rank = {path: i for i, path in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
    for item in items:
        if item.get_closest_marker("cli") is None and "cli" in item.nodeid.split("/")[:2]:
            item.add_marker(pytest.mark.cli)
        if extended_sibling(item.nodeid):
            item.add_marker(pytest.mark.extended)


def pytest_terminal_summary(terminalreporter):
    """The fault-injection tests' report (tests/training/test_faults_*.py): how many
    kills each made, and that every killed run resumed to the uninterrupted weights."""
    lines = []
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            props = dict(getattr(report, "user_properties", []))
            if report.when == "call" and "fault_kills" in props:
                verdict = ("resumed to the uninterrupted run's weights and metrics"
                           if outcome == "passed" else "FAILED")
                lines.append(f"{report.nodeid.split('::')[-1]}: {props['fault_kills']} "
                             f"kill(s) -9 ({props.get('fault_plan', '')}; seed "
                             f"{props.get('fault_seed', '?')}): {verdict}")
    if lines:
        terminalreporter.section("fault injection")
        for line in lines:
            terminalreporter.line(line)
