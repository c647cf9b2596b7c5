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
import _compat_pickle
import collections
import io
import math
import os
import pickle
import struct
import sys
import zipfile
import zlib

import numpy as np

__all__ = ["Unresolved", "RestrictedUnpickler", "load", "read_state_dict",
           "STATE_DICT_KEYS", "TORCH_EXTENSIONS", "LEGACY_MAGIC_NUMBER"]

LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL_VERSION = 1001

# Entries of a training checkpoint tried, in this order, for its state dict (the
# order of the torch-based reader): ``state_dict`` (e.g. torchvision-style and
# Lightning trainers), ``model`` (DETR, Deformable-DETR, PRTR), ``model_state_dict``.
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict")

# Extensions `read_state_dict` accepts as torch files (as the torch-based reader).
TORCH_EXTENSIONS = (".pth", ".pt", ".bin", ".tar")

# torch dtype name -> (NumPy dtype of the saved bytes, NumPy dtype of the array given).
_BF16 = "bfloat16"
_DTYPES = {
    "float32": ("<f4", np.float32), "float64": ("<f8", np.float64),
    "float16": ("<f2", np.float16), _BF16: ("<u2", np.float32),
    "int64": ("<i8", np.int64), "int32": ("<i4", np.int32), "int16": ("<i2", np.int16),
    "int8": ("i1", np.int8), "uint8": ("u1", np.uint8), "bool": ("?", np.bool_),
    "complex64": ("<c8", np.complex64), "complex128": ("<c16", np.complex128),
    "uint16": ("<u2", np.uint16), "uint32": ("<u4", np.uint32), "uint64": ("<u8", np.uint64),
}
# torch's other spellings of those dtypes (``torch.float`` is ``torch.float32``, ...).
_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16",
                  "long": "int64", "int": "int32", "short": "int16",
                  "cfloat": "complex64", "cdouble": "complex128"}
# Legacy storage class names (``torch.FloatStorage``...) -> torch dtype name.
_STORAGE_TYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": _BF16, "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}


class Unresolved:
    """An object of a class (or the result of a function) that this reader does not
    rebuild: what the pickle asked for, recorded and never executed.

    Attributes: ``module``, ``name`` (the global the pickle named), ``args`` and
    ``kwargs`` (what it would have been called with), ``state`` (what ``__setstate__``
    would have received: for ``argparse.Namespace``, the dict of its attributes),
    ``items``/``entries`` (what list/dict-style pickles would have appended/set).
    """
    module = "?"
    name = "?"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs)
        object.__setattr__(self, "state", None)
        object.__setattr__(self, "items", [])
        object.__setattr__(self, "entries", {})
        return self

    def __init__(self, *args, **kwargs):  # REDUCE calls cls(*args): recorded in __new__
        pass

    def __setstate__(self, state):
        object.__setattr__(self, "state", state)

    def __setitem__(self, key, value):  # SETITEM(S) on the object
        self.entries[key] = value

    def append(self, item):  # APPEND(S) on the object
        self.items.append(item)

    def extend(self, items):
        self.items.extend(items)

    @property
    def qualname(self):
        return f"{self.module}.{self.name}"

    def __repr__(self):
        parts = []
        if self.args:
            parts.append(f"args={self.args!r}")
        if self.kwargs:
            parts.append(f"kwargs={self.kwargs!r}")
        if self.state is not None:
            parts.append(f"state={self.state!r}")
        return f"<Unresolved {self.qualname}{(' ' + ' '.join(parts)) if parts else ''}>"


