"""Models: backbones, transformers and the PRTR keypoint model."""
from prtr_tf.models.pose_transformer import PoseTransformer


def build_model(model_config):
    """Builds (and initialises) the keypoint model described by ``config.model``."""
    return PoseTransformer(model_config).initialize()
