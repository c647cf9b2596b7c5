"""The object pickle of a PyTorch checkpoint, read without PyTorch: the restricted
unpickler (`RestrictedUnpickler`: a fixed table of tensor rebuild functions, storage
and dtype names and plain containers; every other global an inert `Unresolved`
placeholder), storages and the NumPy views that tensors become. The file formats
around it are read by `prtr_tf.checkpoints.torch_file`."""
import _compat_pickle
import collections
import math
import pickle
import sys

import numpy as np


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
