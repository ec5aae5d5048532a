"""Reads and writes safetensors files with torch and the standard library only.

The format (https://github.com/huggingface/safetensors):
  8 bytes      little-endian u64: N, the length of the JSON header
  N bytes      JSON: {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
               plus an optional "__metadata__": {str: str}; padded with spaces
  the rest     raw little-endian tensor data; offsets are relative to it

API:
  read(path)  -> dict[str, torch.Tensor]   (CPU tensors, each owning its memory)
  write(path, tensors)                      (sorted names, atomic replace)
"""

import ctypes
import json
import os
import struct
import sys
import warnings
from typing import Dict

# torch works without numpy; its warning about it would only confuse.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402

__all__ = ["read", "write"]

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
# Unsigned wide integers exist in recent torch only.
for _name, _attr in (("U16", "uint16"), ("U32", "uint32"), ("U64", "uint64")):
    if hasattr(torch, _attr):
        _DTYPES[_name] = getattr(torch, _attr)
_NAMES = {dtype: name for name, dtype in _DTYPES.items()}

# A header larger than this is certainly a corrupt file (the reference
# implementation's limit is 100 MB).
_MAX_HEADER = 100_000_000


def _check_little_endian() -> None:
    if sys.byteorder != "little":
        raise RuntimeError("safetensors_lite supports little-endian machines only")


def read(path: str) -> Dict[str, torch.Tensor]:
    """All tensors of the safetensors file at `path`, by name (metadata dropped)."""
    _check_little_endian()
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file ({len(raw)} bytes)")
    (header_len,) = struct.unpack("<Q", raw[:8])
    if header_len > _MAX_HEADER or 8 + header_len > len(raw):
        raise ValueError(f"{path}: header length {header_len} does not fit the file ({len(raw)} bytes)")
    try:
        header = json.loads(raw[8 : 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: the header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the header is not a JSON object")
    data_start = 8 + header_len
    data_len = len(raw) - data_start
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _tensor(path, name, info, raw, data_start, data_len)
    return tensors


def _tensor(path: str, name: str, info: dict, raw: bytes, data_start: int, data_len: int) -> torch.Tensor:
    """One tensor of the file, validated against its header entry."""
    try:
        dtype_name, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: `{name}`: malformed header entry {info!r}") from None
    dtype = _DTYPES.get(dtype_name)
    if dtype is None:
        raise ValueError(f"{path}: `{name}`: unsupported dtype {dtype_name!r} (supported: {', '.join(_DTYPES)})")
    if not all(isinstance(s, int) and s >= 0 for s in shape):
        raise ValueError(f"{path}: `{name}`: bad shape {shape!r}")
    numel = 1
    for s in shape:
        numel *= s
    itemsize = torch.empty((), dtype=dtype).element_size()
    if not (0 <= begin <= end <= data_len) or end - begin != numel * itemsize:
        raise ValueError(
            f"{path}: `{name}`: data_offsets [{begin}, {end}] do not hold {dtype_name} {shape} "
            f"({numel * itemsize} bytes) within the {data_len} data bytes"
        )
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    # A private, writable copy: the tensor owns its (aligned) memory.
    buffer = bytearray(raw[data_start + begin : data_start + end])
    return torch.frombuffer(buffer, dtype=dtype).reshape(shape)


def write(path: str, tensors: Dict[str, torch.Tensor]) -> None:
    """Writes `tensors` (any device; copied to the CPU) to `path` in the safetensors format.

    Written to `path.tmp` and renamed, so readers never see a partial file."""
    _check_little_endian()
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"{path}: bad tensor name {name!r}")
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{path}: `{name}` is a {type(t).__name__}, not a tensor")
        dtype_name = _NAMES.get(t.dtype)
        if dtype_name is None:
            raise ValueError(f"{path}: `{name}`: unsupported dtype {t.dtype}")
        t = t.detach().to("cpu").contiguous()
        nbytes = t.numel() * t.element_size()
        data = ctypes.string_at(t.data_ptr(), nbytes) if nbytes else b""
        header[name] = {"dtype": dtype_name, "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        blobs.append(data)
        offset += nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)
