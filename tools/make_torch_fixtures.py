"""Writes the PyTorch checkpoint fixtures of tests/checkpoints/test_torch_file.py with
real ``torch.save``, in both of its on-disk formats, and the values they must read as.

Developer tooling: it needs PyTorch, which the project does not (keep it out of the
project's venv). The committed files were written with torch 2.13.0 (any torch that
still has ``_use_new_zipfile_serialization`` would do):

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchvenv/bin/python tools/make_torch_fixtures.py [OUTPUT_DIR]

OUTPUT_DIR defaults to tests/fixtures/torch_files/. It writes:

* ``state_dict_zip.pth`` / ``state_dict_legacy.pth``: one OrderedDict state dict (with
  torch's ``_metadata`` attribute) in the zip format (torch >= 1.6) and in the legacy
  pickle stream (``_use_new_zipfile_serialization=False``, torch < 1.6's format).
  It holds float32/float64/float16/bfloat16/int64/int32/int16/int8/uint8/bool/
  complex64 tensors, an nn.Parameter, 0-d tensors, an empty tensor, an expanded
  (stride 0) tensor, and four views of one storage: the whole of it, a row slice
  (offset), a transpose and a column (non-contiguous, offset); the zip file also holds
  a uint16 tensor (saved as an UntypedStorage + ``_rebuild_tensor_v3``).
* ``training_zip.pth`` / ``training_legacy.pth``: a DETR-style training checkpoint
  ``{'model': <that state dict>, 'optimizer': AdamW.state_dict(), 'lr_scheduler':
  StepLR.state_dict(), 'epoch': 3, 'args': argparse.Namespace(...)}`` (the layout of
  DETR's and Deformable-DETR's ``checkpoint.pth``), which torch's ``weights_only``
  loader refuses because of the Namespace.
* ``expected_state_dict.npz``: every state dict tensor as NumPy (bfloat16 widened to
  float32, exactly), ``expected_optimizer.npz``: the optimizer's tensors as
  ``state.<param index>.<name>``; ``expected_args.json``: the Namespace's attributes.
"""
import argparse
import collections
import json
import os
import sys

import numpy as np
import torch

DEFAULT_OUTPUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "tests", "fixtures", "torch_files")


def state_dict(with_uint16):
    """The fixture state dict (torch tensors), deterministic."""
    g = torch.Generator().manual_seed(0)
    sd = collections.OrderedDict()
    sd["conv.weight"] = torch.randn(2, 3, 3, 3, generator=g)
    sd["conv.bias"] = torch.randn(2, generator=g)
    sd["linear.weight"] = torch.nn.Parameter(torch.randn(3, 4, generator=g))  # _rebuild_parameter
    sd["double"] = torch.randn(3, generator=g, dtype=torch.float64)
    sd["half"] = torch.randn(5, generator=g).half()
    sd["half"][0] = float("inf")
    bf16 = torch.randn(2, 3, generator=g).bfloat16()
    bf16[0, 0], bf16[0, 1], bf16[0, 2] = float("-inf"), -0.0, 3.0e38
    sd["bf16"] = bf16
    sd["bn.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)  # 0-d int64
    sd["scalar"] = torch.tensor(-2.5)  # 0-d float32
    sd["ids"] = torch.tensor([0, -1, 2**40, -(2**62)], dtype=torch.int64)
    sd["int32"] = torch.tensor([1, -2, 2**31 - 1], dtype=torch.int32)
    sd["int16"] = torch.tensor([-3, 300], dtype=torch.int16)
    sd["int8"] = torch.tensor([-128, 127], dtype=torch.int8)
    sd["uint8"] = torch.tensor([0, 255, 17], dtype=torch.uint8)
    sd["mask"] = torch.tensor([[True, False, True], [False, False, True]])
    sd["complex"] = torch.tensor([1 + 2j, -3.5j], dtype=torch.complex64)
    sd["empty"] = torch.zeros(0, 3)
    sd["expanded"] = torch.tensor([1.0, 2.0, 3.0]).expand(2, 3)  # stride (0, 1)
    # Four tensors on one 24-element storage.
    base = torch.randn(24, generator=g)
    sd["shared.full"] = base.view(4, 6)
    sd["shared.rows"] = base.view(4, 6)[1:3]  # offset 6, contiguous
    sd["shared.transposed"] = base.view(4, 6).t()  # strides (1, 6)
    sd["shared.column"] = base.view(4, 6)[:, 2]  # offset 2, stride 6
    if with_uint16:
        sd["uint16"] = torch.tensor([0, 1, 65535], dtype=torch.uint16)
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("conv", {"version": 1})])
    return sd


