"""prtr-tf: PRTR (Pose Recognition with Cascade Transformers) in TensorFlow/Keras."""
from setuptools import find_packages, setup

setup(
    name="prtr-tf",
    version="0.1.0",
    description="PRTR: regression-based multi-person pose estimation with cascade Transformers, "
    "in TensorFlow/Keras",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # configs/ stays at the top of the checkout (where users read and copy the files)
    # and is also the package prtr_tf.configs, so that `load_config("synthetic_tiny")`
    # works after a plain `pip install`: one copy of the files, mapped by package_dir
    # (a wheel copies them into prtr_tf/configs/; an editable install maps the
    # package to this folder).
    packages=find_packages(include=["prtr_tf", "prtr_tf.*"]) + ["prtr_tf.configs"],
    package_dir={"prtr_tf.configs": "configs"},
    # the documented demo runs (prtr_tf.demo.documented; tools/demo_seeds.py writes it)
    package_data={"prtr_tf.demo": ["documented.json"]},
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
        "av>=18.1",  # video I/O: files, webcams, streams; H.264 through the libx264 in its wheels
    ],
    extras_require={
        "export": ["tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"],
        "torch": ["torch"],  # only for tools/torch_reference.py (the official model in PyTorch)
        # The test suite also checks the exports, so it needs the export tooling.
        "test": ["pytest", "pytest-xdist", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"],
        "gpu": ["tensorflow[and-cuda]==2.21.*"],
    },
    entry_points={"console_scripts": [
        "prtr-train=prtr_tf.cli.train:run",
        "prtr-eval=prtr_tf.cli.eval:run",
        "prtr-predict=prtr_tf.cli.predict:run",
        "prtr-export=prtr_tf.cli.export:run",
        "prtr-convert=prtr_tf.cli.convert:run",
    ]},
)
