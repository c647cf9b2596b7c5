"""``prtr-convert``: converts an official PyTorch checkpoint into a prtr-tf model file
(``.keras``: config, weights, keypoint set and provenance in one file, with a model
card ``NAME.md`` beside it) or Keras weights (``.weights.h5``)
(`prtr_tf.checkpoints.convert`).

    prtr-convert --config=coco_res50_384x288 \\
        --checkpoint=pose_transformer_res50_384x288.pth --output=res50_384x288.keras
    prtr-convert --config=configs/detr_r50_person.py \\
        --checkpoint=detr-r50-e632da11.pth --output=detr_person.weights.h5
    prtr-convert --backbone_only --config=coco_res50_384x288 \\
        --checkpoint=resnet50-0676ba61.pth --output=res50_imagenet.weights.h5
"""
from prtr_tf.cli import common

REQUIRED = ("config", "checkpoint", "output")  # marked in --help


def define_flags():
    from absl import flags
    from ml_collections import config_flags
    return dict(
        config=config_flags.DEFINE_config_file(
            "config", None, "Config of the checkpoint's configuration (file or name in "
            "configs/), e.g. configs/coco_res50_384x288.py (overrides: "
            "--config.model.num_queries=...).", lock_config=False),
        checkpoint=flags.DEFINE_string("checkpoint", None, "Official state_dict: .pth or "
                                       ".npz."),
        output=flags.DEFINE_string("output", None, "Output: a model file (*.keras; its "
                                   "model card *.md is written beside it) or a Keras "
                                   "weights file (*.weights.h5)."),
        licence=flags.DEFINE_string("licence", None, "The licence of the source checkpoint "
                                    "(e.g. 'Apache-2.0, facebookresearch/detr'), recorded "
                                    "in a .keras file's provenance and card."),
        overwrite=flags.DEFINE_bool("overwrite", False, "Replace --output if it exists."),
        backbone_only=flags.DEFINE_bool(
            "backbone_only", False, "--checkpoint is an ImageNet classification checkpoint "
            "(torchvision resnet50/101/152, hrnetv2_w32/w48_imagenet_pretrained.pth) for the "
            "config's backbone; its head is skipped. The output (the config's model, the rest "
            "initialised as the trainer does) is for --config.train.init_weights."),
    )


def main(argv, f):
    from prtr_tf.checkpoints.convert import convert, convert_backbone
    if len(argv) > 1:
        raise common.usage_error(f"unexpected arguments: {argv[1:]}")
    v = common.values(f)
    missing = [f"--{n}" for n in ("config", "checkpoint", "output") if not v[n]]
    if missing:
        raise common.usage_error(f"missing {', '.join(missing)}")
    try:
        if v["backbone_only"]:
            _, report = convert_backbone(v["config"], v["checkpoint"], v["output"],
                                         v["overwrite"], licence=v["licence"])
            print(report.summary())
        else:
            convert(v["config"], v["checkpoint"], v["output"], v["overwrite"],
                    licence=v["licence"])
    except ImportError as e:  # torch missing for a .pth
        raise common.UserError(str(e)) from e
    card = v["output"][:-len(".keras")] + ".md" if v["output"].endswith(".keras") else None
    print(f"wrote {v['output']}" + (f" and its model card {card}" if card else ""))
    return 0


def run():
    common.run(define_flags, main)


if __name__ == "__main__":
    run()
