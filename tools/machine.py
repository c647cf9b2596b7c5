"""Facts about this machine for benchmark reports: CPU model, core count, versions."""
import os
import platform
from importlib.metadata import PackageNotFoundError, version

MODULES = ("tensorflow", "keras", "scipy", "onnxruntime", "tf2onnx")


def cpu_model():
    """The CPU model name from /proc/cpuinfo (else platform.processor(), else "?")."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine_info():
    """{"nproc", "cpu", "python", each of MODULES and "ai-edge-litert": its version, or
    None when it is not installed}."""
    info = {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()}
    for name in MODULES:
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    try:
        info["ai-edge-litert"] = version("ai-edge-litert")
    except PackageNotFoundError:
        info["ai-edge-litert"] = None
    return info
