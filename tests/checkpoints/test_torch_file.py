"""The PyTorch-free checkpoint reader (`prtr_tf.checkpoints.torch_file`).

The files under tests/fixtures/torch_files/ were written by real ``torch.save`` (both
formats) with tools/make_torch_fixtures.py, which also wrote the expected values
(.npz/.json) from the same tensors and checked them against ``torch.load``. Other
files here are crafted in the test (damaged archives, malicious pickles, bad tensor
geometry) with `_craft_zip` / `_craft_legacy`, which write exactly the records that
torch's ``_save`` / ``_legacy_save`` write, through stand-in ``torch`` modules.
"""
import collections
import json
import pathlib
import pickle
import shutil
import struct
import sys
import zipfile

import numpy as np
import pytest

from prtr_tf.checkpoints.torch_file import Unresolved, load, read_state_dict

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "torch_files"
FILES = ("state_dict_zip", "state_dict_legacy", "training_zip", "training_legacy")


def _expected(name):
    with np.load(FIXTURES / name) as data:
        return {k: data[k] for k in data.files}


def _assert_bitwise(got, want, what):
    assert got.dtype == want.dtype, (what, got.dtype, want.dtype)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert got.tobytes() == want.tobytes(), what  # bitwise: -0.0, inf, NaN bits included


@pytest.mark.parametrize("name", FILES)
def test_every_tensor_reads_bitwise_as_torch_wrote_it(name, monkeypatch):
    """Rules out: a wrong dtype or byte order per storage type, a wrong bfloat16
    widening, offsets/strides ignored (the views of one storage, the transpose, the
    column, the stride-0 expand), a lost 0-d shape, a storage read from the wrong
    record or position, the training checkpoint's ``model`` not picked, and any use
    of torch (``import torch`` fails throughout)."""
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    expected = _expected("expected_state_dict.npz")
    got = read_state_dict(str(FIXTURES / f"{name}.pth"))
    want = set(expected) - ({"uint16"} if "legacy" in name else set())  # zip-only tensor
    assert set(got) == want
    for key in want:
        _assert_bitwise(got[key], expected[key], key)
    assert got["scalar"].shape == () and got["bn.num_batches_tracked"].shape == ()
    assert got["bf16"].dtype == np.float32  # NumPy has no bfloat16


@pytest.mark.parametrize("name", ("state_dict_zip", "state_dict_legacy"))
def test_tensors_on_one_storage_share_memory_as_in_torch(name):
    """Rules out: copies where torch had views (each shared.* is a view of one
    storage), and views that are right by value but not by layout."""
    sd = load(FIXTURES / f"{name}.pth")
    assert isinstance(sd, collections.OrderedDict)
    assert sd._metadata[""] == {"version": 1}  # torch's state-dict metadata (BUILD)
    full = sd["shared.full"]
    for key in ("shared.rows", "shared.transposed", "shared.column"):
        assert np.shares_memory(full, sd[key]), key
    np.testing.assert_array_equal(sd["shared.transposed"], full.T)
    np.testing.assert_array_equal(sd["shared.column"], full[:, 2])
    assert sd["shared.transposed"].strides == (4, 24) and sd["expanded"].strides == (0, 4)
    assert not np.shares_memory(full, sd["conv.weight"])


@pytest.mark.parametrize("fmt", ("zip", "legacy"))
def test_training_checkpoint_args_is_an_inert_placeholder(fmt, monkeypatch):
    """A DETR-style training checkpoint, which torch's weights_only loader refuses.
    Rules out: argparse imported or a Namespace built (it is an `Unresolved` that holds
    the attributes), optimizer/scheduler state lost or misread, ``model`` not picked."""
    monkeypatch.delitem(sys.modules, "argparse", raising=False)
    ckpt = load(FIXTURES / f"training_{fmt}.pth")
    assert "argparse" not in sys.modules  # find_class never imported it
    assert sorted(ckpt) == ["args", "epoch", "lr_scheduler", "model", "optimizer"]
    args = ckpt["args"]
    assert isinstance(args, Unresolved) and args.qualname == "argparse.Namespace"
    with open(FIXTURES / "expected_args.json") as f:
        want = json.load(f)
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in args.state.items()} == want
    assert ckpt["epoch"] == 3 and ckpt["lr_scheduler"]["step_size"] == 40
    optimizer = ckpt["optimizer"]
    assert optimizer["param_groups"][0]["betas"] == (0.9, 0.999)
    for key, want in _expected("expected_optimizer.npz").items():
        _, index, field = key.split(".")
        _assert_bitwise(optimizer["state"][int(index)][field], want, key)
    model = read_state_dict(str(FIXTURES / f"training_{fmt}.pth"))
    plain = read_state_dict(str(FIXTURES / f"state_dict_{fmt}.pth"))
    assert set(model) == set(plain)
    assert all(model[k].tobytes() == plain[k].tobytes() for k in plain)


