"""Configuration builders for the DETR person detector (spec §8; facebookresearch/detr).

`detector` gives the full config (``model``, ``data``, ``loss``, ``train``, ``test``)
with DETR's defaults; the files ``configs/detr_*.py`` call it. ``config.model.kind``
is ``"detr"`` (`prtr_tf.models.registry`).
"""
import ml_collections

from prtr_tf.config import data_config, train_config, transformer_fields

# DETR's own backbones are ResNet-50/101; HRNet serves the end-to-end PRTR (spec §8:
# "The paper uses ResNet-101 or HRNet-W48"), its last level being the 2048-channel
# stride-32 output of HRNet's classification head (as in the two-stage model).
DETR_BACKBONES = ("resnet50", "resnet101", "resnet_tiny", "hrnet_w32", "hrnet_w48")
# DETR's training scales: shortest side in 480..800 step 32, longest side <= 1333.
DETR_SCALES = tuple(range(480, 801, 32))
COCO_PERSON = 1  # "person" in COCO's 91-id category space (index 1 of DETR's head)


def detector_model_config(backbone="resnet50", num_classes=1, frozen_backbone=None,
                          **transformer):
    """Model fields of a DETR. The class head has num_classes + 1 outputs, no-object last:
    91 (+1) for the official COCO DETR, 1 (+1) for the person detector. ``transformer``:
    the Transformer fields (`prtr_tf.config.transformer_fields`); DETR's dropout 0.1
    (also attention dropout; only when training) unless given."""
    if backbone not in DETR_BACKBONES:
        raise ValueError(f"unknown DETR backbone {backbone!r}; choose one of {DETR_BACKBONES}")
    return ml_collections.ConfigDict(dict(
        kind="detr",
        backbone=backbone,
        num_classes=num_classes,
        **transformer_fields(**dict(dict(dropout=0.1), **transformer)),
        # ResNet: frozen BN + frozen stem/layer1 (None: yes for the ImageNet-initialised
        # depths, no for resnet_tiny and HRNet).
        frozen_backbone=frozen_backbone,
    ))


def detector(backbone="resnet50", num_classes=1, *, lr=1e-4, lr_backbone=1e-5, epochs=300,
             lr_steps=(200,), batch_size=64, paper_ap=None, model_overrides=None,
             **data_overrides):
    """The full config of a DETR detector; defaults are DETR's (main.py, paper)."""
    c = ml_collections.ConfigDict()
    c.model = detector_model_config(backbone=backbone, num_classes=num_classes,
                                    **(model_overrides or {}))
    c.paper_ap = paper_ap  # published box AP (COCO val2017), or None
    data = dict(
        dataset="coco",
        root="data/coco",
        # Person boxes come from the keypoint annotations: the paper's detector drops
        # persons without visible keypoints (spec §8).
        train_ann="annotations/person_keypoints_train2017.json",
        val_ann="annotations/person_keypoints_val2017.json",
        train_images="images/train2017",
        val_images="images/val2017",
        category_ids=(COCO_PERSON,) if num_classes == 1 else (),  # () = all categories
        min_keypoints=1 if num_classes == 1 else 0,  # drop persons with fewer labelled ones
        color_rgb=True,  # DETR reads images with PIL (RGB)
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        # Training augmentation (DETR's make_coco_transforms), in this order:
        flip_prob=0.5,  # RandomHorizontalFlip
        scales=DETR_SCALES,  # RandomResize of the shortest side, one of these ...
        max_size=1333,  # ... with the longest side capped
        crop_prob=0.5,  # RandomSelect: with this probability instead resize to one of
        crop_resize_scales=(400, 500, 600),  # these (no cap), take a random crop whose
        crop_min_size=384,  # height and width are each in [crop_min_size,
        crop_max_size=600,  # crop_max_size], then resize to `scales` as above
        test_size=800,  # evaluation: shortest side 800, longest <= max_size
        # Targets and batches (prtr_tf.models.detector.data):
        max_boxes=100,  # GT boxes kept per image (= DETR's queries; more: a warning)
        # class index of "person" in the head: 0 for a person-only head, COCO's id 1
        # for a 91-class one (DETR's class index is the COCO category id)
        person_label=0 if num_classes == 1 else COCO_PERSON,
        pad_size=None,  # (H, W): pad every batch to this fixed shape (e.g. for XLA)
        pad_multiple=None,  # pad batches to a multiple of this (HRNet, end-to-end: 32)
    )
    c.data = data_config(data, data_overrides)
    c.loss = ml_collections.ConfigDict(dict(
        cost_class=1.0, cost_bbox=5.0, cost_giou=2.0,  # Hungarian matcher
        ce_loss_coef=1.0, bbox_loss_coef=5.0, giou_loss_coef=2.0,
        eos_coef=0.1,  # weight of the no-object class in the cross-entropy
        aux_loss=True,  # the same loss on every decoder layer
    ))
    # DETR: global batch 64 (16 GPUs x 4), StepLR(lr_drop, gamma 0.1), seed 42.
    c.train = train_config(batch_size, epochs, lr, lr_backbone, lr_steps, lr_factor=0.1, seed=42)
    c.test = ml_collections.ConfigDict(dict(
        batch_size=8,
        score_thre=0.0,  # keep every box (the two-stage pipeline uses IMAGE_THRE 0.0)
    ))
    return c