def expected(sd):
    def numpy(t):
        t = t.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()  # exact: every bfloat16 is a float32
        if t.dtype == torch.uint16:
            t = t.to(torch.int32)  # older torch lacks uint16 .numpy(); cast back below
            return t.numpy().astype(np.uint16)
        return t.numpy().copy()
    return {k: numpy(v) for k, v in sd.items()}


def training_checkpoint(sd):
    """The layout of DETR's / Deformable-DETR's checkpoint.pth."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    lr_scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 40)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.ones(3, 4)).square().sum().backward()
        optimizer.step()
        lr_scheduler.step()
    args = argparse.Namespace(lr=2e-4, lr_backbone=2e-5, batch_size=2, epochs=50,
                              lr_drop=40, backbone="resnet50", dilation=False,
                              position_embedding="sine", num_queries=300,
                              dataset_file="coco", coco_path="./data/coco",
                              output_dir="exps/r50_deformable_detr", device="cuda",
                              seed=42, resume="", frozen_weights=None,
                              lr_linear_proj_names=["reference_points", "sampling_offsets"],
                              strides=(8, 16, 32))
    checkpoint = {"model": sd, "optimizer": optimizer.state_dict(),
                  "lr_scheduler": lr_scheduler.state_dict(), "epoch": 3, "args": args}
    optimizer_tensors = {
        f"state.{index}.{name}": value.detach().numpy().copy()
        for index, state in optimizer.state_dict()["state"].items()
        for name, value in state.items() if torch.is_tensor(value)}
    args_json = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}
    return checkpoint, optimizer_tensors, args_json


def main(argv):
    output = argv[1] if len(argv) > 1 else DEFAULT_OUTPUT
    os.makedirs(output, exist_ok=True)
    written = []

    def save(obj, name, new_format):
        path = os.path.join(output, name)
        torch.save(obj, path, _use_new_zipfile_serialization=new_format)
        written.append(path)

    # torch's own legacy loader cannot read back the new (v3: UntypedStorage + dtype)
    # dtypes it writes ("UntypedStorage has no attribute dtype"), so the uint16 tensor
    # is in the zip files only; the expected values hold it.
    zip_sd, legacy_sd = state_dict(with_uint16=True), state_dict(with_uint16=False)
    save(zip_sd, "state_dict_zip.pth", True)
    save(legacy_sd, "state_dict_legacy.pth", False)
    checkpoint, optimizer_tensors, args_json = training_checkpoint(state_dict(True))
    save(checkpoint, "training_zip.pth", True)
    checkpoint, _, _ = training_checkpoint(state_dict(False))
    save(checkpoint, "training_legacy.pth", False)

    path = os.path.join(output, "expected_state_dict.npz")
    np.savez(path, **expected(zip_sd))
    written.append(path)
    path = os.path.join(output, "expected_optimizer.npz")
    np.savez(path, **optimizer_tensors)
    written.append(path)
    path = os.path.join(output, "expected_args.json")
    with open(path, "w") as f:
        json.dump(args_json, f, indent=1, sort_keys=True)
        f.write("\n")
    written.append(path)

    # Self-check with torch itself: what torch.load reads is what the .npz says.
    reference = expected(zip_sd)
    for name in ("state_dict_zip.pth", "state_dict_legacy.pth"):
        loaded = torch.load(os.path.join(output, name), weights_only=True)
        for key, value in expected(loaded).items():
            assert value.dtype == reference[key].dtype and value.tobytes() == \
                reference[key].tobytes(), (name, key)
    for path in written:
        print(f"{os.path.getsize(path):7d}  {path}")
    print(f"torch {torch.__version__}")


if __name__ == "__main__":
    main(sys.argv)
