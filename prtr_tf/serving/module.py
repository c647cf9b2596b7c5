"""`ServingModule`: what the serving modules of every kind share (the person scoring
and NMS settings, the input signatures and their checks, ``serve_encoded`` and the
`tf.function`s). A kind's serving module adds its ``serve_image`` and ``functions``."""
import tensorflow as tf

from prtr_tf.data import keypoint_sets
from prtr_tf.data.image import decode_bytes
from prtr_tf.serving import defaults
from prtr_tf.serving.inputs import checked_image
from prtr_tf.serving.ops import RESIZE_MODES

# The image input: declared of unknown rank (see below), documented and given to tf2onnx
# (`prtr_tf.export.onnx.convert`) as this shape.
IMAGE_INPUT, IMAGE_SHAPE = "image", (None, None, 3)


class ServingModule(tf.Module):
    """Base of `prtr_tf.models.keypoint.serving.PoseServing` and
    `prtr_tf.models.end_to_end.serving.EndToEndServing`.

    Args:
      model: the model that gives the keypoints.
      config: its config (``model.num_joints``, ``test.in_vis_thre``, ``oks_thre``; the
        keypoint set's OKS sigmas, `prtr_tf.data.keypoint_sets.oks_sigmas`).
      score_threshold: minimum person score kept (None: the prediction default,
        `prtr_tf.serving.defaults.PERSON_SCORE_THRESHOLD`).
      resize: "tf" or "matmul" (`prtr_tf.serving.ops.detector_resize`).
    """

    detector = None

    def __init__(self, model, config, score_threshold, resize, name):
        super().__init__(name=name)
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        self.resize = resize
        self.model = model
        self.config = config
        self.num_joints = int(config.model.num_joints)
        self.in_vis_thre = float(config.test.in_vis_thre)
        self.oks_thre = float(config.test.oks_thre)
        self.sigmas = keypoint_sets.oks_sigmas(config)
        self.score_threshold = float(defaults.PERSON_SCORE_THRESHOLD if score_threshold is None
                                     else score_threshold)  # None: the prediction default
        # Unknown rank: a SavedModel signature does not check the shape it is given, and
        # `checked_image` can only see a wrong rank when the graph does not fix it.
        self.image_signature = [tf.TensorSpec(None, tf.uint8, name=IMAGE_INPUT)]
        self.encoded_signature = [tf.TensorSpec([], tf.string, name="image_bytes")]

    def serve_image(self, image):
        """uint8 (H, W, 3) -> the persons (the subclass's ``detect_and_read``)."""
        return self.detect_and_read(checked_image(tf.convert_to_tensor(image)))

    def serve_encoded(self, image_bytes):
        """JPEG/PNG/BMP/GIF bytes (string scalar) -> as `serve_image` (RGB, first frame;
        JPEGs with the accurate DCT, as PIL and the data pipeline decode them:
        `prtr_tf.models.keypoint.data.decode_bytes`)."""
        return self.serve_image(decode_bytes(image_bytes))

    def functions(self):
        """{endpoint name: (function, input signature)}."""
        raise NotImplementedError

    def tf_functions(self):
        """The same as `tf.function`s (for use without exporting)."""
        return {name: tf.function(fn, input_signature=sig)
                for name, (fn, sig) in self.functions().items()}
