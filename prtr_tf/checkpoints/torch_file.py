"""Reads PyTorch checkpoint files (``torch.save``) with NumPy alone: no PyTorch, and
nothing from the file is executed.

Two on-disk formats are read:

* the zip format of torch >= 1.6: ``<prefix>/data.pkl`` (the object pickle) with every
  tensor storage in ``<prefix>/data/<key>`` (stored uncompressed), ``<prefix>/byteorder``
  (``little``/``big``; absent in the oldest zip files, read as little); any prefix name;
* the legacy stream of torch < 1.6 (and ``_use_new_zipfile_serialization=False``):
  pickles of the magic number, the protocol version (1001) and a sys-info dict, then
  the object pickle, then the pickled list of storage keys, then each storage in
  that order as an 8-byte little-endian element count followed by its raw
  little-endian bytes.

(Not read: the tar format of torch < 0.4 and TorchScript archives (``torch.jit.save``);
both are refused with a `ValueError` that says so.)

The object pickle is read by `RestrictedUnpickler`, whose ``find_class`` resolves only
a fixed table of names (tensor rebuild functions, storage and dtype names,
``collections.OrderedDict``, a few builtin containers). A tensor becomes a NumPy
array that views its storage's array with the saved offset, shape and strides (so
tensors that shared a storage share memory, as they did in torch); bfloat16 is
widened to float32 (exactly: the bf16 bits are the high half of the float32). Every
other global (``argparse.Namespace``, ``os.system``, ``builtins.eval``, a model class,
...) becomes an `Unresolved` placeholder that records its module, name, arguments and
state, and calls nothing.

`load` returns the object tree; `read_state_dict` picks the state dict out of it
and is a drop-in for ``prtr_tf.checkpoints.torch_import.read_state_dict`` (same signature plus
``key``, same ``.npz`` handling and errors). Anything that is not a checkpoint raises
a `ValueError` that names the file and says what it looks like.
"""
import io
import os
import struct
import zipfile
import zlib

import numpy as np

from prtr_tf.checkpoints.torch_pickle import (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION,
    RestrictedUnpickler, STATE_DICT_KEYS, TORCH_EXTENSIONS, Unresolved, _DTYPES,
    _PlainUnpickler, _Storage, _StorageType, _StorageView, _TorchDtype, _ints, _storage_pid,
    _text, _unresolved_class)

__all__ = ["Unresolved", "RestrictedUnpickler", "load", "read_state_dict",
           "STATE_DICT_KEYS", "TORCH_EXTENSIONS", "LEGACY_MAGIC_NUMBER"]

def _describe(path, head):
    """What a file that is not a PyTorch checkpoint looks like (for the error)."""
    if not head:
        return "an empty file"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file (e.g. a Keras .weights.h5)"
    if head.startswith(b"PK\x05\x06"):
        return "an empty zip archive"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array file"
    if head.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file"
    if head.startswith(b"\x80") and len(head) > 1 and head[1] <= 5:
        return "a pickle that does not start with torch's magic number"
    try:
        sample = head.decode("utf-8")
    except UnicodeDecodeError:
        sample = None
    if sample is not None and all(c.isprintable() or c in "\r\n\t" for c in sample):
        return "a text file"
    return f"an unrecognised binary file (starts with {head[:8].hex(' ')})"


def _not_a_checkpoint(path, what):
    return ValueError(
        f"{os.fspath(path)!r} is not a PyTorch checkpoint: it is {what}. Expected a file "
        "written by torch.save (a zip archive with data.pkl, or the legacy pickle stream "
        "of torch < 1.6).")


def _with_path(error, path):
    """``error`` (a ValueError) with the file's name in its message."""
    if repr(path) in str(error):
        return error
    wrapped = ValueError(f"{path!r}: {error}")
    wrapped.__cause__ = error
    return wrapped


