"""The keypoint set of a SavedModel export (joint names, skeleton, flip pairs, OKS
sigmas: `prtr_tf.data.keypoint_sets.metadata`), stored in the folder as
``assets.extra/prtr_tf_keypoints.json`` with the person score threshold fixed in the
graph (``score_threshold``, `prtr_tf.serving.defaults`) (TensorFlow's place for files the graph does
not read; TF Serving and ``saved_model_cli`` ignore it). ``export/to_onnx.py`` copies it
into the ONNX file's ``metadata_props`` (key `ONNX_KEY`); ``predict.py`` draws the
skeleton from it.
"""
import json
import os

from prtr_tf.files import atomic
from prtr_tf.data import keypoint_sets
from prtr_tf.data.jsonfile import read_json

FILE = os.path.join("assets.extra", "prtr_tf_keypoints.json")
FORMAT = "prtr_tf.keypoint_set/1"
ONNX_KEY = "prtr_tf_keypoints"


def keypoint_metadata(config, score_threshold=None):
    """The JSON-ready metadata of a config's keypoint set; with ``score_threshold``, also
    the minimum P(person) fixed in the exported graph (``"score_threshold"``)."""
    meta = {"format": FORMAT, **keypoint_sets.metadata(config)}
    if score_threshold is not None:
        meta["score_threshold"] = float(score_threshold)
    return meta


def write(folder, config, score_threshold=None):
    """Writes the metadata of ``config`` (and the export's person ``score_threshold``)
    into the SavedModel ``folder``; returns the file."""
    os.makedirs(os.path.join(folder, os.path.dirname(FILE)), exist_ok=True)
    return atomic.write_text(os.path.join(folder, FILE), json.dumps(
        keypoint_metadata(config, score_threshold), indent=1))


def read(folder):
    """The metadata dict of a SavedModel ``folder``, or None (exported before it existed)."""
    path = os.path.join(folder, FILE)
    if not os.path.isfile(path):
        return None
    meta = read_json(path, "SavedModel keypoint metadata")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not prtr_tf keypoint metadata (format {FORMAT!r})")
    return meta


def read_onnx(path):
    """The metadata dict an ONNX file from ``export/to_onnx.py`` carries, or None."""
    import onnx
    model = onnx.load(path, load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == ONNX_KEY:
            return json.loads(prop.value)
    return None
