"""Size and load time of a model file (``.keras``) against weights + config
(``.weights.h5`` with ``--config``): the measurement behind the model-file format
(prtr_tf.checkpoints.artifact; docs/checkpoints.md).

    python -m tools.artifact_benchmark [--configs=coco_res50_384x288,detr_r50_person] [--repeats=3]

Each config's model is built with random weights and written both ways; each load is
timed in a fresh process (what a user's command pays: imports excluded, the model's
build and weights included), ``--repeats`` times; the table prints the median.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import flags

from tools.flags import parse
from tools.machine import cpu_model

LOAD = r"""
import sys, time
import tensorflow as tf  # imports are not the load
from prtr_tf.checkpoints import weights
kind, config, path = sys.argv[1:4]
t = time.perf_counter()
if kind == "keras":
    weights.load_model(None, path, fold=False)
else:
    weights.load_model(config, path, fold=False)
print(time.perf_counter() - t)
"""


def _load_seconds(kind, config, path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", LOAD, kind, config, path], env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(config_name, repeats, folder):
    from prtr_tf.checkpoints import artifact
    from prtr_tf.config import load_config
    from prtr_tf.models import registry

    config = load_config(config_name)
    model = registry.build_model(config)
    h5 = os.path.join(folder, f"{config_name}.weights.h5")
    keras_file = os.path.join(folder, f"{config_name}.keras")
    t = time.perf_counter()
    model.save_weights(h5)
    save_h5 = time.perf_counter() - t
    t = time.perf_counter()
    artifact.save(model, config, keras_file, tool="tools.artifact_benchmark", card=False)
    save_keras = time.perf_counter() - t
    rows = []
    for kind, path, save in (("weights.h5 + config", h5, save_h5),
                             ("keras", keras_file, save_keras)):
        loads = [_load_seconds("keras" if kind == "keras" else "h5", config_name, path)
                 for _ in range(repeats)]
        rows.append((config_name, kind, os.path.getsize(path) / 2**20, save,
                     statistics.median(loads), min(loads), max(loads)))
    return rows


def main(argv=None):
    def define(values):
        flags.DEFINE_list("configs", ["coco_res50_384x288", "detr_r50_person"],
                          "Configs to measure.", flag_values=values)
        flags.DEFINE_integer("repeats", 3, "Loads per file (fresh processes).", lower_bound=1,
                             flag_values=values)
    f = parse(argv, define, __doc__, "python -m tools.artifact_benchmark")
    print(f"# python -m tools.artifact_benchmark --configs={','.join(f.configs)} "
          f"--repeats={f.repeats}")
    print(f"# host: {cpu_model()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}")
    print("| config | file | size MiB | save s | load s (median) | load s (min-max) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="prtr-artifact-") as folder:
        for name in f.configs:
            for row in measure(name, f.repeats, folder):
                print(f"| {row[0]} | {row[1]} | {row[2]:.1f} | {row[3]:.2f} | {row[4]:.2f} | "
                      f"{row[5]:.2f}-{row[6]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
