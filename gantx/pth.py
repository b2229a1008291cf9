"""Reading and writing PyTorch `.pth` state dicts without PyTorch, and without running their code.

A `.pth` state dict is a pickle of an OrderedDict name -> tensor, where each tensor is a call of
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and each storage is a
"persistent id" whose bytes lie outside the pickle. `torch.save` has written two layouts:

- zip (torch >= 1.6): `<root>/data.pkl` is the pickle, `<root>/data/<key>` the raw bytes of each
  storage, `<root>/byteorder` their byte order;
- legacy (torch 0.4 - 1.5, e.g. the official pix2pix and CycleGAN pretrained models): a stream of
  pickles (magic number, protocol version, system info, the object, the list of storage keys),
  followed by each storage as an int64 element count and its bytes.

`load` reads both with an unpickler that resolves only the handful of globals a state dict uses
(OrderedDict, the tensor rebuild functions, the storage types) and refuses anything else, which
is what `torch.load(weights_only=True)` allows: a file cannot run code. `save` writes the zip
layout, which `torch.load(path, weights_only=True)` reads back.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import zipfile
from typing import Any, Mapping

import ml_dtypes
import numpy as np

from gantx import paths

# torch storage class name -> numpy dtype of its elements.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "BFloat16Storage": ml_dtypes.bfloat16,
}
_DTYPE_STORAGES = {np.dtype(v): k for k, v in _STORAGE_DTYPES.items()}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class PthError(ValueError):
  """A file that is not a readable PyTorch state dict (names the file and the reason)."""


@dataclasses.dataclass
class _Storage:
  """One storage's elements; legacy files fill `data` after the pickle that refers to it."""
  dtype: np.dtype
  numel: int
  data: np.ndarray | None = None


@dataclasses.dataclass
class _Tensor:
  """A tensor as the pickle describes it: a strided view of a storage."""
  storage: _Storage
  offset: int
  size: tuple[int, ...]
  stride: tuple[int, ...]

  def numpy(self) -> np.ndarray:
    base = self.storage.data
    if base is None:
      raise PthError("a tensor refers to a storage the file does not hold")
    item = base.itemsize
    if self.offset < 0 or any(s < 0 for s in self.stride) or any(d < 0 for d in self.size):
      raise PthError(f"a tensor has a negative offset, size or stride ({self.offset}, {self.size}, {self.stride})")
    if 0 not in self.size and self.offset + sum((d - 1) * s for d, s in zip(self.size, self.stride)) >= len(base):
      raise PthError(f"a tensor of size {self.size} at offset {self.offset} overruns its storage of {len(base)}")
    if not self.size:
      return np.array(base[self.offset])
    view = np.lib.stride_tricks.as_strided(
        base[self.offset:], shape=self.size, strides=tuple(s * item for s in self.stride), writeable=False)
    return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, *_):
  """torch._utils._rebuild_tensor(_v2): the extra arguments (requires_grad, hooks) are dropped."""
  return _Tensor(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_):
  return data


class _StorageType:
  def __init__(self, name: str):
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
  """Resolves only the globals of a tensor state dict; storages come from `load_storage`."""

  def __init__(self, file, path, load_storage):
    super().__init__(file)
    self._path, self._load_storage = path, load_storage

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise PthError(f"{self._path}: refusing to load {module}.{name}: a state dict holds only tensors"
                   " (this reader, like torch.load(weights_only=True), runs no code from a file).")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise PthError(f"{self._path}: unexpected persistent id {pid!r}.")
    _, storage_type, key, _location, numel, *view = pid
    if view and view[0] is not None:
      raise PthError(f"{self._path}: storage views (torch < 0.4 files) are not supported.")
    if not isinstance(storage_type, _StorageType):
      raise PthError(f"{self._path}: storage of type {storage_type!r} is not supported.")
    return self._load_storage(str(key), storage_type.dtype, int(numel))


def _load_zip(path: str, f: io.BytesIO) -> Any:
  with zipfile.ZipFile(f) as z:
    names = z.namelist()
    pkl = [n for n in names if n.endswith("data.pkl")]
    if not pkl:
      raise PthError(f"{path}: a zip file without data.pkl is not a torch.save file.")
    root = pkl[0][: -len("data.pkl")]
    order = z.read(root + "byteorder").decode().strip() if root + "byteorder" in names else "little"
    prefix = "<" if order == "little" else ">"

    def load_storage(key: str, dtype: np.dtype, numel: int) -> _Storage:
      raw = z.read(f"{root}data/{key}")
      data = np.frombuffer(raw, dtype=dtype.newbyteorder(prefix), count=numel)
      return _Storage(dtype, numel, data.astype(dtype, copy=False))

    return _Unpickler(io.BytesIO(z.read(pkl[0])), path, load_storage).load()


