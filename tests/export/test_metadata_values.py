"""The TFLite metadata's values pinned (issue 27): every postprocess threshold from
its own config field, the input shape in (H, W) order, the colour order, mean / std
per channel (distinct values so that a swap or a wrong field shows)."""
import ml_collections
import numpy as np
import pytest

from prtr_tf.export.tflite import metadata


def _config(color_rgb=True):
    return ml_collections.ConfigDict(dict(
        model=dict(image_size=(384, 288), backbone="resnet50", num_joints=17),
        data=dict(dataset="coco", color_rgb=color_rgb, mean=(0.485, 0.456, 0.406),
                  std=(0.229, 0.224, 0.225), pixel_std=200, box_padding=1.25),
        test=dict(image_thre=0.11, in_vis_thre=0.22, oks_thre=0.93)))


def test_keypoint_metadata_values():
    meta = metadata.keypoint_metadata(_config(), "float16", flip_test=True, batch_size=2)
    assert meta["postprocess"] == {"box_padding": 1.25, "image_thre": 0.11,
                                   "in_vis_thre": 0.22, "oks_thre": 0.93}
    inp = meta["input"]
    assert inp["shape"] == [2, 384, 288, 3] and inp["crop_size_hw"] == [384, 288]
    assert inp["color_order"] == "RGB"
    assert inp["mean"] == [0.485, 0.456, 0.406] and inp["std"] == [0.229, 0.224, 0.225]
    assert inp["pixel_std"] == 200.0 and type(inp["pixel_std"]) is float
    assert meta["quantization"] == "float16" and meta["flip_test"] is True
    assert meta["dataset"] == "coco" and meta["backbone"] == "resnet50"
    assert meta["format"] == "prtr_tf.keypoints/1"
    assert meta["keypoint_names"][5] == "left_shoulder"
    assert meta["flip_pairs"][0] == [1, 2] and len(meta["sigmas"]) == 17
    assert meta["sigmas"][11] == pytest.approx(0.107)  # left_hip
    assert all(type(v) is float for v in meta["postprocess"].values())
    bgr = metadata.keypoint_metadata(_config(color_rgb=False), "none")
    assert bgr["input"]["color_order"] == "BGR" and bgr["flip_test"] is False
    assert bgr["input"]["shape"] == [1, 384, 288, 3]


def test_detector_metadata_values():
    det = ml_collections.ConfigDict(dict(
        model=dict(kind="detr", backbone="resnet50", num_classes=91),
        data=dict(person_label=1, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))))
    meta = metadata.detector_metadata(det, (480, 640), "dynamic", batch_size=3)
    assert meta["num_classes"] == 91 and meta["person_class_index"] == 1
    assert meta["input"]["shape"] == [3, 480, 640, 3]
    assert meta["input"]["size_hw"] == [480, 640]
    assert meta["input"]["color_order"] == "RGB"  # default when the field is absent
    assert meta["input"]["mean"] == [0.1, 0.2, 0.3] and meta["input"]["std"] == [0.4, 0.5,
                                                                                0.6]
    assert meta["quantization"] == "dynamic" and meta["format"] == \
        "prtr_tf.detector/1"
    det.data.color_rgb = False
    assert metadata.detector_metadata(det, (2, 4), "none")["input"]["color_order"] == "BGR"


@pytest.fixture(scope="module")
def tiny_tflite():
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.float32)])
    def f(x):
        return x * 2.0, x + 1.0

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    return conv.convert()


def test_embed_and_read_back(tiny_tflite, tmp_path):
    import tensorflow as tf
    meta = {"postprocess": {"oks_thre": 0.93}, "keypoint_names": ["a", "b"]}
    fb = metadata.embed_metadata(tiny_tflite, meta)
    assert metadata.read_metadata(fb) == meta
    assert metadata.read_metadata(tiny_tflite) is None
    assert metadata.read_metadata(fb, name="other") is None
    path = tmp_path / "m.tflite"
    path.write_bytes(bytes(fb))
    assert metadata.read_metadata(str(path)) == meta
    # embedding again under the same name replaces the entry (one entry, the new value)
    fb2 = metadata.embed_metadata(fb, {"v": 2})
    assert metadata.read_metadata(fb2) == {"v": 2}
    model = metadata.schema().Model.GetRootAsModel(bytearray(bytes(fb2)), 0)
    names = [model.Metadata(i).Name() for i in range(model.MetadataLength())]
    assert names.count(metadata.METADATA_NAME.encode()) == 1
    # another name is added beside it
    fb3 = metadata.embed_metadata(fb2, {"w": 3}, name="extra")
    assert metadata.read_metadata(fb3) == {"v": 2}
    assert metadata.read_metadata(fb3, name="extra") == {"w": 3}
    # the model still runs
    runner = tf.lite.Interpreter(model_content=bytes(fb3))
    runner.allocate_tensors()
    runner.set_tensor(runner.get_input_details()[0]["index"], np.array([[1.0, 3.0]],
                                                                        np.float32))
    runner.invoke()
    outs = sorted(runner.get_tensor(d["index"]).tolist() for d in runner.get_output_details())
    assert outs == [[[2.0, 4.0]], [[2.0, 6.0]]]


