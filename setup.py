"""prtr-tf: PRTR (Pose Recognition with Cascade Transformers) in TensorFlow/Keras."""
from setuptools import find_packages, setup

setup(
    name="prtr-tf",
    version="0.1.0",
    description="PRTR: regression-based multi-person pose estimation with cascade Transformers, "
    "in TensorFlow/Keras",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["prtr_tf", "prtr_tf.*"]),
    python_requires=">=3.11",
    install_requires=[
        "tensorflow-cpu==2.21.*; platform_machine!='aarch64' and sys_platform=='linux'",
        "tensorflow==2.21.*; platform_machine=='aarch64' or sys_platform!='linux'",
        "keras>=3.10",
        "numpy",
        "scipy",
        "pycocotools",
        "absl-py",
        "ml-collections",
        "pillow",
        "matplotlib",
        "tensorboard",
        "imageio",  # predict.py: videos and animated images (frames via Pillow or ffmpeg)
    ],
    extras_require={
        "export": ["tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"],
        "torch": ["torch"],
        # The test suite also checks the exports, so it needs the export tooling.
        "test": ["pytest", "pytest-xdist", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"],
        "gpu": ["tensorflow[and-cuda]==2.21.*"],
    },
    entry_points={"console_scripts": ["prtr-convert=prtr_tf.convert:run"]},
)
