"""The ``.ncz`` container: one self-describing file per compressed scene.

Layout (all integers little-endian)::

    magic            8 bytes   b"\\x89NCZ\\r\\n\\x1a\\n" (PNG-style: catches text-mode and 7-bit transfers)
    format_version   u32
    total_length     u64       length of the whole file, so a truncated file is told from a corrupted one
    prefix_crc32     u32       CRC32 of the 20 bytes above
    payload          a safetensors blob: u64 header length, JSON header, then the sections
                     as 1-D uint8 tensors. The JSON's "__metadata__" holds one key, "nerfconvert",
                     whose value is our JSON (method, architecture, per-section codec/dtype/shape).
    sha256           32 bytes  over everything before it

Sections are byte strings, each entropy-coded on its own with the smallest of zlib, lzma and
zstd (when ``zstandard`` is installed) or stored raw. No pickle anywhere: a file from a
stranger is parsed as JSON and bytes only. Both compression methods (vq, entropy) use it.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, Union

import numpy as np

from nerfconvert import NerfconvertError
from nerfconvert.compress import validate

MAGIC = b"\x89NCZ\r\n\x1a\n"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQ")  # magic, version, total length
_PREFIX_LEN = _PREFIX.size + 4  # + crc32
_DIGEST_LEN = 32
_META_KEY = "nerfconvert"

try:  # optional: zstd is often the smallest, but not a dependency
    import zstandard as _zstd
except ImportError:  # pragma: no cover - depends on the environment
    _zstd = None


# ---- entropy coders ---------------------------------------------------------------------------
def available_codecs() -> Tuple[str, ...]:
    return ("raw", "zlib", "lzma") + (("zstd",) if _zstd is not None else ())


def encode_bytes(data: bytes, codec: str) -> bytes:
    if codec == "raw":
        return bytes(data)
    if codec == "zlib":
        return zlib.compress(data, 9)
    if codec == "lzma":
        return lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
    if codec == "zstd" and _zstd is not None:
        return _zstd.ZstdCompressor(level=19).compress(data)
    raise NerfconvertError(f"Unknown or unavailable codec {codec!r}; available: {', '.join(available_codecs())}.")


LZMA_MEMLIMIT = 1 << 28
"""Memory the lzma decoder may use (its dictionary): the writer's preset 9 needs 64 MiB."""
ZSTD_MAX_WINDOW = 1 << 27
"""Largest zstd window a reader accepts (level 19 uses 8 MiB)."""


def decode_bytes(data: bytes, codec: str, raw_length: int) -> bytes:
    """Inflate one section to exactly ``raw_length`` bytes. The coder is told the limit, so a section
    that would inflate further (a decompression bomb) stops at ``raw_length + 1`` bytes and is refused."""
    if codec == "zstd" and _zstd is None:
        raise NerfconvertError("This .ncz uses zstd; install it with `pip install zstandard` and retry.")
    limit = raw_length + 1  # one byte more than declared tells "too long" from "exact"
    try:
        if codec == "raw":
            out = bytes(data)
        elif codec == "zlib":
            d = zlib.decompressobj()
            out = d.decompress(data, limit)
            if len(out) <= raw_length and not d.eof:
                raise NerfconvertError("A zlib section ends before its stream does: the file is corrupted; re-create it.")
        elif codec == "lzma":
            d = lzma.LZMADecompressor(format=lzma.FORMAT_AUTO, memlimit=LZMA_MEMLIMIT)
            out = d.decompress(data, max_length=limit)
            if len(out) <= raw_length and not d.eof:
                raise NerfconvertError("An lzma section ends before its stream does: the file is corrupted; re-create it.")
        elif codec == "zstd":
            with _zstd.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(data) as reader:
                chunks, size = [], 0
                while size < limit:
                    chunk = reader.read(limit - size)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
            out = b"".join(chunks)
        else:
            raise NerfconvertError(
                f"Unknown section codec {codec!r}: the file was written by a newer nerfconvert; upgrade nerfconvert."
            )
    except NerfconvertError:
        raise
    except (zlib.error, lzma.LZMAError, MemoryError, ValueError) + ((_zstd.ZstdError,) if _zstd is not None else ()) as err:
        raise NerfconvertError(f"A {codec} section does not decode ({err}): the file is corrupted; re-create it.") from err
    if len(out) > raw_length:
        raise NerfconvertError(
            f"A {codec} section inflates past its declared {raw_length:,} bytes (a decompression bomb or a corrupted "
            "file): it was refused before inflating further; re-create the file."
        )
    if len(out) != raw_length:
        raise NerfconvertError("A section decodes to the wrong length: the file is corrupted; re-create it.")
    return out


