"""The PyTorch-free checkpoint reader (`prtr_tf.checkpoints.torch_file`).

The files under tests/fixtures/torch_files/ were written by real ``torch.save`` (both
formats) with tools/make_torch_fixtures.py, which also wrote the expected values
(.npz/.json) from the same tensors and checked them against ``torch.load``. Other
files here are crafted in the test (damaged archives, malicious pickles, bad tensor
geometry) with `_craft_zip` / `_craft_legacy`, which write exactly the records that
torch's ``_save`` / ``_legacy_save`` write, through stand-in ``torch`` modules.
"""
import collections
import io
import json
import os
import pathlib
import pickle
import shutil
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from prtr_tf.checkpoints import torch_file
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


def test_key_choice_and_errors_list_what_the_file_holds(tmp_path):
    """Rules out: an explicit ``key`` ignored, a non-state-dict entry returned as one,
    and errors that do not say which keys the file has."""
    path = str(FIXTURES / "training_zip.pth")
    assert set(read_state_dict(path, key="model")) == set(read_state_dict(path))
    with pytest.raises(ValueError, match=r"no entry 'ema'.*'args', 'epoch', 'lr_scheduler', "
                                         r"'model', 'optimizer'"):
        read_state_dict(path, key="ema")
    with pytest.raises(ValueError, match=r"entry 'optimizer'.*holds no tensors.*param_groups"):
        read_state_dict(path, key="optimizer")
    # A training checkpoint without any of the state-dict keys: its keys are listed.
    crafted = tmp_path / "no_model.pth"
    _craft_zip(crafted, {"epoch": 3, "ema_weights": {"a": 1}})
    with pytest.raises(ValueError, match=r"holds no tensors.*\['ema_weights', 'epoch'\].*"
                                         r"state_dict, model, model_state_dict"):
        read_state_dict(str(crafted))
    # 'model' is a whole pickled nn.Module: said so, not returned.
    crafted = tmp_path / "module.pth"
    _craft_zip(crafted, {"model": _Module(), "epoch": 1})
    with pytest.raises(ValueError, match=r"'model' holds a pickled .*_Module object"):
        read_state_dict(str(crafted))


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

class _Module:
    """Pickled by reference (tests.checkpoints.test_torch_file._Module), like a model
    class: the reader must not import this module to resolve it."""


class _Storage:
    def __init__(self, key, values):
        self.key, self.values = key, np.asarray(values, np.float32)


class _View:
    """A storage view of torch < 0.4's legacy files: ``size`` elements of ``root``
    from ``offset``."""

    def __init__(self, root, key, offset, size):
        self.root, self.key, self.offset, self.size = root, key, offset, size


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False,
                     collections.OrderedDict())


class _SparseTensor:
    """Pickles as torch._utils._rebuild_sparse_tensor(...), a tensor kind the reader
    leaves as a placeholder."""


