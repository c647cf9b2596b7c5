"""Crafted torch pickles read by the restricted unpickler (`prtr_tf.checkpoints.torch_pickle`):
storage geometry, byte order, legacy views, tensor kinds it refuses, and pickles that
try to execute or import something (nothing is)."""
import collections
import io
import os
import pathlib
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from prtr_tf.checkpoints import torch_file
from prtr_tf.checkpoints.torch_file import Unresolved, load, read_state_dict

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "torch_files"

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