def best_encoding(data: bytes, codecs: Optional[Iterable[str]] = None) -> Tuple[str, bytes]:
    """The smallest of the available coders (ties go to the faster, earlier one)."""
    best: Optional[Tuple[str, bytes]] = None
    for codec in codecs or available_codecs():
        encoded = encode_bytes(data, codec)
        if best is None or len(encoded) < len(best[1]):
            best = (codec, encoded)
    assert best is not None
    return best


# ---- in-memory view ----------------------------------------------------------------------------
@dataclass
class Section:
    """One named section: its decoded bytes, and how to read them as an array."""

    data: bytes
    dtype: str = "uint8"
    shape: Optional[Tuple[int, ...]] = None
    codec: str = ""  # set when read; chosen when written
    stored_bytes: int = 0  # size inside the file (after the entropy coder)

    @classmethod
    def from_array(cls, array: np.ndarray) -> "Section":
        array = np.ascontiguousarray(array)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        return cls(data=array.tobytes(), dtype=array.dtype.str.lstrip("<|="), shape=tuple(array.shape))

    def array(self) -> np.ndarray:
        try:
            dtype = np.dtype(self.dtype).newbyteorder("<")
        except TypeError as err:
            raise NerfconvertError(f"Section dtype {self.dtype!r} is not a numpy dtype: the file is corrupted.") from err
        out = np.frombuffer(self.data, dtype=dtype)
        if self.shape is not None:
            if int(np.prod(self.shape)) != out.size:
                raise NerfconvertError("A section's shape does not match its length: the file is corrupted.")
            out = out.reshape(self.shape)
        return out


@dataclass
class NczFile:
    """A decoded .ncz: what was compressed (method, architecture), and the named sections."""

    method: str
    architecture: Dict[str, Any]
    sections: Dict[str, Section]
    metadata: Dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    file_bytes: int = 0
    """Size of the file read (0: built in memory); sets the decode budget (``validate.budget``)."""

    def array(self, name: str, dtype: Optional[str] = None, shape: Optional[Iterable[int]] = None) -> np.ndarray:
        """The section as an array; with ``dtype`` / ``shape`` (``-1``: any) it must be declared so,
        else a one-line error. Decoders pass what the architecture implies."""
        self.check(name, dtype, shape)
        return self.section(name).array()

    def check(self, name: str, dtype: Optional[str] = None, shape: Optional[Iterable[int]] = None) -> Section:
        section = self.section(name)
        validate.expect_section(name, section.dtype, section.shape, len(section.data), dtype,
                                tuple(shape) if shape is not None else None)
        return section

    def section(self, name: str) -> Section:
        if name not in self.sections:
            raise NerfconvertError(
                f"The .ncz has no section {name!r} (it has: {', '.join(sorted(self.sections))}); "
                "it was written for another architecture or by another nerfconvert version."
            )
        return self.sections[name]

    @property
    def stored_bytes(self) -> int:
        return sum(s.stored_bytes for s in self.sections.values())


# ---- writing -------------------------------------------------------------------------------------
SectionLike = Union[Section, bytes, np.ndarray]


def _as_section(value: SectionLike) -> Section:
    if isinstance(value, Section):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Section(bytes(value))
    if isinstance(value, np.ndarray):
        return Section.from_array(value)
    raise TypeError(f"A section must be bytes, a numpy array or a Section, got {type(value).__name__}")