def _fake_torch(monkeypatch):
    """Stand-ins for torch.FloatStorage and torch._utils._rebuild_tensor_v2, so that
    plain pickle writes the same GLOBAL records torch.save writes."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    storage_type = type("FloatStorage", (), {"__module__": "torch"})

    def stand_in(name):
        def function(*args):
            raise AssertionError("never called")
        function.__module__, function.__name__, function.__qualname__ = (
            "torch._utils", name, name)
        setattr(utils, name, function)
        return function
    rebuild, sparse = stand_in("_rebuild_tensor_v2"), stand_in("_rebuild_sparse_tensor")
    torch.FloatStorage, torch._utils = storage_type, utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    monkeypatch.setattr(_Tensor, "__reduce__", lambda self: (rebuild, self.args),
                        raising=False)
    monkeypatch.setattr(_SparseTensor, "__reduce__", lambda self: (sparse, ("coo", ())),
                        raising=False)
    return storage_type


def _storages(obj, found):
    if isinstance(obj, _Storage):
        found[obj.key] = obj
    elif isinstance(obj, _View):
        found[obj.root.key] = obj.root
    elif isinstance(obj, _Tensor):
        _storages(obj.args[0], found)
    elif isinstance(obj, dict):
        for v in obj.values():
            _storages(v, found)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _storages(v, found)
    return found


def _pickle_with_storages(obj, legacy, protocol=2):
    with pytest.MonkeyPatch.context() as m:
        storage_type = _fake_torch(m)

        class Pickler(pickle.Pickler):
            def persistent_id(self, o):
                if isinstance(o, _Storage):
                    pid = ("storage", storage_type, o.key, "cpu", o.values.size)
                    return pid + (None,) if legacy else pid
                if isinstance(o, _View):
                    assert legacy
                    return ("storage", storage_type, o.root.key, "cpu", o.root.values.size,
                            (o.key, o.offset, o.size))
                return None
        buf = io.BytesIO()
        Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def _craft_zip(path, obj, protocol=2, byteorder="little"):
    """A zip-format checkpoint as torch's ``_save`` lays it out."""
    storages = _storages(obj, {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("crafted/data.pkl", _pickle_with_storages(obj, False, protocol))
        z.writestr("crafted/byteorder", byteorder)
        for key, s in storages.items():
            z.writestr(f"crafted/data/{key}",
                       s.values.astype("<f4" if byteorder == "little" else ">f4").tobytes())


def test_big_endian_zip_is_byteswapped(tmp_path):
    """Rules out: the ``byteorder`` record ignored (a checkpoint saved on a big-endian
    machine read as garbage)."""
    values = [1.5, -2.0, 3.0e-5]
    _craft_zip(tmp_path / "big.pth", {"w": _Tensor(_Storage("0", values), 0, (3,), (1,))},
               byteorder="big")
    got = read_state_dict(str(tmp_path / "big.pth"))["w"]
    assert got.dtype == np.float32 and got.tolist() == np.float32(values).tolist()


def _craft_legacy(path, obj):
    """A legacy-format checkpoint as torch's ``_legacy_save`` writes it."""
    storages = _storages(obj, {})
    with open(path, "wb") as f:
        for header in (torch_file.LEGACY_MAGIC_NUMBER, 1001,
                       {"protocol_version": 1001, "little_endian": True,
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, f, protocol=2)
        f.write(_pickle_with_storages(obj, True))
        keys = sorted(storages)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            f.write(struct.pack("<q", storages[key].values.size))
            f.write(storages[key].values.astype("<f4").tobytes())


@pytest.mark.parametrize("craft", (_craft_zip, _craft_legacy))
def test_tensor_geometry_outside_its_storage_is_refused(tmp_path, craft):
    """Rules out: ``as_strided`` reading memory beyond a storage when a (damaged or
    hostile) file gives a size/stride/offset that does not fit. The crafted writers
    are checked first on a valid tensor (positive control)."""
    s = _Storage("0", np.arange(6))
    craft(tmp_path / "ok.pth", {"w": _Tensor(s, 1, (2, 2), (1, 2))})
    np.testing.assert_array_equal(read_state_dict(str(tmp_path / "ok.pth"))["w"],
                                  [[1, 3], [2, 4]])
    for offset, size, stride in ((0, (2, 4), (4, 1)), (6, (1,), (1,)), (0, (3,), (-1,))):
        path = tmp_path / "bad.pth"
        craft(path, {"w": _Tensor(s, offset, size, stride)})
        with pytest.raises(ValueError, match="storage|geometry"):
            read_state_dict(str(path))


def test_legacy_storage_views_are_offset_into_their_root(tmp_path):
    """torch < 0.4 legacy files could name a view (key, offset, size) of a storage.
    Rules out: the view's offset ignored, and a tensor allowed past the view's end."""
    root = _Storage("root", np.arange(10))
    view = _View(root, "view", 4, 3)
    _craft_legacy(tmp_path / "views.pth", {"v": _Tensor(view, 1, (2,), (1,)),
                                           "r": _Tensor(root, 0, (10,), (1,))})
    got = read_state_dict(str(tmp_path / "views.pth"))
    assert got["v"].tolist() == [5.0, 6.0] and np.shares_memory(got["v"], got["r"])
    _craft_legacy(tmp_path / "past.pth", {"v": _Tensor(view, 1, (3,), (1,))})
    with pytest.raises(ValueError, match=r"past\.pth.*reaches element 3 of storage "
                                         r"'root\[4:7\]'"):
        read_state_dict(str(tmp_path / "past.pth"))


@pytest.mark.parametrize("craft", (_craft_zip, _craft_legacy))
def test_tensor_kinds_not_rebuilt_are_refused_by_name(tmp_path, craft):
    """Rules out: a sparse (or quantized, float8...) tensor silently dropped from a
    state dict: load() keeps it as a placeholder, read_state_dict names it."""
    craft(tmp_path / "sparse.pth", {"a": _Tensor(_Storage("0", [1.0]), 0, (), ()),
                                    "s": _SparseTensor()})
    assert load(tmp_path / "sparse.pth")["s"].qualname == "torch._utils._rebuild_sparse_tensor"
    with pytest.raises(ValueError, match=r"1 tensor\(s\) of a kind this reader does not "
                                         r"rebuild \(torch._utils._rebuild_sparse_tensor.*: s$"):
        read_state_dict(str(tmp_path / "sparse.pth"))


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def _canary_module(tmp_path, monkeypatch):
    """A module that, if ever imported, writes a file: pickles naming it must not
    import it."""
    name = "prtr_canary_" + tmp_path.name.replace("-", "_")
    (tmp_path / f"{name}.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\n"
        "def boom(x):\n    raise AssertionError\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize("protocol", (0, 2, 4))
def test_restricted_unpickler_executes_and_imports_nothing(tmp_path, monkeypatch, protocol):
    """Rules out: the reader calling or importing anything a pickle names. Payloads:
    os.system (pickled as posix.system), builtins.eval / exec, a getattr/__import__
    chain, and a global of a module whose import writes a file; read raw and inside a
    zip and a legacy checkpoint. Each becomes an `Unresolved` (or, for the chain that
    calls a placeholder, a ValueError) and no side effect happens."""
    sentinel = tmp_path / "pwned"
    shell = f"touch {sentinel}"
    python = f"open({str(sentinel)!r}, 'w').close()"
    canary = _canary_module(tmp_path, monkeypatch)
    boom = types.FunctionType((lambda x: None).__code__, {}, "boom")
    boom.__module__, boom.__qualname__ = canary, "boom"
    monkeypatch.setitem(sys.modules, canary, types.SimpleNamespace(boom=boom))
    payloads = {"system": _Evil(os.system, shell), "eval": _Evil(eval, python),
                "exec": _Evil(exec, python), "canary": _Evil(boom, python),
                "weights": _Tensor(_Storage("0", [1.0, 2.0]), 0, (2,), (1,))}
    raw = pickle.dumps({k: v for k, v in payloads.items() if k != "weights"},
                       protocol=protocol)
    monkeypatch.delitem(sys.modules, canary)  # the reader must not bring it back
    obj = torch_file.RestrictedUnpickler(io.BytesIO(raw)).load()
    assert obj["system"].qualname in ("posix.system", "nt.system")
    assert obj["system"].args == (shell,)
    assert (obj["eval"].qualname, obj["exec"].qualname) == ("builtins.eval", "builtins.exec")
    assert obj["canary"].qualname == f"{canary}.boom"
    for craft in (_craft_zip, _craft_legacy):
        path = tmp_path / f"evil_{craft.__name__}.pth"
        monkeypatch.setitem(sys.modules, canary, types.SimpleNamespace(boom=boom))
        # torch's persistent ids (tuples) need a binary protocol: 2 (torch's) or more.
        (craft(path, payloads, max(protocol, 2)) if craft is _craft_zip
         else craft(path, payloads))
        monkeypatch.delitem(sys.modules, canary)
        got = load(path)
        assert isinstance(got["system"], Unresolved) and got["system"].args == (shell,)
        assert got["weights"].tolist() == [1.0, 2.0]
        assert read_state_dict(str(path)).keys() == {"weights"}  # placeholders dropped
    # getattr(__import__('os'), 'system')(cmd): calling a placeholder's result is refused.
    chain = (b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(V"
             + shell.encode() + b"\ntR.")
    with pytest.raises(TypeError):
        torch_file.RestrictedUnpickler(io.BytesIO(chain)).load()
    with zipfile.ZipFile(tmp_path / "chain.pth", "w") as z:
        z.writestr("x/data.pkl", chain)
    with pytest.raises(ValueError, match="cannot read data.pkl"):
        load(tmp_path / "chain.pth")
    assert not sentinel.exists() and not (tmp_path / "imported").exists()
    assert canary not in sys.modules
