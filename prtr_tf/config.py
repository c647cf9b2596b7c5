"""Configuration builders shared by the files in ``configs/``.

Each file in ``configs/`` is an ml-collections config file whose ``get_config()``
calls `two_stage` with the values of one official configuration (spec §7), so
that every field exists in every config and overrides such as
``--config.train.epochs=3`` work the same everywhere.

Sizes are written (height, width), as in the spec; the official YAML files store
``IMAGE_SIZE`` as [W, H].
"""
import ml_collections

COCO_JOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
               "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
                 (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
                 (3, 5), (4, 6))
MPII_JOINTS = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
               "pelvis", "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow",
               "right_shoulder", "left_shoulder", "left_elbow", "left_wrist")
MPII_FLIP_PAIRS = ((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13))
MPII_SKELETON = ((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
                 (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15))

DATASETS = {
    "coco": dict(joints=COCO_JOINTS, flip_pairs=COCO_FLIP_PAIRS, skeleton=COCO_SKELETON),
    "mpii": dict(joints=MPII_JOINTS, flip_pairs=MPII_FLIP_PAIRS, skeleton=MPII_SKELETON),
}

BACKBONES = ("resnet50", "resnet101", "resnet152", "hrnet_w32", "hrnet_w48", "resnet_tiny")


def model_config(backbone="resnet50", dataset="coco", image_size=(384, 288), hidden_dim=256,
                 nheads=8, enc_layers=6, dec_layers=6, dim_feedforward=2048, num_queries=100,
                 dropout=0.0, frozen_backbone=None):
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {tuple(DATASETS)}")
    return ml_collections.ConfigDict(dict(
        backbone=backbone,
        num_joints=len(DATASETS[dataset]["joints"]),
        image_size=tuple(image_size),  # (H, W) of the crop
        hidden_dim=hidden_dim,
        nheads=nheads,
        enc_layers=enc_layers,
        dec_layers=dec_layers,
        dim_feedforward=dim_feedforward,
        num_queries=num_queries,
        dropout=dropout,
        # ResNet: frozen BN + frozen stem/layer1 (None: yes for the ImageNet-initialised
        # official depths, no for resnet_tiny, which trains from scratch).
        frozen_backbone=frozen_backbone,
    ))


def data_config(fields, overrides):
    """``config.data``: the dataset's ``fields``, the loader fields every pipeline reads,
    then ``overrides`` (which may only name existing fields)."""
    data = dict(
        fields,
        num_parallel_calls=-1,  # tf.data.AUTOTUNE
        skip_bad_samples=True,  # warn and count; False makes a bad sample fatal
        synthetic=None,  # {'train': (num_images, seed), 'val': ...}: generate on first use
    )
    unknown = set(overrides) - set(data)
    if unknown:
        raise ValueError(f"unknown data field(s): {sorted(unknown)}")
    data.update(overrides)
    return ml_collections.ConfigDict(data)


def train_config(batch_size, epochs, lr, lr_backbone, lr_steps, lr_factor, seed=0):
    """``config.train``: AdamW with a backbone LR, clipping, MultiStepLR (spec §7)."""
    return ml_collections.ConfigDict(dict(
        batch_size=batch_size,  # global batch
        epochs=epochs,
        lr=lr,
        lr_backbone=lr_backbone,
        lr_steps=tuple(lr_steps),  # epochs at which the LR is multiplied by lr_factor
        lr_factor=lr_factor,
        weight_decay=1e-4,
        adam_epsilon=1e-8,
        clip_norm=0.1,
        seed=seed,
        log_every_steps=50,
        checkpoint_every_steps=500,
        eval_every_epochs=1,
        steps_per_epoch=0,  # 0: one pass over the training set
        init_weights="",  # *.weights.h5 to start from (e.g. from python -m prtr_tf.convert)
    ))


def two_stage(backbone, dataset, image_size, *, lr_backbone, lr_steps, batch_size, epochs=200,
              lr=1e-4, paper_ap=None, model_overrides=None, **data_overrides):
    """The full config of one two-stage PRTR configuration."""
    c = ml_collections.ConfigDict()
    c.model = model_config(backbone=backbone, dataset=dataset, image_size=image_size,
                           **(model_overrides or {}))
    c.paper_ap = paper_ap  # published accuracy (COCO val2017 AP / MPII PCKh@0.5), or None
    is_coco = dataset == "coco"
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
        flip=True,
    )
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


def load_config(path_or_name):
    """Loads ``get_config()`` from a config file path or a name in ``configs/``.

    ``coco_res50_384x288`` and ``configs/coco_res50_384x288.py`` both work.
    """
    import importlib.util
    import os

    path = path_or_name
    if not os.path.exists(path):
        repo_configs = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs")
        candidate = os.path.join(repo_configs, os.path.basename(path))
        if not candidate.endswith(".py"):
            candidate += ".py"
        if not os.path.exists(candidate):
            names = sorted(f[:-3] for f in os.listdir(repo_configs) if f.endswith(".py")) \
                if os.path.isdir(repo_configs) else []
            raise FileNotFoundError(f"config {path_or_name!r} not found; known configs: "
                                    + ", ".join(names))
        path = candidate
    spec = importlib.util.spec_from_file_location("_prtr_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} has no get_config() function")
    return module.get_config()