def load(path):
    """The object a ``torch.save`` file holds, rebuilt with NumPy: dicts, lists,
    tuples, `collections.OrderedDict`, `numpy.ndarray` for tensors and `Unresolved`
    for every object of another class. Raises ``FileNotFoundError`` or ``ValueError``
    (not a checkpoint, an unsupported variant, a damaged file)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(512)
    # A zip by its first bytes, as torch decides (zipfile.is_zipfile looks for an end
    # record near the end, which a legacy file's tensor data may happen to contain).
    if head.startswith(b"PK\x03\x04"):
        return _load_zip(path)
    if head.startswith(b"\x80") and len(head) > 1 and head[1] <= 5:
        return _load_legacy(path)
    if len(head) > 262 and head[257:262] == b"ustar":
        raise ValueError(f"{path!r} is a tar archive: the tar-based checkpoint format of "
                         "torch < 0.4 is not supported (re-save it with a current torch)")
    raise _not_a_checkpoint(path, _describe(path, head))


# ------------------------------------------------------------------------- zip format

def _zip_prefix(path, names):
    pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(pickles) != 1:
        if any(n.endswith(".npy") for n in names):
            what = "a NumPy .npz archive (read it with numpy.load)"
        elif not pickles:
            what = f"a zip archive without a <prefix>/data.pkl (entries: {names[:5]})"
        else:
            what = f"a zip archive with several data.pkl ({pickles})"
        raise _not_a_checkpoint(path, what)
    prefix = pickles[0][:-len("data.pkl")]
    if f"{prefix}constants.pkl" in names or any(n.startswith(f"{prefix}code/") for n in names):
        raise ValueError(f"{path!r} is a TorchScript archive (torch.jit.save), not a "
                         "torch.save checkpoint: save model.state_dict() with torch.save")
    return prefix


def _stored_data_offset(f, info):
    """Offset of an uncompressed member's bytes (after its local header)."""
    f.seek(info.header_offset)
    header = f.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _load_zip(path):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise _not_a_checkpoint(path, "a truncated or damaged zip archive (its central "
                                      f"directory is unreadable: {e})") from e
    with zf, open(path, "rb") as raw:
        names = zf.namelist()
        prefix = _zip_prefix(path, names)
        byteorder = "little"
        if f"{prefix}byteorder" in names:
            byteorder = zf.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise ValueError(f"{path!r}: unknown byte order {byteorder!r}")
        storages = {}

        def read_storage(key, dtype, numel):
            name = f"{prefix}data/{key}"
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise ValueError(f"{path!r}: storage {name!r} named by data.pkl is missing "
                                 "from the archive (truncated or damaged file?)") from None
            expected = numel * np.dtype(_DTYPES[dtype][0]).itemsize
            if info.file_size != expected:
                raise ValueError(f"{path!r}: storage {name!r} has {info.file_size} bytes, "
                                 f"data.pkl says {numel} {dtype} elements ({expected} "
                                 "bytes)")
            storage = _Storage(key, dtype, numel)
            if info.compress_type == zipfile.ZIP_STORED:
                offset = _stored_data_offset(raw, info)

                def read_into(buffer):
                    raw.seek(offset)
                    if raw.readinto(buffer) != len(buffer):
                        raise ValueError(f"{path!r}: storage {name!r} is truncated")
                    if zlib.crc32(buffer) != info.CRC:
                        raise ValueError(f"{path!r}: storage {name!r} fails its CRC "
                                         "check (damaged file)")
            else:  # re-compressed by some tool: zipfile inflates and checks the CRC
                def read_into(buffer):
                    buffer[:] = zf.read(name)
            storage.fill(read_into, byteorder)
            return storage

        def load_storage(pid):
            key, dtype, numel, _ = _storage_pid(pid, path, legacy=False)
            if key not in storages:
                storages[key] = read_storage(key, dtype, numel)
            elif storages[key].dtype != dtype:
                raise ValueError(f"{path!r}: storage {key!r} is read as two dtypes")
            return storages[key]

        try:
            data = zf.read(f"{prefix}data.pkl")
            return RestrictedUnpickler(io.BytesIO(data), load_storage).load()
        except ValueError as e:
            raise _with_path(e, path)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise ValueError(f"{path!r}: damaged zip archive ({e})") from e
        except Exception as e:  # malformed pickle: a clear error, never a half object
            raise ValueError(f"{path!r}: cannot read data.pkl: {type(e).__name__}: {e}") from e


