"""SavedModel export of a serving module (`prtr_tf.models.keypoint.serving.PoseServing`,
`prtr_tf.models.end_to_end.serving.EndToEndServing`) with `keras.export.ExportArchive`,
which `saved_model_cli run` and TF Serving need."""

from prtr_tf.serving import metadata


def export_saved_model(serving, output, verbose=False):
    """Writes ``serving``'s functions as a SavedModel (`keras.export.ExportArchive`):
    signatures serving_default (= serve_image), serve_crops, serve_encoded; and the
    keypoint set's metadata and person score threshold (`prtr_tf.serving.metadata`)."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(serving.model)
    if serving.detector is not None:
        archive.track(serving.detector)
    for name, (fn, signature) in serving.functions().items():
        archive.add_endpoint(name, fn, input_signature=signature)
    archive.write_out(output, verbose=verbose)
    metadata.write(output, serving.config, getattr(serving, "score_threshold", None))
    return output
