"""Configuration builder of the end-to-end ("sequential") PRTR (spec §8).

The paper describes this variant only loosely and its notebook is illustrative
(spec §8, "Not specified anywhere"), so every open choice is a config field:

``model.detector`` (a `prtr_tf.models.detector.config.detector_model_config`)
    The DETR person detector on the last backbone level: DETR's defaults (256-d,
    6+6 layers, 8 heads, FFN 2048, dropout 0.1, 100 queries) and a person +
    no-object class head, as in the paper. Its ``backbone`` is the shared backbone
    (resnet50 / resnet101 / hrnet_w32 / hrnet_w48 / resnet_tiny). With HRNet the
    detector reads the 2048-channel stride-32 output of HRNet's classification
    head, the map the two-stage PRTR uses.
``model.levels``
    Backbone levels cropped by the STN and concatenated along channels. Default
    C3 + C4 + C5 (the paper's figure: the last three stages, 512 + 1024 + 2048 =
    3584 channels for ResNet-50). HRNet's levels are the branches of its last
    stage, C2..C5 at strides 4..32 (W48: 48, 96, 192, 384 channels; the default C3
    + C4 + C5 gives 672), "the matching HRNet branches". ``resnet_tiny`` has three
    stages, named C2..C4.
``model.crop_size`` (y_res, x_res)
    Samples per crop. Default 10 x 10, the notebook's default (the paper gives no
    size): 100 tokens, about the 12 x 9 = 108 tokens that the two-stage keypoint
    transformer sees on a 384 x 288 crop at stride 32.
``model.enlarge``
    The crop covers ``enlarge`` x the box (t = linspace(-enlarge, enlarge)); 1.25 is
    the paper's "25% enlargement" and the two-stage box padding.
``model.kpt_hidden_dim``, ``model.kpt_pos``
    d_model of the keypoint transformer and its positional encoding: ``"sine"``
    (DETR's normalised sine map, d/2 features per axis) or ``"sine+learned"`` (the
    notebook's: a sine map of d/4 features per axis (d/2 channels) concatenated with
    learned column and row tables of d/4 features each (d/2 channels)). The notebook
    hard-codes 128 features per part, i.e. 512 channels and therefore d_model 512,
    and never builds the transformer (unverified). Default 256 with
    ``"sine+learned"``: the width of the paper's two-stage keypoint transformer and
    of DETR, keeping the notebook's encoding structure; ``kpt_hidden_dim=512``
    reproduces the notebook's 128-per-part layout exactly.
``model.kpt_*`` (heads, layers, FFN, queries, dropout)
    The two-stage keypoint transformer's (spec §1): 8 heads, 6+6 layers, FFN 2048,
    100 queries, dropout 0.0 (the official keypoint transformer uses none).
``model.num_joints``
    17 (COCO). The class head has J + 1 outputs, background LAST: the two-stage
    convention, so that `prtr_tf.models.keypoint.readout.readout` and `prtr_tf.models.keypoint.loss` apply as
    they are (the notebook's background-first raw-logit readout is not used, spec
    §8 and §10 item 8).
``model.person_threshold``, ``model.max_persons``
    Inference: crop the queries whose person probability is >= the threshold, at
    most ``max_persons`` per image (highest first). Defaults 0.0 and 20: the
    two-stage pipeline keeps every detection box (IMAGE_THRE 0.0, spec §11), and
    COCO's keypoint evaluation scores at most 20 detections per image (maxDets=20),
    which also bounds the keypoint transformer's batch.
``model.max_train_persons``
    Training: at most 5 matched persons per image are cropped (randomly sampled),
    as the paper states.
``model.detach_boxes``
    False: the keypoint losses reach the box head through the differentiable crop
    and the image-space coordinate mapping (the point of an STN). True stops that
    gradient (the boxes are then trained by the detection loss only).
``loss``
    The detection terms are DETR's (matcher 1/5/2, CE 1 with eos 0.1, L1 5, GIoU
    2); the keypoint terms are the two-stage PRTR's (matcher 1/5, CE 1 with eos
    0.1, L1 5) on image-normalised targets. ``det_loss_weight`` and
    ``kpt_loss_weight`` (the relative weight the paper never gives) default to 1.0
    each: both losses already carry their published internal weights.
``data``
    The DETR detector's data fields (`prtr_tf.models.detector.config.detector`): COCO
    person_keypoints files, persons with at least one labelled keypoint, DETR's
    augmentation (flip, random resize, random-crop branch) with the paper's scales
    for this variant (spec §8): the shortest side one of 760, 792, ..., 1016, 1024
    (760 to 1024 in DETR's steps of 32, 1024 included), the longest side <= 1400;
    evaluation at the largest training scale (1024, as DETR evaluates at its
    largest, 800). Keypoints follow every augmentation step
    (`prtr_tf.models.detector.data`). ``pad_multiple`` 32: batches are padded to a
    multiple of the backbone stride, so that the feature maps cover the padded
    image exactly (the STN's box conversion assumes it; HRNet needs it).
``test``
    Every person query with probability >= ``model.person_threshold`` (at most
    ``model.max_persons``) is read out; its pose is rescored as in the two-stage
    evaluation (mean of the joint scores > ``in_vis_thre`` 0.2, times the person
    probability) and the poses of an image go through OKS-NMS at ``oks_thre`` 0.9
    (DETR rarely duplicates a person, but nothing forbids it).
``train``
    AdamW as in the two-stage training (spec §7: LR 1e-4, backbone 1e-5, weight
    decay 1e-4, clip 0.1) with the LR halved at epochs 25 and 60 (spec §8). The
    total number of epochs is not published; 80 is a placeholder.
    ``init_detector_weights``: a DETR person detector's weights (the paper
    initialises from DETR; convert the official one with ``prtr-convert
    --config=configs/detr_r50_person.py``) for the backbone and
    detector; ``init_weights`` loads a whole end-to-end model.
"""
import ml_collections

