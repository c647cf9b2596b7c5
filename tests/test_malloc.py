"""`prtr_tf.cli.malloc`: freed memory is reused instead of being mapped (and page-faulted)
again, measured by the page faults of a fresh process that frees and reallocates
buffers of a training step's sizes (3-24 MiB)."""
import os
import subprocess
import sys

import pytest

PROBE = """
import resource
import numpy as np
from prtr_tf.cli import malloc
applied = malloc.tune()
def churn():
    for mb in (3, 6, 12, 24, 6, 3):
        a = np.ones(mb << 18, np.float32)  # mb MiB, every page touched
        del a
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    churn()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(setting):
    env = dict(os.environ)
    env.pop("PRTR_TF_MALLOC", None)
    if setting:
        env["PRTR_TF_MALLOC"] = setting
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_malloc_reuses_freed_buffers_and_the_default_can_be_kept():
    applied, faults = _probe(None)
    kept, default_faults = _probe("default")
    assert applied and not kept
    # 20 rounds of 54 MiB: re-mapping them would fault ~14,000 pages a round.
    assert faults < 50, faults
    assert default_faults > 10 * max(faults, 20), (faults, default_faults)
