"""Every official configuration builds, with the official parameter count (spec §9)."""
import pathlib

import pytest

from prtr_tf.config import load_config
from prtr_tf.models.keypoint.model import PoseTransformer
from prtr_tf.nn.layers import count_parameters

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
# sum(p.numel()) of the official models (frozen-BN buffers excluded), spec §9.
COCO = {"resnet50": 41_505_236, "resnet101": 60_445_140, "hrnet_w32": 57_234_004}
MPII = {"resnet50": 41_504_979, "resnet101": 60_444_883, "hrnet_w32": 57_233_747,
        "resnet152": 76_042_451}
# The official vanilla two-stage configurations (the deformable ones: coco_deform_*, counted
# in tests/keypoint/test_deformable.py).
DEFORMABLE = {"coco_deform_res50_384x288", "coco_deform_res101_384x288"}
OFFICIAL = sorted(p.stem for p in CONFIGS.glob("*.py")
                  if p.stem.startswith(("coco_", "mpii_")) and p.stem not in DEFORMABLE)


def test_every_official_configuration_has_a_file():
    expected = {f"coco_{b}_{s}" for b in ("res50", "res101", "w32") for s in ("384x288", "512x384")}
    expected |= {f"mpii_{b}_{s}x{s}" for b, sizes in (("res50", (256, 384, 512)),
                                                     ("res101", (256, 384, 512)),
                                                     ("res152", (256, 384)),
                                                     ("w32", (256, 384))) for s in sizes}
    assert set(OFFICIAL) == expected
    assert all((CONFIGS / f"{name}.py").is_file() for name in DEFORMABLE)


# Parameter counts of built models, by their model config without the crop size.
_COUNTS = {}


@pytest.mark.parametrize("name", OFFICIAL)
def test_parameter_count(name):
    config = load_config(str(CONFIGS / f"{name}.py"))
    h, w = config.model.image_size
    assert name.endswith(f"_{h}x{w}")
    expected = (COCO if config.data.dataset == "coco" else MPII)[config.model.backbone]
    # Parameter counts do not depend on the crop size: build at 64x64, and once per model
    # config that differs in more than the crop size (17 configs, 7 such models).
    fields = config.model.to_dict()
    fields.pop("image_size")
    key = repr(sorted(fields.items()))
    if key not in _COUNTS:
        model = PoseTransformer(config.model)
        model(__import__("numpy").zeros((1, 64, 64, 3), "float32"))
        _COUNTS[key] = count_parameters(model)
    assert _COUNTS[key] == expected


def test_training_settings_follow_the_official_configs():
    r50 = load_config(str(CONFIGS / "coco_res50_384x288.py"))
    w32 = load_config(str(CONFIGS / "coco_w32_384x288.py"))
    mpii = load_config(str(CONFIGS / "mpii_w32_256x256.py"))
    assert (r50.train.lr, r50.train.lr_backbone, r50.train.lr_steps) == (1e-4, 1e-5, (120, 140))
    assert (w32.train.lr_backbone, w32.train.lr_steps, w32.train.batch_size) == (1e-4, (70, 95), 64)
    assert mpii.train.lr_steps == (60,)
    assert not r50.data.color_rgb and w32.data.color_rgb
    assert r50.model.num_joints == 17 and mpii.model.num_joints == 16


def test_load_config_by_name_and_unknown_name():
    assert load_config("coco_res50_384x288").model.image_size == (384, 288)
    with pytest.raises(FileNotFoundError, match="known configs"):
        load_config("coco_res51_384x288")