class _TorchDtype:
    """``torch.float32`` and the like, as named in a pickle."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"torch.{self.name}"


class _StorageType:
    """``torch.FloatStorage`` (a dtype) or ``torch.UntypedStorage`` (bytes)."""

    def __init__(self, qualname, dtype):
        self.qualname, self.dtype = qualname, dtype

    def __repr__(self):
        return self.qualname


class _Storage:
    """One saved storage: ``array`` holds its elements (bfloat16 widened to float32)
    once ``fill`` has run; tensors are views of it."""

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel, self.filled = key, dtype, int(numel), False
        self.array = np.empty(self.numel, _DTYPES[dtype][1])
        self._reinterpreted = {}

    def fill(self, read_into, byteorder="little"):
        """``read_into(buffer)`` fills a writable byte buffer of exactly ``nbytes``."""
        saved = np.dtype(_DTYPES[self.dtype][0])
        if byteorder == "big":
            saved = saved.newbyteorder(">")
        if self.dtype == _BF16:
            raw = np.empty(self.numel, saved)
            read_into(memoryview(raw).cast("B"))
            bits = raw.astype(np.uint32) << 16
            self.array[...] = bits.view(np.float32)
        else:
            read_into(memoryview(self.array.view(np.uint8)))
            if byteorder != sys.byteorder and saved.itemsize > 1:
                self.array.byteswap(inplace=True)
        self.filled = True

    def elements(self, dtype):
        """The storage as an array of ``dtype`` elements (the storage's own, or, for
        ``_rebuild_tensor_v3`` on an untyped storage, its bytes reinterpreted)."""
        if dtype == self.dtype:
            return self.array
        if self.dtype != "uint8":
            raise ValueError(f"storage {self.key!r} holds {self.dtype} elements; a tensor "
                             f"reads it as {dtype}")
        if dtype not in self._reinterpreted:
            if not self.filled:
                raise ValueError(f"storage {self.key!r} is reinterpreted as {dtype} before "
                                 "its data was read")
            saved = np.dtype(_DTYPES[dtype][0])
            if self.numel % saved.itemsize:
                raise ValueError(f"storage {self.key!r} has {self.numel} bytes, not a "
                                 f"whole number of {dtype} elements")
            view = self.array.view(saved)
            if dtype == _BF16:
                view = (view.astype(np.uint32) << 16).view(np.float32)
            self._reinterpreted[dtype] = view
        return self._reinterpreted[dtype]


class _StorageView:
    """A legacy storage view (torch < 0.4): ``size`` elements of ``root`` from
    ``offset``; tensors rebuilt on it are offset into the root."""

    def __init__(self, root, offset, size):
        self.root, self.offset, self.size = root, offset, size
        self.key = f"{root.key}[{offset}:{offset + size}]"


def _ints(value, what):
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    values = tuple(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"tensor {what} {value!r} is not a tuple of integers")
    return values


def _tensor(storage, offset, size, stride, dtype=None):
    """The NumPy view of ``storage`` that torch's ``Tensor.set_(storage, offset, size,
    stride)`` makes, after checking that it stays inside the storage."""
    view = None
    if isinstance(storage, _StorageView):
        view, storage = storage, storage.root
    if not isinstance(storage, _Storage):
        raise ValueError(f"a tensor's storage is {storage!r}, not a saved storage")
    dtype = storage.dtype if dtype is None else dtype
    offset = _ints(offset, "storage offset")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
        raise ValueError(f"invalid tensor geometry: offset {offset}, size {size}, "
                         f"stride {stride}")
    elements = storage.elements(dtype)
    if 0 in size:
        return np.zeros(size, elements.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    limit = len(elements) if view is None else view.size
    if last >= limit:
        where = storage.key if view is None else view.key
        raise ValueError(f"tensor (offset {offset}, size {size}, stride {stride}) reaches "
                         f"element {last} of storage {where!r}, which has {limit}: "
                         "truncated or damaged file")
    if view is not None:
        if view.offset < 0 or view.size < 0 or view.offset + view.size > len(elements):
            raise ValueError(f"storage view {view.key!r} is outside its storage")
        offset += view.offset
    count = math.prod(size)
    contiguous = tuple(math.prod(size[i + 1:]) for i in range(len(size)))
    if all(n == 1 or s == c for n, s, c in zip(size, stride, contiguous)):
        return elements[offset:offset + count].reshape(size)
    item = elements.itemsize
    return np.lib.stride_tricks.as_strided(elements[offset:], shape=size,
                                           strides=tuple(s * item for s in stride))


def _apply_metadata(array, metadata):
    """torch's conj/neg bits (``get_tensor_metadata``): applied to a copy."""
    if metadata:
        if metadata.get("conj"):
            array = np.conj(array)
        if metadata.get("neg"):
            array = -array
    return array


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _apply_metadata(_tensor(storage, storage_offset, size, stride), metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    if not isinstance(dtype, _TorchDtype) or dtype.name not in _DTYPES:
        # float8, complex32, bits...: kept as a placeholder (read_state_dict refuses it).
        return _unresolved_class("torch._utils", "_rebuild_tensor_v3")(
            storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
            metadata)
    return _apply_metadata(_tensor(storage, storage_offset, size, stride, dtype.name),
                           metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    # A tensor subclass (or a Tensor with Python attributes): func is one of the
    # functions of this table or a placeholder; the subclass and its state are dropped.
    return func(*args)


def _rebuild_from_type(func, new_type, args, state):
    return func(*args)


def _codecs_encode(text, encoding="utf-8"):
    # Protocol 2 pickles bytes as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") not in (
            "latin1", "utf8", "ascii"):
        return _unresolved_class("_codecs", "encode")(text, encoding)
    return text.encode(encoding)


def _reconstructor(cls, base, state=None):
    # copyreg._reconstructor(cls, object, None): protocol 0/1 pickles of instances.
    if isinstance(cls, type) and issubclass(cls, Unresolved):
        return cls()
    return _unresolved_class("copyreg", "_reconstructor")(cls, base, state)


_UNRESOLVED_CLASSES = {}


def _unresolved_class(module, name):
    """A placeholder class for global ``module.name`` (cached): a type, so that both
    REDUCE (``cls(*args)``) and NEWOBJ (``cls.__new__(cls, *args)``) build an
    `Unresolved` instance."""
    key = (str(module), str(name))
    if key not in _UNRESOLVED_CLASSES:
        _UNRESOLVED_CLASSES[key] = type("Unresolved", (Unresolved,),
                                        {"module": key[0], "name": key[1],
                                         "__qualname__": "Unresolved"})
    return _UNRESOLVED_CLASSES[key]


_REBUILDERS = {
    "_rebuild_tensor": _rebuild_tensor, "_rebuild_tensor_v2": _rebuild_tensor_v2,
    "_rebuild_tensor_v3": _rebuild_tensor_v3, "_rebuild_parameter": _rebuild_parameter,
    "_rebuild_parameter_with_state": _rebuild_parameter_with_state,
}
def _bytearray(source=b"", encoding=None):
    # Protocol 2 pickles bytearray(b'..') as bytearray(str, 'latin-1'); an int (a size
    # to allocate) is not something torch.save writes.
    if isinstance(source, str) and encoding is not None:
        return bytearray(_codecs_encode(source, encoding))
    if isinstance(source, (bytes, bytearray)) and encoding is None:
        return bytearray(source)
    return _unresolved_class("builtins", "bytearray")(source, encoding)


_SAFE_BUILTINS = {"set": set, "frozenset": frozenset, "bytearray": _bytearray,
                  "complex": complex, "slice": slice}


def _resolve(module, name):
    """The table of globals a checkpoint pickle may use; None for anything else."""
    if module == "torch._utils" and name in _REBUILDERS:
        return _REBUILDERS[name]
    if module in ("torch._tensor", "torch.tensor"):
        return {"_rebuild_from_type_v2": _rebuild_from_type_v2,
                "_rebuild_from_type": _rebuild_from_type}.get(name)
    if module == "torch":
        if name in _STORAGE_TYPES:
            return _StorageType(f"torch.{name}", _STORAGE_TYPES[name])
        if name == "UntypedStorage":
            return _StorageType("torch.UntypedStorage", "uint8")
        if name in _DTYPES or name in _DTYPE_ALIASES:
            return _TorchDtype(_DTYPE_ALIASES.get(name, name))
        if name == "Size":
            return tuple
    if module == "torch.storage" and name == "UntypedStorage":
        return _StorageType("torch.UntypedStorage", "uint8")
    if module == "collections" and name == "OrderedDict":
        return collections.OrderedDict
    if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
        return _SAFE_BUILTINS[name]
    if module == "_codecs" and name == "encode":
        return _codecs_encode
    if module == "copyreg" and name == "_reconstructor":
        return _reconstructor
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that imports nothing: ``find_class`` answers from `_resolve`'s
    table, and any other global is an `Unresolved` placeholder class.
    ``persistent_load`` hands a storage id to ``storage_loader``."""

    def __init__(self, file, storage_loader=None):
        super().__init__(file, encoding="utf-8")
        self._storage_loader = storage_loader

    def find_class(self, module, name):
        # Python 2 names (protocol < 3: __builtin__, copy_reg...) as Python 3 names,
        # with pickle's own table (plain lookups; nothing is imported).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found = _resolve(module, name)
        return _unresolved_class(module, name) if found is None else found

    def persistent_load(self, pid):
        if self._storage_loader is None:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return self._storage_loader(pid)


class _PlainUnpickler(pickle.Unpickler):
    """For the legacy header pickles and key list: plain data, no globals at all."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"a global ({module}.{name}) where plain data was "
                                     "expected")


