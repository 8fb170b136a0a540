"""Reader for CTranslate2's ``model.bin``: the variables of a converted model as numpy arrays.

The layout is set by its writer, CTranslate2's ``specs/model_spec.py`` (``_serialize``):
a uint32 binary version, the spec name (uint16 length including its NUL, bytes) and a
uint32 revision, a uint32 variable count, then for each variable its name (as above),
rank (uint8), dims (uint32 each), dtype id (uint8) and byte count (uint32), followed by
the raw little-endian bytes; then a uint32 alias count and (alias, target) name pairs.

Written here rather than imported because the weights come from packages whose code we
do not run, and CTranslate2 itself is a test-only dependency (the reference our
encoder is checked against).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Ct2Model", "read_model_bin"]

# CTranslate2's DataType enum, in its order
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_DTYPE_NAMES = {5: "bfloat16"}
SUPPORTED_VERSIONS = (5, 6)


@dataclass
class Ct2Model:
    spec: str
    revision: int
    binary_version: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.variables[self.aliases.get(name, name)]


class _Reader:
    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"model.bin is truncated at byte {self.pos}")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def string(self) -> str:
        (n,) = self.take("<H")
        raw = bytes(self.data[self.pos : self.pos + n])
        if len(raw) != n or not raw.endswith(b"\0"):
            raise ValueError(f"model.bin has a malformed name at byte {self.pos}")
        self.pos += n
        return raw[:-1].decode("utf-8")


def read_model_bin(data: bytes | memoryview) -> Ct2Model:
    """Parse a whole ``model.bin``. Arrays are views into ``data`` (read-only)."""
    r = _Reader(data)
    (version,) = r.take("<I")
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"CTranslate2 binary version {version} is not supported ({SUPPORTED_VERSIONS})")
    spec = r.string()
    (revision,) = r.take("<I")
    (count,) = r.take("<I")
    model = Ct2Model(spec=spec, revision=revision, binary_version=version)
    for _ in range(count):
        name = r.string()
        (rank,) = r.take("<B")
        dims = r.take("<" + "I" * rank) if rank else ()
        (dtype_id,) = r.take("<B")
        (nbytes,) = r.take("<I")
        if dtype_id not in _DTYPES:
            kind = _DTYPE_NAMES.get(dtype_id, f"id {dtype_id}")
            raise ValueError(f"variable {name}: dtype {kind} is not supported")
        dtype = np.dtype(_DTYPES[dtype_id]).newbyteorder("<")
        n = int(np.prod(dims)) if dims else 1
        if n * dtype.itemsize != nbytes or r.pos + nbytes > len(data):
            raise ValueError(f"variable {name}: {nbytes} bytes do not hold {dims} of {dtype.name}")
        model.variables[name] = np.frombuffer(data, dtype=dtype, count=n, offset=r.pos).reshape(dims)
        r.pos += nbytes
    if r.pos < len(data):
        (n_alias,) = r.take("<I")
        for _ in range(n_alias):
            alias = r.string()
            model.aliases[alias] = r.string()
    if r.pos != len(data):
        raise ValueError(f"model.bin has {len(data) - r.pos} unread bytes at the end")
    return model