def test_npz_and_errors_match_the_torch_based_reader(tmp_path):
    """Same contract as prtr_tf.nn.torch_import.read_state_dict: .npz read with
    numpy (no pickle), FileNotFoundError, 'unsupported checkpoint format'."""
    npz = tmp_path / "official.npz"
    np.savez(npz, a=np.arange(3, dtype=np.float32))
    assert read_state_dict(str(npz))["a"].tolist() == [0, 1, 2]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_state_dict(str(tmp_path / "nope.pth"))
    bad = tmp_path / "weights.bin.gz"
    bad.write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported checkpoint format"):
        read_state_dict(str(bad))


def _h5(path):
    import h5py
    with h5py.File(path, "w") as f:
        f["layers/dense/vars/0"] = np.zeros(3, np.float32)


def _truncated_zip(path):
    data = (FIXTURES / "state_dict_zip.pth").read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _npz_as_pth(path):
    with open(path, "wb") as f:
        np.savez(f, a=np.zeros(2))


def _plain_pickle(path):
    path.write_bytes(pickle.dumps({"a": [1, 2]}, protocol=2))


@pytest.mark.parametrize("make, what", [
    (lambda p: p.write_text("conv.weight 1 2 3\n"), "a text file"),
    (_h5, "an HDF5 file"),
    (_truncated_zip, "a truncated or damaged zip archive"),
    (lambda p: p.write_bytes(bytes(range(7, 250)) * 3), "an unrecognised binary file"),
    (lambda p: p.write_bytes(b""), "an empty file"),
    (_npz_as_pth, "a NumPy .npz archive"),
    (_plain_pickle, "does not start with torch's magic number"),
], ids=["text", "hdf5", "truncated_zip", "random", "empty", "npz", "plain_pickle"])
def test_files_that_are_not_checkpoints_are_named_and_described(tmp_path, make, what):
    """Rules out: a cryptic pickle/zip exception (or garbage returned) for a file that
    is no checkpoint; the message names the file, what it is and what was expected."""
    path = tmp_path / "weights.pth"
    make(path)
    with pytest.raises(ValueError) as e:
        read_state_dict(str(path))
    msg = str(e.value)
    assert str(path) in msg and what in msg, msg
    assert "Expected a file written by torch.save" in msg
    if what == "an HDF5 file":  # also as a .weights.h5 through load()
        shutil.copy(path, tmp_path / "x.weights.h5")
        with pytest.raises(ValueError, match="an HDF5 file"):
            load(tmp_path / "x.weights.h5")


def _rewrite_zip(src, dst, rename=lambda n: n, drop=(), compress=zipfile.ZIP_STORED,
                 patch=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compress) as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = zin.read(info.filename)
            if patch and info.filename in patch:
                data = patch[info.filename](data)
            zout.writestr(rename(info.filename), data)


def test_zip_with_a_missing_or_short_storage_is_a_clear_error(tmp_path):
    """Rules out: uninitialised memory or a KeyError when data.pkl names a storage the
    archive lacks or that is shorter than data.pkl says."""
    src = FIXTURES / "state_dict_zip.pth"
    missing = tmp_path / "missing.pth"
    _rewrite_zip(src, missing, drop=("state_dict_zip/data/3",))
    with pytest.raises(ValueError, match=r"missing\.pth.*storage 'state_dict_zip/data/3' "
                                         r"named by data.pkl is missing"):
        read_state_dict(str(missing))
    short = tmp_path / "short.pth"
    _rewrite_zip(src, short, patch={"state_dict_zip/data/0": lambda b: b[:-4]})
    with pytest.raises(ValueError, match=r"data/0' has 212 bytes, data.pkl says 54 "
                                         r"float32 elements"):
        read_state_dict(str(short))


def test_zip_storage_damage_fails_the_crc_check(tmp_path):
    """Rules out: silently wrong weights from a flipped byte inside a stored record
    (the fast path reads records directly, so it checks the CRC itself)."""
    data = bytearray((FIXTURES / "state_dict_zip.pth").read_bytes())
    with zipfile.ZipFile(FIXTURES / "state_dict_zip.pth") as z:
        info = z.getinfo("state_dict_zip/data/0")
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26:
                                                     info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len + 5] ^= 0x40
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="fails its CRC check"):
        read_state_dict(str(damaged))


def test_any_archive_prefix_and_recompressed_members(tmp_path):
    """Rules out: a hard-coded prefix (torch names it after the file; older versions
    'archive') and a reader that only handles stored members (an archive re-zipped
    with deflate by some tool)."""
    copy = tmp_path / "renamed.pth"
    _rewrite_zip(FIXTURES / "state_dict_zip.pth", copy, compress=zipfile.ZIP_DEFLATED,
                 rename=lambda n: "archive/" + n.split("/", 1)[1])
    want = read_state_dict(str(FIXTURES / "state_dict_zip.pth"))
    got = read_state_dict(str(copy))
    assert set(got) == set(want)
    for key in want:
        _assert_bitwise(got[key], want[key], key)


def test_truncated_legacy_file_is_a_clear_error(tmp_path):
    """Rules out: a legacy file cut inside its storages read as zeros/garbage."""
    data = (FIXTURES / "state_dict_legacy.pth").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"cut\.pth.*truncated"):
        read_state_dict(str(cut))


# ------------------------------------------------------------------- crafted files