from prtr_tf.data.keypoint_sets import CUSTOM, DATASETS, keypoints_config
from prtr_tf.config import train_config
from prtr_tf.models.detector.config import detector, detector_model_config

KPT_POS = ("sine", "sine+learned")
# Spec §8: DETR's augmentation with the shortest side 760..1024, longest <= 1400.
E2E_SCALES = tuple(range(760, 1024, 32)) + (1024,)
E2E_DATA = dict(scales=E2E_SCALES, max_size=1400, test_size=1024, pad_multiple=32)


def e2e_model_config(backbone="resnet50", dataset="coco", *, levels=("C3", "C4", "C5"),
                     crop_size=(10, 10), enlarge=1.25, kpt_hidden_dim=256,
                     kpt_pos="sine+learned", kpt_nheads=8, kpt_enc_layers=6, kpt_dec_layers=6,
                     kpt_dim_feedforward=2048, kpt_num_queries=100, kpt_dropout=0.0,
                     person_threshold=0.0, max_persons=20, max_train_persons=5,
                     detach_boxes=False, detector_overrides=None):
    """Model fields of an end-to-end PRTR (see the module docstring for each default)."""
    if dataset not in DATASETS and dataset != CUSTOM:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of "
                         f"{tuple(DATASETS) + (CUSTOM,)}")
    if kpt_pos not in KPT_POS:
        raise ValueError(f"unknown kpt_pos {kpt_pos!r}; choose one of {KPT_POS}")
    divisor = 4 if kpt_pos == "sine+learned" else 2
    if kpt_hidden_dim % divisor:
        raise ValueError(f"kpt_hidden_dim={kpt_hidden_dim} must be a multiple of {divisor} "
                         f"with kpt_pos={kpt_pos!r}")
    if not levels:
        raise ValueError("levels must name at least one backbone level")
    detector = detector_model_config(backbone=backbone, num_classes=1,
                                     **(detector_overrides or {}))
    return ml_collections.ConfigDict(dict(
        kind="prtr_e2e",
        detector=detector,
        # custom: 0 until `prtr_tf.data.keypoint_sets.resolve` reads the annotation file
        num_joints=len(DATASETS[dataset]["joints"]) if dataset in DATASETS else 0,
        levels=tuple(levels),
        crop_size=tuple(int(s) for s in crop_size),  # (y_res, x_res)
        enlarge=float(enlarge),
        kpt_hidden_dim=kpt_hidden_dim,
        kpt_pos=kpt_pos,
        kpt_nheads=kpt_nheads,
        kpt_enc_layers=kpt_enc_layers,
        kpt_dec_layers=kpt_dec_layers,
        kpt_dim_feedforward=kpt_dim_feedforward,
        kpt_num_queries=kpt_num_queries,
        kpt_dropout=kpt_dropout,
        person_threshold=float(person_threshold),
        max_persons=int(max_persons),
        max_train_persons=int(max_train_persons),
        detach_boxes=bool(detach_boxes),
    ))


def end_to_end(backbone="resnet50", dataset="coco", *, lr=1e-4, lr_backbone=1e-5,
               epochs=80, lr_steps=(25, 60), batch_size=32, det_loss_weight=1.0,
               kpt_loss_weight=1.0, data_overrides=None, paper_ap=None, **model_kw):
    """The full config (``model``, ``data``, ``loss``, ``train``, ``test``) of an
    end-to-end PRTR; ``data_overrides`` replace fields of ``data`` (existing ones)."""
    if dataset not in ("coco", CUSTOM):
        raise ValueError(f"dataset={dataset!r}: the end-to-end PRTR trains on COCO-format "
                         "keypoint files (its detector needs every instance's box), 'coco' "
                         f"or {CUSTOM!r}; MPII is not supported")
    c = ml_collections.ConfigDict()
    c.model = e2e_model_config(backbone, dataset, **model_kw)
    c.paper_ap = paper_ap  # published COCO AP, or None
    det = detector(c.model.detector.backbone, 1, **{**E2E_DATA, **(data_overrides or {})})
    c.data = det.data
    if dataset == CUSTOM:  # the keypoint set of the annotation file (prtr_tf.data.keypoint_sets)
        c.data.dataset = CUSTOM
        c.data.keypoints = keypoints_config()
    c.test = ml_collections.ConfigDict(dict(
        batch_size=det.test.batch_size,
        in_vis_thre=0.2,  # rescoring: mean of the joint scores above this
        oks_thre=0.9,  # per-image OKS-NMS
    ))
    c.loss = ml_collections.ConfigDict(dict(
        det_loss_weight=det_loss_weight, kpt_loss_weight=kpt_loss_weight,
        # DETR person detector (spec §8)
        cost_class=1.0, cost_bbox=5.0, cost_giou=2.0,
        ce_loss_coef=1.0, bbox_loss_coef=5.0, giou_loss_coef=2.0, eos_coef=0.1,
        # keypoint set criterion (spec §3-4)
        kpt_cost_class=1.0, kpt_cost_coord=5.0, kpt_ce_loss_coef=1.0, kpt_loss_coef=5.0,
        kpt_eos_coef=0.1,
    ))
    c.train = train_config(batch_size, epochs, lr, lr_backbone, lr_steps, lr_factor=0.5)
    # The paper starts from DETR: a person detector's *.weights.h5 (same detector config)
    # for the backbone and detector; the keypoint transformer starts at random.
    c.train.init_detector_weights = ""
    return c