# ---------------------------------------------------------------------- legacy format

class _ScanUnpickler(RestrictedUnpickler):
    """First pass over a legacy object pickle: finds where it ends and which storages
    it names, rebuilding nothing (every callable global is a placeholder)."""

    def find_class(self, module, name):
        found = super().find_class(module, name)
        if isinstance(found, (_StorageType, _TorchDtype)):
            return found
        return _unresolved_class(module, name)


def _load_legacy(path):
    """The legacy stream. Its storages follow the object pickle, so the pickle is read
    twice: a scan that finds its end and the storages it names, then, with every
    storage read, the real load (tensors are then made from filled storages)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        try:
            magic = _PlainUnpickler(f).load()
        except Exception as e:
            raise _not_a_checkpoint(path, "a pickle stream whose first pickle is not torch's "
                                          f"magic number ({type(e).__name__}: {e})") from e
        if magic != LEGACY_MAGIC_NUMBER:
            raise _not_a_checkpoint(path, "a pickle that does not start with torch's magic "
                                          "number")
        try:
            protocol = _PlainUnpickler(f).load()
            if protocol != LEGACY_PROTOCOL_VERSION:
                raise ValueError(f"{path!r}: legacy torch file of protocol {protocol!r}, "
                                 f"expected {LEGACY_PROTOCOL_VERSION}")
            sys_info = _PlainUnpickler(f).load()
            if not isinstance(sys_info, dict):  # storages are little-endian whatever it says
                raise ValueError(f"{path!r}: malformed legacy header {sys_info!r}")
            pickle_start = f.tell()
            named = {}  # storage key -> (dtype, numel)

            def scan_storage(pid):
                key, dtype, numel, _ = _storage_pid(pid, path, legacy=True)
                if named.setdefault(key, (dtype, numel)) != (dtype, numel):
                    raise ValueError(f"storage {key!r} is named as {named[key]} and as "
                                     f"{(dtype, numel)}")
                nbytes = numel * np.dtype(_DTYPES[dtype][0]).itemsize
                if nbytes > size:
                    raise ValueError(f"storage {key!r} claims {nbytes} bytes, more than "
                                     f"the file's {size}")

            _ScanUnpickler(f, scan_storage).load()
            keys = _PlainUnpickler(f).load()
            if not isinstance(keys, list):
                raise ValueError(f"malformed storage key list {keys!r}")
            storages = {}
            for key in keys:
                key = str(_text(key))
                if key not in named:
                    raise ValueError(f"storage {key!r} is in the file but the pickle does "
                                     "not name it (damaged file?)")
                dtype, numel = named[key]
                count = f.read(8)
                if len(count) != 8:
                    raise ValueError(f"truncated before storage {key!r}")
                (saved_numel,) = struct.unpack("<q", count)
                if saved_numel != numel:
                    raise ValueError(f"storage {key!r} holds {saved_numel} elements, the "
                                     f"pickle says {numel}")

                def read_into(buffer, key=key):
                    if f.readinto(buffer) != len(buffer):
                        raise ValueError(f"storage {key!r} is truncated")
                storage = storages[key] = _Storage(key, dtype, numel)
                storage.fill(read_into)  # legacy storages are little-endian
            unread = sorted(set(named) - set(storages))
            if unread:
                raise ValueError(f"storage(s) {unread} named by the pickle are missing from "
                                 "the file (truncated or damaged file?)")
            views = {}

            def load_storage(pid):
                key, _, _, view = _storage_pid(pid, path, legacy=True)
                storage = storages[key]
                if view is None:
                    return storage
                # Storage views (torch < 0.4): (view key, offset, size) in elements.
                view_key, offset, view_size = view
                if view_key not in views:
                    views[view_key] = _StorageView(storage, _ints(offset, "view offset"),
                                                   _ints(view_size, "view size"))
                return views[view_key]

            f.seek(pickle_start)
            return RestrictedUnpickler(f, load_storage).load()
        except ValueError as e:
            raise _with_path(e, path)
        except Exception as e:
            raise ValueError(f"{path!r}: cannot read the legacy torch pickle: "
                             f"{type(e).__name__}: {e}") from e


# ------------------------------------------------------------------------ state dicts

def _is_tensor_placeholder(value):
    return isinstance(value, Unresolved) and value.module.startswith("torch")


def read_state_dict(path, key=None):
    """``{name: numpy array}`` of an official checkpoint, without PyTorch.

    ``path``: a ``.npz`` (read with ``numpy.load``, no pickle) or a torch file
    (`TORCH_EXTENSIONS`: ``.pth``, ``.pt``, ``.bin``, ``.tar``). A torch file may hold
    the state dict itself or a training checkpoint (a dict such as DETR's
    ``{'model', 'optimizer', 'lr_scheduler', 'epoch', 'args'}``); then ``key`` names
    the entry, or, when ``key`` is None, the first of `STATE_DICT_KEYS`
    (``state_dict``, ``model``, ``model_state_dict``) that holds a dict is taken.
    Other entries (optimizer state, an ``argparse.Namespace``...) are read inertly and
    ignored. Non-tensor values inside the state dict are dropped (as the torch-based
    reader did); a ``module.`` prefix is kept (the importers strip it). bfloat16
    tensors come back as float32.

    Raises ``FileNotFoundError``; ``ValueError`` for an unsupported extension, a file
    that is not a checkpoint, a ``key`` that is absent, an object that holds no state
    dict (the message lists its top-level keys), or tensors this reader cannot rebuild.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    if ext not in TORCH_EXTENSIONS:
        raise ValueError(f"unsupported checkpoint format {ext!r} for {path!r}: expected "
                         ".pth, .pt, .bin, .tar or .npz")
    obj = load(path)
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            keys = sorted(map(str, obj)) if isinstance(obj, dict) else None
            raise ValueError(f"{path!r} has no entry {key!r}"
                             + (f"; its top-level keys: {keys}" if keys is not None
                                else f"; it holds {_kind(obj)}"))
        obj, where = obj[key], f"entry {key!r} of {path!r}"
    else:
        where, skipped = repr(path), []
        if isinstance(obj, dict):
            for candidate in STATE_DICT_KEYS:
                if candidate in obj and isinstance(obj[candidate], dict):
                    obj, where = obj[candidate], f"entry {candidate!r} of {path!r}"
                    break
                if candidate in obj:
                    skipped.append(f"{candidate!r} holds {_kind(obj[candidate])}")
            else:
                if skipped:
                    where += f" (whose {'; '.join(skipped)})"
    if not isinstance(obj, dict):
        raise ValueError(f"{where} holds {_kind(obj)}, not a state_dict")
    bad = sorted(str(k) for k, v in obj.items() if _is_tensor_placeholder(v))
    if bad:
        kinds = sorted({obj[k].qualname for k in obj if _is_tensor_placeholder(obj[k])})
        raise ValueError(f"{where}: {len(bad)} tensor(s) of a kind this reader does not "
                         f"rebuild ({', '.join(kinds)}; e.g. sparse, quantized or float8): "
                         + ", ".join(bad[:10]))
    state = {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not state:
        keys = sorted(map(str, obj))[:20]
        raise ValueError(f"{where} holds no tensors, so it is not a state_dict; its keys: "
                         f"{keys} (a training checkpoint's state dict is taken from "
                         f"{', '.join(STATE_DICT_KEYS)}; pass key= to name another entry)")
    return state


def _kind(obj):
    if isinstance(obj, Unresolved):
        return f"a pickled {obj.qualname} object"
    return f"a {type(obj).__name__}"