def test_the_documented_texts_of_the_formats():
    # What a runtime reads: the format ids, the input normalisation and the outputs'
    # layouts (a changed text is a changed contract).
    meta = metadata.keypoint_metadata(_config(), "none")
    assert meta["model"] == "PRTR two-stage keypoint transformer (+ in-graph readout)"
    assert meta["input"]["name"] == "images" and meta["input"]["dtype"] == "float32"
    assert meta["input"]["normalization"] == \
        "(pixel / 255 - mean) / std, per channel in color_order"
    assert meta["outputs"] == {
        "keypoints": "(B, J, 2) float32 (x, y) normalised by the crop (W, H)",
        "keypoints_px": "(B, J, 2) float32 (x, y) in crop pixels",
        "keypoint_scores": "(B, J) float32",
        "query": "(B, J) int32 query assigned to each joint"}
    det = ml_collections.ConfigDict(dict(
        model=dict(kind="detr", backbone="resnet50", num_classes=2),
        data=dict(person_label=0, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))))
    d = metadata.detector_metadata(det, (4, 6), "none")
    assert d["model"] == "DETR person detector" and d["backbone"] == "resnet50"
    assert d["input"]["name"] == "images" and d["input"]["dtype"] == "float32"
    assert d["input"]["normalization"] == ("(pixel / 255 - mean) / std, per channel in "
                                           "color_order; resize (no padding) to size_hw")
    assert d["outputs"] == {
        "boxes": "(B, Q, 4) float32 (cx, cy, w, h) normalised by the input size",
        "scores": "(B, Q) float32 person probability (softmax incl. no-object)"}
    assert d["person_class_index"] == 0 and d["num_classes"] == 2
    assert metadata.METADATA_NAME == "prtr_tf_metadata"


def test_keypoint_metadata_has_exactly_its_fields():
    # The top-level keys a runtime reads, no more (rules out a key written under
    # another name: "dataset" is also set by keypoint_sets.metadata, spread last).
    meta = metadata.keypoint_metadata(_config(), "none")
    assert set(meta) == {"format", "model", "backbone", "dataset", "quantization",
                         "flip_test", "input", "outputs", "postprocess", "keypoint_names",
                         "skeleton", "flip_pairs", "sigmas"}


def test_detector_metadata_batch_and_score_threshold():
    # batch 1 by default; score_threshold: the serving default (0.4) unless given.
    from prtr_tf.serving import defaults
    det = ml_collections.ConfigDict(dict(
        model=dict(kind="detr", backbone="resnet50", num_classes=2),
        data=dict(person_label=0, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))))
    meta = metadata.detector_metadata(det, (4, 6), "none")
    assert meta["input"]["shape"] == [1, 4, 6, 3]
    assert meta["score_threshold"] == defaults.PERSON_SCORE_THRESHOLD == 0.4
    given = metadata.detector_metadata(det, (4, 6), "none", score_threshold=0.25)
    assert given["score_threshold"] == 0.25 and type(given["score_threshold"]) is float


@pytest.fixture(scope="module")
def signed_tflite():
    # As convert.py makes them: a frozen function, one signature, outputs output_0
    # (the dict's first key, "a": x * 2) and output_1 ("b": x + 1).
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import \
        convert_variables_to_constants_v2

    @tf.function(input_signature=[tf.TensorSpec([1, 2], tf.float32, name="x")])
    def f(x):
        return {"a": x * 2.0, "b": x + 1.0}

    frozen = convert_variables_to_constants_v2(f.get_concrete_function())
    return tf.lite.TFLiteConverter.from_concrete_functions(
        [frozen], trackable_obj=tf.Module()).convert()


def test_embedded_json_has_sorted_keys_and_outputs_get_their_names(tiny_tflite,
                                                                   signed_tflite):
    import tensorflow as tf
    # sorted keys: the same metadata gives the same bytes whatever the dict order
    meta = {"b": 1, "a": {"z": 0, "y": 1}}
    fb = metadata.embed_metadata(tiny_tflite, meta)
    assert list(metadata.read_metadata(fb)) == ["a", "b"]
    assert list(metadata.read_metadata(fb)["a"]) == ["y", "z"]
    assert fb == metadata.embed_metadata(tiny_tflite, {"a": {"y": 1, "z": 0}, "b": 1})
    # output_names rename the signature outputs output_0, output_1 (in that order)
    fb = metadata.embed_metadata(signed_tflite, meta, output_names=["doubled", "plus_one"])
    assert metadata.read_metadata(fb) == meta
    runner = tf.lite.Interpreter(model_content=bytes(fb))
    outputs = runner.get_signature_list()["serving_default"]["outputs"]
    assert sorted(outputs) == ["doubled", "plus_one"]
    runner.allocate_tensors()
    run = runner.get_signature_runner()
    got = run(x=np.array([[1.0, 3.0]], np.float32))
    assert got["doubled"].tolist() == [[2.0, 6.0]] and got["plus_one"].tolist() == [[2.0, 4.0]]