def to_bytes(
    method: str,
    architecture: Mapping[str, Any],
    sections: Mapping[str, SectionLike],
    metadata: Optional[Mapping[str, Any]] = None,
    codecs: Optional[Iterable[str]] = None,
) -> bytes:
    """Serialise to .ncz bytes. ``codecs`` limits the entropy coders tried per section."""
    codecs = tuple(codecs) if codecs is not None else None
    described: Dict[str, Any] = {}
    tensors: Dict[str, Any] = {}
    blobs = []
    offset = 0
    for name, value in sections.items():
        section = _as_section(value)
        codec, encoded = best_encoding(section.data, codecs)
        described[name] = {
            "codec": codec,
            "raw_bytes": len(section.data),
            "dtype": section.dtype,
            "shape": list(section.shape) if section.shape is not None else None,
        }
        tensors[name] = {"dtype": "U8", "shape": [len(encoded)], "data_offsets": [offset, offset + len(encoded)]}
        blobs.append(encoded)
        offset += len(encoded)
    ours = {
        "method": method,
        "architecture": dict(architecture),
        "metadata": dict(metadata or {}),
        "sections": described,
    }
    header = {"__metadata__": {_META_KEY: json.dumps(ours, sort_keys=True)}, **tensors}
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # safetensors aligns the data to 8 bytes
    payload = struct.pack("<Q", len(header_bytes)) + header_bytes + b"".join(blobs)

    total = _PREFIX_LEN + len(payload) + _DIGEST_LEN
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, total)
    prefix += struct.pack("<I", zlib.crc32(prefix))
    body = prefix + payload
    return body + hashlib.sha256(body).digest()


def write_ncz(path: Union[str, Path], method: str, architecture: Mapping[str, Any], sections: Mapping[str, SectionLike],
              metadata: Optional[Mapping[str, Any]] = None, codecs: Optional[Iterable[str]] = None) -> int:
    """Write atomically (temporary file in the same directory, fsync, rename). Returns the size."""
    return write_bytes_atomic(path, to_bytes(method, architecture, sections, metadata, codecs))


def write_bytes_atomic(path: Union[str, Path], data: bytes) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return len(data)


def portable_path(path: Union[str, Path, None]) -> Optional[str]:
    """A path fit for a shared file's metadata: a relative one as given (``data/blender/lego``), else
    only its last component. Never the writer's absolute path or home layout."""
    if path is None:
        return None
    p = Path(os.path.normpath(str(path)))
    if not p.is_absolute() and not str(p).startswith("~") and ".." not in p.parts:
        return p.as_posix()
    return p.name


# ---- reading ---------------------------------------------------------------------------------------
def read_ncz(path: Union[str, Path]) -> NczFile:
    path = Path(path)
    if not path.is_file():
        raise NerfconvertError(f"{path} does not exist. Pass a .ncz written by `ns-train vq-compression`.")
    return from_bytes(path.read_bytes(), source=str(path))


def from_bytes(data: bytes, source: str = "the .ncz") -> NczFile:
    """Parse and verify .ncz bytes; every failure is a one-line NerfconvertError."""
    data = bytes(data)
    if len(data) >= len(MAGIC) and data[: len(MAGIC)] != MAGIC:
        raise NerfconvertError(
            f"{source} is not a nerfconvert .ncz file (wrong magic bytes {data[:8]!r}). "
            "Pass a file written by `ns-train vq-compression` or `nerfconvert` compression."
        )
    if len(data) < _PREFIX_LEN:
        raise NerfconvertError(f"{source} is truncated ({len(data)} bytes). Copy or download it again.")
    magic, version, total = _PREFIX.unpack_from(data)
    (crc,) = struct.unpack_from("<I", data, _PREFIX.size)
    if zlib.crc32(data[: _PREFIX.size]) != crc:
        raise NerfconvertError(f"{source} is corrupted (its file header fails the CRC check). Re-create or copy it again.")
    if version > FORMAT_VERSION:
        raise NerfconvertError(
            f"{source} has format version {version}, newer than this nerfconvert reads (<= {FORMAT_VERSION}). "
            "Upgrade nerfconvert (pip install -U nerfconvert)."
        )
    if version < 1:
        raise NerfconvertError(f"{source} has an invalid format version {version}: the file is corrupted.")
    if len(data) < total:
        raise NerfconvertError(
            f"{source} is truncated: {len(data)} of {total} bytes. Copy or download it again."
        )
    if len(data) > total:
        raise NerfconvertError(
            f"{source} has {len(data) - total} unexpected bytes after its end: the file is corrupted. Copy it again."
        )
    body, digest = data[:-_DIGEST_LEN], data[-_DIGEST_LEN:]
    if hashlib.sha256(body).digest() != digest:
        raise NerfconvertError(
            f"{source} is corrupted (SHA-256 checksum mismatch: some bytes changed). Re-create or copy it again."
        )
    return _parse_payload(body[_PREFIX_LEN:], source, version)


