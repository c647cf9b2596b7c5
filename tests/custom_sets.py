"""The custom-keypoint-set test data (``../shared/data``): crowdpose_mini, ap10k_mini,
onehand10k_mini, and custom configs pointed at them (read in place, never written)."""
import warnings

from prtr_tf.config import load_config
from tests.conftest import require_shared

# name: (annotation file, number of joints)
SETS = {
    "crowdpose_mini": ("person_keypoints.json", 14),
    "ap10k_mini": ("animal_keypoints.json", 17),
    "onehand10k_mini": ("hand_keypoints.json", 21),
}
TINY_MODEL = dict(backbone="resnet_tiny", image_size=(128, 96), hidden_dim=64, nheads=4,
                  enc_layers=2, dec_layers=2, dim_feedforward=128, num_queries=25)


def point_at(config, name):
    """``config`` with its data fields pointed at the shared set ``name``: only root,
    train_ann, train_images, val_ann and val_images are set."""
    root = require_shared("data", name)
    ann = SETS[name][0]
    config.data.root = str(root)
    config.data.train_ann = config.data.val_ann = ann
    config.data.train_images = config.data.val_images = "images"
    return config


def custom_config(name, config_name="custom_keypoints", tiny=True, resolve=True):
    """A custom config on the shared set ``name`` (tiny model sizes when ``tiny``),
    its keypoint set resolved (warnings about the set silenced)."""
    config = point_at(load_config(config_name), name)
    if tiny:
        for key, value in TINY_MODEL.items():
            if key in config.model:
                config.model[key] = value
    if resolve:
        from prtr_tf.data import keypoint_sets
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            keypoint_sets.resolve(config)
    return config
