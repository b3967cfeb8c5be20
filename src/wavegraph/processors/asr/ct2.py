"""Read a CTranslate2 ``model.bin`` (binary format version 6) into named numpy arrays.

Layout, all little-endian::

    u32 version (6) | str spec_name | u32 revision | u32 n_variables
    n_variables × ( str name | u8 ndim | u32 dims[ndim] | u8 dtype | u32 nbytes | data[nbytes] )
    u32 n_aliases | n_aliases × ( str alias | str target )

where ``str`` is ``u16 length`` (including a trailing NUL) followed by the UTF-8 bytes and the NUL.
The arrays returned are read-only views into one buffer: nothing is copied.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wavegraph.processors.asr.errors import Ct2FormatError

BINARY_VERSION = 6

# CTranslate2's DataType enum, in declaration order.
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}


@dataclass(frozen=True)
class Ct2Model:
    """The variables of one CTranslate2 model; aliases resolve to the variable they name."""

    spec: str
    revision: int
    variables: Mapping[str, np.ndarray]
    aliases: Mapping[str, str]

    def __getitem__(self, name: str) -> np.ndarray:
        name = self.aliases.get(name, name)
        try:
            return self.variables[name]
        except KeyError:
            raise Ct2FormatError(f"{self.spec} model has no variable {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.variables or name in self.aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.variables)

    def scalar(self, name: str) -> int:
        """The value of a 0-d integer variable such as ``encoder/num_heads``."""
        value = self[name]
        if value.shape != () or value.dtype.kind not in "iu":
            raise Ct2FormatError(f"{name} is not an integer scalar (shape {value.shape}, {value.dtype})")
        return int(value)


class _Cursor:
    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self.buf):
            raise Ct2FormatError(f"truncated model: needs {end} bytes, file has {len(self.buf)}")
        view = self.buf[self.pos : end]
        self.pos = end
        return view

    def unpack(self, fmt: str) -> tuple[int, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (length,) = self.unpack("H")
        raw = bytes(self.take(length))
        if not raw.endswith(b"\0"):
            raise Ct2FormatError(f"string at byte {self.pos - length} is not NUL-terminated")
        return raw[:-1].decode("utf-8")


def parse_ct2(data: bytes | bytearray | memoryview) -> Ct2Model:
    """Parse a whole ``model.bin`` held in memory. Raises :class:`Ct2FormatError`."""
    cur = _Cursor(memoryview(data).cast("B"))
    (version,) = cur.unpack("I")
    if version != BINARY_VERSION:
        raise Ct2FormatError(f"CTranslate2 binary version {version}, expected {BINARY_VERSION}")
    spec = cur.string()
    (revision,) = cur.unpack("I")
    (count,) = cur.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = cur.string()
        (ndim,) = cur.unpack("B")
        shape = cur.unpack("I" * ndim)
        (dtype_id,) = cur.unpack("B")
        (nbytes,) = cur.unpack("I")
        dtype = _DTYPES.get(dtype_id)
        if dtype is None:
            raise Ct2FormatError(f"{name}: unsupported CTranslate2 dtype id {dtype_id}")
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes != expected:
            raise Ct2FormatError(f"{name}: {nbytes} bytes for shape {shape} of {dtype}")
        array = np.frombuffer(cur.take(nbytes), dtype=dtype).reshape(shape)
        array.flags.writeable = False
        variables[name] = array
    (n_aliases,) = cur.unpack("I")
    aliases = {}
    for _ in range(n_aliases):
        alias = cur.string()
        aliases[alias] = cur.string()
    if cur.pos != len(cur.buf):
        raise Ct2FormatError(f"{len(cur.buf) - cur.pos} unexpected bytes after the aliases")
    return Ct2Model(spec=spec, revision=revision, variables=variables, aliases=aliases)


def load_ct2(parts: Sequence[Path]) -> Ct2Model:
    """Read a model whose ``model.bin`` is the concatenation of ``parts`` (one path when not split)."""
    sizes = [p.stat().st_size for p in parts]
    buf = bytearray(sum(sizes))
    view = memoryview(buf)
    pos = 0
    for path, size in zip(parts, sizes, strict=True):
        with path.open("rb") as fh:
            got = fh.readinto(view[pos : pos + size])
        if got != size:
            raise Ct2FormatError(f"{path}: read {got} of {size} bytes")
        pos += size
    return parse_ct2(buf)
