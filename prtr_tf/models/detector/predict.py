"""Person boxes from DETR: P(person) per query, boxes in image pixels, a whole-image
detector (`DetrPersonDetector`)."""
import numpy as np
import tensorflow as tf

from prtr_tf.data.image import normalization
from prtr_tf.models.detector.resize import detector_pad_size, pad_with_mask, resize
from prtr_tf.models.detector.data import unnormalize_boxes
from prtr_tf.models.detector.records import person_label


def person_scores(pred_logits, label):
    """P(person) per query: softmax over all classes (no-object included), DETR's
    PostProcess for a head whose person class is ``label``."""
    return tf.nn.softmax(tf.cast(pred_logits, tf.float32), axis=-1)[..., label]


def model_person_scores(model, outputs, label):
    """P(person) per query of ``model``'s ``outputs``: the model's own ``person_scores``
    when it has one (Deformable DETR: sigmoid classes), else DETR's softmax
    (`person_scores`)."""
    own = getattr(model, "person_scores", None)
    return own(outputs, label) if own is not None else person_scores(outputs["pred_logits"],
                                                                     label)


def relax_shapes(model):
    """Whether a tf.function of ``model`` may relax its input shapes to None (False for
    models whose spatial shapes must be static per trace: one trace per padded size)."""
    return not getattr(model, "static_spatial_shapes", False)


def detect_dataset(model, dataset, label):
    """Runs over batched eval elements; returns a list of (image_id, boxes xywh px, scores)."""
    @tf.function(reduce_retracing=relax_shapes(model))
    def step(images, mask):
        out = model(images, mask=mask, training=False)
        return out["pred_boxes"], model_person_scores(model, out, label)

    found = []
    for batch in dataset:
        boxes, scores = step(batch["image"], batch["mask"])
        for i in range(len(batch["image_id"])):
            px = unnormalize_boxes(boxes[i].numpy(), batch["orig_size"][i].numpy())
            found.append((int(batch["image_id"][i]), px, scores[i].numpy()))
    return found



class DetrPersonDetector:
    """Whole RGB uint8 image -> (person boxes [x, y, w, h] pixels (N, 4), scores (N,)).

    Preprocessing is the evaluation pipeline's (`prtr_tf.models.detector.resize.resize`:
    shortest side ``config.data.test_size``, longest <= ``config.data.max_size``;
    DETR normalisation); boxes scoring below ``score_threshold`` are dropped (default:
    the prediction default `prtr_tf.serving.defaults.PERSON_SCORE_THRESHOLD`, the same
    as the exported models'; not ``config.test.score_thre``, the evaluation's 0.0 that
    keeps every query for AP).
    """

    def __init__(self, model, config, score_threshold=None):
        from prtr_tf.serving import defaults
        self.model, self.config = model, config
        self.label = person_label(config)
        self.threshold = float(defaults.PERSON_SCORE_THRESHOLD if score_threshold is None
                               else score_threshold)
        gain, offset = normalization(config.data.mean, config.data.std)
        test_size, max_size = int(config.data.test_size), int(config.data.max_size)
        # Static spatial shapes (Deformable DETR): every image padded to one size with
        # its mask, as the exported pipeline does (`prtr_tf.models.keypoint.serving`).
        pad_hw = None if relax_shapes(model) else detector_pad_size(config.data)

        def preprocess(image):
            x, _ = resize(tf.cast(image, tf.float32), tf.zeros((0, 4)), test_size, max_size)
            x = x * gain - offset
            if pad_hw is None:
                return x, tf.zeros(tf.shape(x)[:2], tf.bool)
            return pad_with_mask(x, pad_hw)

        @tf.function(reduce_retracing=True)
        def run(images):  # (B, H, W, 3) uint8, images of one size
            x, mask = tf.map_fn(preprocess, images, fn_output_signature=(tf.float32, tf.bool))
            out = self.model(x, mask=None if pad_hw is None else mask, training=False)
            return out["pred_boxes"], model_person_scores(self.model, out, self.label)

        self._run = run

    def _kept(self, boxes, scores, size_hw):
        boxes = unnormalize_boxes(boxes, size_hw)
        keep = (scores >= self.threshold) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        return boxes[keep], scores[keep]

    def __call__(self, image):
        return self.detect_batch([image])[0]

    def detect_batch(self, images):
        """[(boxes, scores)] of RGB uint8 ``images``, in order: one model call for images
        of one size (the frames of a video), else one call each."""
        if len({im.shape for im in images}) != 1:
            return [self(im) for im in images]
        boxes, scores = (t.numpy() for t in self._run(tf.constant(np.stack(images))))
        return [self._kept(b, s, images[0].shape[:2]) for b, s in zip(boxes, scores)]


def as_person_detector(detector):
    """``detector`` as the callable image -> (boxes, scores) the pose estimators take: a
    detector model from `prtr_tf.load` (it carries ``prtr_config``) is wrapped in
    `DetrPersonDetector` (default threshold); anything else (a `DetrPersonDetector`, a
    `TFLiteDetector`, a callable, None) is returned as it is."""
    if detector is None or hasattr(detector, "detect_batch") or \
            getattr(detector, "prtr_config", None) is None:
        return detector
    return DetrPersonDetector(detector, detector.prtr_config)
