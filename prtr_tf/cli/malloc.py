"""glibc malloc settings for TensorFlow on the CPU: freed memory is kept for reuse.

TensorFlow's CPU allocator is the C library's ``malloc``. With glibc's defaults a
freed block above the (adaptive) mmap threshold goes back to the kernel, and the free
top of the heap is trimmed, so every training step maps its activation buffers anew
and the kernel zeroes each page on first touch. Measured on the 2-core host of
`make demo` (configs/demo_keypoints.py, batch 16, 128x96 crops): a training step took
337 ms, of which a third was kernel time (page faults, ``clear_page``); with the
settings below it took 225-233 ms (kernel time 13.0 -> 3.2 s over 60 steps). The
large R50 inference graphs did not change beyond noise (their buffers are above the
32 MB cap of ``M_MMAP_THRESHOLD`` and stay mapped).

`tune` sets, through ``mallopt``:

* ``M_MMAP_THRESHOLD`` 32 MB (glibc's maximum): smaller blocks come from the heap;
* ``M_TRIM_THRESHOLD`` 1 GB: freed heap memory is kept rather than returned;
* ``M_TOP_PAD`` 64 MB: the heap grows in larger steps.

The cost is memory: a process keeps up to about 1 GB of freed heap for reuse. It
applies to the whole process, from the call on, so the command-line tools and the
demo call it at start; a library user may call it or not. ``PRTR_TF_MALLOC=default``
in the environment leaves glibc's defaults. A C library other than glibc (macOS,
musl) is left alone.
"""
import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc <malloc.h>
SETTINGS = ((M_MMAP_THRESHOLD, 32 << 20), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 64 << 20))
ENV = "PRTR_TF_MALLOC"

_applied = None


def tune():
    """Applies `SETTINGS` once per process; returns True when they are in effect,
    False where they are not (opted out, not glibc)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV, "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = all(mallopt(param, value) == 1 for param, value in SETTINGS)
    return _applied