def _text(value):
    return value.decode("ascii") if isinstance(value, bytes) else value


def _storage_pid(pid, path, legacy):
    """(key, dtype name, numel, view_metadata) of a ``('storage', ...)`` id."""
    if not isinstance(pid, tuple) or not pid or _text(pid[0]) != "storage":
        what = _text(pid[0]) if isinstance(pid, tuple) and pid else pid
        raise ValueError(f"{path!r}: unsupported persistent id {what!r} (this reader "
                         "takes saved tensors and storages only; 'module' ids are whole "
                         "pickled nn.Modules of torch < 1.6)")
    fields = pid[1:]
    if len(fields) != (5 if legacy else 4):
        raise ValueError(f"{path!r}: malformed storage id {pid!r}")
    storage_type, key, _location, numel = fields[:4]
    if not isinstance(storage_type, _StorageType):
        name = getattr(storage_type, "qualname", storage_type)
        raise ValueError(f"{path!r}: storage type {name} is not supported (supported: "
                         f"torch.UntypedStorage, {', '.join(sorted(_STORAGE_TYPES))})")
    if not isinstance(numel, int) or numel < 0:
        raise ValueError(f"{path!r}: malformed storage size {numel!r}")
    return str(_text(key)), storage_type.dtype, numel, (fields[4] if legacy else None)


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
