"""Converts an official PyTorch checkpoint (PRTR two-stage, DETR) into Keras weights.

    prtr-convert --config=configs/coco_res50_384x288.py \\
        --checkpoint=pose_transformer_res50_384x288.pth --output=res50_384x288.keras
    prtr-convert --config=configs/coco_res50_384x288.py \\
        --checkpoint=pose_transformer_res50_384x288.pth --output=res50_384x288.weights.h5

A ``.keras`` output is the self-contained model file (`prtr_tf.checkpoints.artifact`:
config, weights, keypoint set, preprocessing, the source file's name and SHA-256) with
its model card ``NAME.md`` beside it; every tool then takes it as ``--model`` without
``--config``. A ``.weights.h5`` output holds the weights only (loaded with the config).

The checkpoint is a state_dict saved by the official code (``.pth``, or a training
checkpoint holding it under ``model``; read without PyTorch by
`prtr_tf.checkpoints.torch_file`) or an ``.npz`` holding the same names.
Every tensor must match the configured model: unknown, missing or mis-shaped
tensors stop the conversion with the list of names. The output is a Keras weights
file (``.weights.h5``) for the config's model (`prtr_tf.models.registry.build_model`).

Detector configs (e.g. configs/detr_r50_person.py) take official DETR checkpoints; a
91-class COCO head is reduced to person + no-object when the config has
``num_classes=1``. The command line is `prtr_tf.cli.convert` (``prtr-convert``).

``--backbone_only`` takes an ImageNet classification checkpoint instead (torchvision's
``resnet50-0676ba61.pth``, HRNet's ``hrnetv2_w32_imagenet_pretrained.pth``; the
classification head is skipped and reported) and writes the config's model with that
backbone and the rest initialised as the trainer initialises it (seeded by
``config.train.seed``): ``--config.train.init_weights=OUTPUT`` then starts a run exactly
as ``--config.train.init_backbone=CHECKPOINT`` would, without torch.

    prtr-convert --backbone_only --config=coco_res50_384x288 \\
        --checkpoint=resnet50-0676ba61.pth --output=res50_imagenet.weights.h5
"""
from absl import logging

from prtr_tf.checkpoints import artifact
from prtr_tf.checkpoints.torch_import import load_imagenet_file
from prtr_tf.checkpoints.torch_import import read_state_dict
from prtr_tf.files import atomic
from prtr_tf.files.outputs import check_output
from prtr_tf.models import registry


def _check_output(output_path, overwrite, checkpoint_path):
    if not output_path.endswith((".weights.h5", artifact.SUFFIX)):
        raise ValueError(f"--output {output_path!r} must end with {artifact.SUFFIX} (a model "
                         "file) or .weights.h5 (weights only)")
    check_output(output_path, "--output", overwrite,
                 inputs=[("--checkpoint", checkpoint_path)])
    if output_path.endswith(artifact.SUFFIX):  # its card is written too
        check_output(output_path[:-len(artifact.SUFFIX)] + ".md", "--output's model card",
                     overwrite, inputs=[("--checkpoint", checkpoint_path)])


def _save(model, config, output_path, checkpoint_path, licence):
    if output_path.endswith(artifact.SUFFIX):
        return artifact.save(model, config, output_path, tool="prtr-convert",
                             source=checkpoint_path, licence=licence)[1]
    atomic.save_weights(model, output_path)
    return None


def convert(config, checkpoint_path, output_path, overwrite=False, licence=None):
    """Builds the configured model, imports the official weights, saves them
    (atomically: a killed conversion leaves no half-written file) as a weights file or
    a model file (``.keras``, with ``licence`` in its provenance and a model card).

    Returns the built Keras model (with the imported weights).
    """

    _check_output(output_path, overwrite, checkpoint_path)
    state_dict = read_state_dict(checkpoint_path)
    model, count = registry.get(config).import_official(config.model, state_dict)
    _save(model, config, output_path, checkpoint_path, licence)
    logging.info("imported %d tensors from %s into %s", count, checkpoint_path, output_path)
    return model


def convert_backbone(config, checkpoint_path, output_path, overwrite=False, licence=None):
    """Builds the configured model as the trainer does (the task's builder, seeded by
    ``config.train.seed``), imports an ImageNet classification checkpoint into its
    backbone (`prtr_tf.checkpoints.torch_import.load_imagenet_backbone`), saves the whole model
    (atomically) for ``config.train.init_weights``.

    Returns (model, `BackboneImport` report: tensors loaded, head skipped).
    """
    import keras

    _check_output(output_path, overwrite, checkpoint_path)
    task = registry.make_task(config)
    keras.utils.set_random_seed(int(config.train.seed))  # as `Trainer` before its build
    model = task.build_model()
    report = load_imagenet_file(model.backbone, checkpoint_path, "--checkpoint",
                                description=task.describe(config))
    _save(model, config, output_path, checkpoint_path, licence)
    logging.info("%s from %s; wrote %s", report.summary(), checkpoint_path, output_path)
    return model, report
