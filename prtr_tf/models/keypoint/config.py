"""Config builder of the two-stage keypoint Transformer (``model.kind = "prtr"``).

Each file ``configs/coco_*.py`` / ``configs/mpii_*.py`` calls `two_stage` with the
values of one official configuration (spec §7). Sizes are written (height, width),
as in the spec; the official YAML files store ``IMAGE_SIZE`` as [W, H].
"""
import ml_collections

from prtr_tf.config import data_config, train_config, transformer_fields
from prtr_tf.data.keypoint_sets import CUSTOM, DATASETS, keypoints_config

BACKBONES = ("resnet50", "resnet101", "resnet152", "hrnet_w32", "hrnet_w48", "resnet_tiny")


def model_config(backbone="resnet50", dataset="coco", image_size=(384, 288),
                 frozen_backbone=None, **transformer):
    """Model fields of the keypoint Transformer; ``transformer``: the Transformer fields
    (`prtr_tf.config.transformer_fields`: hidden_dim, nheads, enc_layers, dec_layers,
    dim_feedforward, num_queries, dropout)."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
    if dataset not in DATASETS and dataset != CUSTOM:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of "
                         f"{tuple(DATASETS) + (CUSTOM,)}")
    return ml_collections.ConfigDict(dict(
        kind="prtr",
        backbone=backbone,
        # custom: 0 until `prtr_tf.data.keypoint_sets.resolve` reads the annotation file
        num_joints=len(DATASETS[dataset]["joints"]) if dataset in DATASETS else 0,
        image_size=tuple(image_size),  # (H, W) of the crop
        **transformer_fields(**transformer),
        # ResNet: frozen BN + frozen stem/layer1 (None: yes for the ImageNet-initialised
        # official depths, no for resnet_tiny, which trains from scratch).
        frozen_backbone=frozen_backbone,
        pos_in_tokens=False,  # not in the paper: positional encoding also added to the tokens
    ))


def two_stage(backbone, dataset, image_size, *, lr_backbone, lr_steps, batch_size, epochs=200,
              lr=1e-4, paper_ap=None, model_overrides=None, **data_overrides):
    """The full config of one two-stage PRTR configuration."""
    c = ml_collections.ConfigDict()
    c.model = model_config(backbone=backbone, dataset=dataset, image_size=image_size,
                           **(model_overrides or {}))
    c.paper_ap = paper_ap  # published accuracy (COCO val2017 AP / MPII PCKh@0.5), or None
    is_coco = dataset != "mpii"  # COCO and custom sets: COCO-format files
    data = dict(
        dataset=dataset,
        root=f"data/{dataset}",  # images and annotations, see README
        train_ann="annotations/person_keypoints_train2017.json" if is_coco
        else "annot/train.json",
        val_ann="annotations/person_keypoints_val2017.json" if is_coco else "annot/valid.json",
        train_images="images/train2017" if is_coco else "images",
        val_images="images/val2017" if is_coco else "images",
        det_json="",  # COCO results JSON of person detections for testing
        color_rgb=backbone.startswith("hrnet"),  # ResNet configs feed BGR (spec §5.4)
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        pixel_std=200.0,
        box_padding=1.25,
        scale_factor=0.3 if is_coco else 0.25,  # s * clip(N(0,1) sf + 1, 1 - sf, 1 + sf)
        rotation_factor=40.0 if is_coco else 30.0,  # clip(N(0,1) rf, -2 rf, 2 rf)
        rotation_prob=0.6,
        shift_factor=0.0,  # not in the official code: box shift U(-f, f) x box size
        flip=True,
    )
    if dataset == CUSTOM:  # the keypoint set of the annotation file (prtr_tf.data.keypoint_sets)
        data["keypoints"] = keypoints_config()
    c.data = data_config(data, data_overrides)
    c.loss = ml_collections.ConfigDict(dict(
        cost_class=1.0, cost_coord=5.0, eos_coef=0.1, kpt_loss_coef=5.0, ce_loss_coef=1.0))
    c.train = train_config(batch_size, epochs, lr, lr_backbone, lr_steps, lr_factor=0.5)
    c.test = ml_collections.ConfigDict(dict(
        flip_test=True,
        use_gt_bbox=True,
        image_thre=0.0,
        in_vis_thre=0.2,
        oks_thre=0.9,
        batch_size=32,
    ))
    return c