def _load_legacy(path: str, f: io.BytesIO) -> Any:
  """The legacy torch.save stream (torch < 1.6): pickles, then each storage's bytes, in order."""
  f.seek(0)
  def read_pickle():
    return _Unpickler(f, path, load_storage).load()

  storages: dict[str, _Storage] = {}

  def load_storage(key: str, dtype: np.dtype, numel: int) -> _Storage:
    return storages.setdefault(key, _Storage(dtype, numel))

  try:
    magic, protocol, sys_info = read_pickle(), read_pickle(), read_pickle()
  except (pickle.UnpicklingError, EOFError) as e:
    raise PthError(f"{path}: not a PyTorch file (neither a zip nor a legacy torch.save stream): {e}") from e
  if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
    raise PthError(f"{path}: not a PyTorch file (magic {magic!r}, protocol {protocol!r}).")
  order = "<" if sys_info.get("little_endian", True) else ">"
  obj = read_pickle()
  for key in read_pickle():
    storage = storages[str(key)]
    (count,) = struct.unpack(order + "q", f.read(8))
    nbytes = count * storage.dtype.itemsize
    raw = f.read(nbytes)
    if len(raw) != nbytes:
      raise PthError(f"{path}: truncated (storage {key} holds {len(raw)} of {nbytes} bytes).")
    storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder(order)).astype(storage.dtype, copy=False)
  return obj


def _materialise(obj: Any) -> Any:
  if isinstance(obj, _Tensor):
    return obj.numpy()
  if isinstance(obj, Mapping):
    return {k: _materialise(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialise(v) for v in obj)
  return obj


def load(path: str | os.PathLike) -> dict[str, Any]:
  """Reads a `torch.save`d object of tensors (a state dict, or a dict holding some) as numpy.

  Returns the object with every tensor replaced by a numpy array (its dtype and shape kept) and
  OrderedDicts by dicts. Raises FileNotFoundError if `path` is missing and PthError (naming the
  file) if it is not a PyTorch file, is truncated, or holds anything but tensors and containers.
  """
  path = os.fspath(path)
  file = paths.path(path)
  if not file.is_file():
    raise FileNotFoundError(f"No such .pth file: {path}")
  data = io.BytesIO(file.read_bytes())  # local or in a bucket
  try:
    return _materialise(_load_zip(path, data) if zipfile.is_zipfile(data) else _load_legacy(path, data))
  except PthError as e:
    raise e if str(e).startswith(path) else PthError(f"{path}: {e}.") from e
  except (OSError, EOFError, KeyError, ValueError, TypeError, AttributeError, IndexError, struct.error,
          pickle.UnpicklingError, zipfile.BadZipFile) as e:
    raise PthError(f"{path}: cannot read it as a PyTorch file ({type(e).__name__}: {e}).") from e


# ------------------------------------------------------------------------------------- writing


def _op_unicode(s: str) -> bytes:
  b = s.encode()
  return pickle.BINUNICODE + struct.pack("<I", len(b)) + b


def _op_int(i: int) -> bytes:
  return pickle.BININT + struct.pack("<i", i)


def _op_tuple(items: list[bytes]) -> bytes:
  return pickle.MARK + b"".join(items) + pickle.TUPLE


def _op_global(module: str, name: str) -> bytes:
  return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _empty_ordered_dict() -> bytes:
  return _op_global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE


def _tensor_pickle(key: str, array: np.ndarray) -> bytes:
  """`_rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())` for a contiguous array."""
  storage = _op_tuple([_op_unicode("storage"), _op_global("torch", _DTYPE_STORAGES[array.dtype]),
                       _op_unicode(key), _op_unicode("cpu"), _op_int(array.size)]) + pickle.BINPERSID
  strides = [s // array.itemsize for s in array.strides] if array.size else [1] * array.ndim
  args = _op_tuple([storage, _op_int(0), _op_tuple([_op_int(d) for d in array.shape]),
                    _op_tuple([_op_int(s) for s in strides]), pickle.NEWFALSE, _empty_ordered_dict()])
  return _op_global("torch._utils", "_rebuild_tensor_v2") + args + pickle.REDUCE


def save(state_dict: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
  """Writes name -> array as a PyTorch state dict (zip layout; `torch.load(weights_only=True)`
  reads it as an OrderedDict of tensors). Arrays keep their dtype (float32, int64, ...)."""
  arrays = {}
  for key, value in state_dict.items():
    array = np.asarray(value, order="C")  # (ascontiguousarray would make a scalar 1-d)
    array = array.astype(array.dtype.newbyteorder("<"), copy=False)  # torch storages are little-endian
    if array.dtype not in _DTYPE_STORAGES:
      raise ValueError(f"{key}: dtype {array.dtype} has no PyTorch storage type.")
    arrays[key] = array
  body = [pickle.PROTO + bytes([2]), _empty_ordered_dict(), pickle.MARK]
  for i, (key, array) in enumerate(arrays.items()):
    body += [_op_unicode(key), _tensor_pickle(str(i), array)]
  body += [pickle.SETITEMS, pickle.STOP]
  root = os.path.splitext(os.path.basename(os.fspath(path)))[0] or "archive"
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
    z.writestr(f"{root}/data.pkl", b"".join(body))
    z.writestr(f"{root}/byteorder", "little")
    for i, array in enumerate(arrays.values()):
      z.writestr(f"{root}/data/{i}", array.tobytes())
    z.writestr(f"{root}/version", "3\n")
  paths.path(path).write_bytes(buffer.getvalue())
