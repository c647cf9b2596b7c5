"""The DETR person detector of `make demo`: the tiny detector trained to generalise.

Not an official configuration: ``synthetic_detector_tiny`` (the tiny ResNet, a
2+2-layer Transformer of width 64, 10 queries, small scales) on the demo's synthetic
set (the same images as ``demo_keypoints``), with a linear LR warm-up, evaluated with
COCO box AP on the held-out images after every epoch.
"""
from prtr_tf.config import load_config



def get_config():
    c = load_config("synthetic_detector_tiny")
    images = load_config("demo_keypoints").data  # the same generated images
    c.data.root = images.root
    c.data.synthetic = images.synthetic.to_dict()
    c.train.update(epochs=3, lr_steps=(100,), steps_per_epoch=250, warmup_steps=300,
                   eval_every_epochs=1, log_every_steps=50)
    return c
