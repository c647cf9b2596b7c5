"""Evaluation: COCO keypoint AP (rescoring, OKS-NMS, COCOeval), MPII PCKh (spec §5.7), PCK /
AUC / EPE, and the evaluation of a checkpoint: import the module you need
(``prtr_tf.evaluation.coco``, ``.mpii``, ``.nms``, ``.pck``, ``.checkpoint``). Nothing is
imported here, so that the command-line tools report a bad flag without loading
TensorFlow."""