def _parse_payload(payload: bytes, source: str, version: int) -> NczFile:
    # The checksum passed, so a failure here is a writer bug or a hand-made file, not bit rot:
    # every size is checked against the bytes there are before anything is inflated.
    try:
        if len(payload) < 8:
            raise ValueError("no header length")
        (n,) = struct.unpack_from("<Q", payload)
        if n > len(payload) - 8:
            raise ValueError(f"header length {n} runs past the end")
        header = validate.mapping(json.loads(payload[8 : 8 + n].decode("utf-8")), "The header")
        meta = validate.mapping(header.pop("__metadata__", None), "The header's __metadata__")
        ours = validate.mapping(json.loads(validate.str_in(meta.get(_META_KEY), "The nerfconvert header", max_len=n)),
                                "The nerfconvert header")
        method = validate.str_in(ours.get("method"), "The file's method")
        architecture = validate.mapping(ours.get("architecture"), "The file's architecture")
        metadata = validate.mapping(ours.get("metadata", {}), "The file's metadata")
        described = validate.mapping(ours.get("sections"), "The file's section list")
        data_start = 8 + n
        data_len = len(payload) - data_start
        raw_budget = validate.raw_bytes_for(data_len)
        specs = []
        for name, spec in described.items():
            tensor = validate.mapping(header.get(name), f"The safetensors entry of section {name!r}")
            offsets = tensor.get("data_offsets")
            if not isinstance(offsets, list) or len(offsets) != 2:
                validate.fail(f"Section {name!r} has offsets {offsets!r}")
            a = validate.int_in(offsets[0], f"Section {name!r}'s start", 0, data_len)
            b = validate.int_in(offsets[1], f"Section {name!r}'s end", a, data_len)
            codec, raw, dtype, shape = validate.section_spec(name, spec, b - a, available_codecs() + ("zstd",))
            raw_budget -= raw
            if raw_budget < 0:
                validate.fail(f"The sections declare more bytes than a {data_len:,}-byte payload may inflate to")
            specs.append((name, a, b, codec, raw, dtype, shape))
        sections = {}
        for name, a, b, codec, raw, dtype, shape in specs:  # inflate only once every size is known and bounded
            encoded = payload[data_start + a : data_start + b]
            sections[name] = Section(data=decode_bytes(encoded, codec, raw), dtype=dtype, shape=shape, codec=codec,
                                     stored_bytes=len(encoded))
        return NczFile(method=method, architecture=architecture, sections=sections, metadata=metadata,
                       format_version=version, file_bytes=len(payload))
    except NerfconvertError:
        raise
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError, RecursionError) as err:
        raise NerfconvertError(f"{source} has a malformed header ({type(err).__name__}: {str(err)[:200]}). Re-create it.") from err


def describe(ncz: NczFile, file_bytes: Optional[int] = None) -> str:
    """A human-readable summary: method, version, architecture, per-section sizes."""
    out = io.StringIO()
    out.write(f"format version  {ncz.format_version}\n")
    out.write(f"method          {ncz.method}\n")
    out.write(f"architecture    {json.dumps(ncz.architecture, sort_keys=True)[:400]}\n")
    if file_bytes is not None:
        out.write(f"file size       {file_bytes:,} bytes ({file_bytes / 1e6:.3f} MB)\n")
    out.write(f"{'section':<40}{'codec':>6}{'raw bytes':>14}{'stored bytes':>14}  dtype/shape\n")
    for name, s in ncz.sections.items():
        shape = "x".join(map(str, s.shape)) if s.shape is not None else "-"
        out.write(f"{name:<40}{s.codec:>6}{len(s.data):>14,}{s.stored_bytes:>14,}  {s.dtype} {shape}\n")
    out.write(f"{'total':<40}{'':>6}{sum(len(s.data) for s in ncz.sections.values()):>14,}{ncz.stored_bytes:>14,}\n")
    if "teacher_method" in ncz.metadata or "teacher_step" in ncz.metadata:
        out.write(f"teacher         {ncz.metadata.get('teacher_method', '?')} at step {ncz.metadata.get('teacher_step', '?')}\n")
    for key, value in ncz.metadata.items():
        out.write(f"meta {key:<26} {json.dumps(value)[:200]}\n")
    return out.getvalue()
