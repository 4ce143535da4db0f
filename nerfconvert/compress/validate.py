"""Checks on a ``.ncz`` from a stranger, made before anything is allocated from it.

A file's checksums prove only that it arrived as it was written, not that its writer was
nerfconvert. Everything a decoder takes from a file goes through here first:

* ``dtype_of`` / ``shape_of`` / ``int_in`` / ``float_in``: a dtype from an allow-list, a shape of
  non-negative ints with a bounded element count, numbers of the right type inside a range.
* ``Budget``: the tensor elements a file may make its reader allocate, from the file's own size
  (``elements_for``): a 30 KB file cannot ask for a 4 GB grid.
* ``model_config``: the architecture JSON against the stock model config it will be applied to:
  known fields only, never ``_private`` ones, each of its default's type, and the size-setting
  fields of each family inside ranges (the family's ``config_ranges``), with the model size they
  imply charged to the budget before the model is built (its ``model_size``; the family is the
  view's vq tables companion, ``nerfconvert.views.tables.CompressionTables``).
* ``state_spec``: the ``state`` table of a compressed model: per entry its torch dtype (allow-list),
  shape and storage kind; ``STATE_STORAGES`` says which section(s) each storage kind reads, so the
  decoder's ``ncz.array(name, dtype=..., shape=...)`` calls are checked against the same rule.
* ``hostile_input``: a decorator for a decoder: whatever escapes the checks above still ends as the
  container's one-line ``NerfconvertError``, never a traceback.

Every failure here is a ``NerfconvertError`` whose message names the problem and the fix.
"""

from __future__ import annotations

import functools
import math
import typing
from typing import Any, Callable, Dict, Iterable, List, Mapping, NoReturn, Optional, Sequence, Tuple

from nerfconvert import NerfconvertError

FIX = "the file is corrupted or was not written by nerfconvert; re-create it from its run"

# ---- limits ------------------------------------------------------------------------------------------------
NUMPY_DTYPES = frozenset({"bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float16", "float32",
                          "float64"})
"""Section dtypes a reader accepts (numpy names, little-endian)..."""
NUMPY_CODES = {"b1": "bool", "u1": "uint8", "i1": "int8", "u2": "uint16", "i2": "int16", "u4": "uint32", "i4": "int32",
               "i8": "int64", "f2": "float16", "f4": "float32", "f8": "float64"}
"""... or their short codes, as ``Section.from_array`` writes them."""
TORCH_DTYPES = frozenset({"bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64"})
"""State-entry dtypes a reader accepts (``torch.<name>``)."""
MAX_NDIM = 8
MAX_SECTION_RATIO = 1 << 16
"""Declared raw size / stored size of a coded section, at most (zlib cannot exceed ~1032, lzma and
zstd a few 10^4 on constant data)."""
SECTION_RATIO_SLACK = 1 << 16
"""Bytes any section may declare regardless of the ratio (tiny sections compress badly)."""
ELEMENTS_PER_FILE_BYTE = 128
"""Decode budget: tensor elements per byte of file. Real files use far fewer: a vq-compressed
nerfacto of 22M elements is a 14 MB file (1.6 per byte). ``BUDGET_ENV`` raises it for a trusted file."""
BUDGET_ENV = "NERFCONVERT_MAX_DECODE_ELEMENTS"
MIN_ELEMENTS = 1 << 27
"""Decode budget of any file, however small (134M elements, charged once per allocation: the table,
its state entry and the model's own parameter each count). A sparse voxel grid compresses to a few kB
while its decoder still allocates the whole grid: a 4.7 kB vq file of a 96^3 plenoxels run needs 72M."""
MAX_ELEMENTS = 1 << 31
"""Decode budget of any file, however large."""
MAX_BYTES_PER_ELEMENT = 8
RAW_BYTES_PER_FILE_BYTE = 16
"""All sections of a file together inflate to at most this many bytes per byte of payload (real
files: 1-3, the fp16/8-bit sections and bitstreams barely compress; only masks shrink much)..."""
MIN_RAW_BYTES = 64 << 20
"""... or to 64 MB, whichever is more."""


def raw_bytes_for(payload_bytes: int) -> int:
    """What a file's sections may inflate to, in all: a 1.5 MB zlib bomb cannot declare 1.5 GB."""
    return max(MIN_RAW_BYTES, RAW_BYTES_PER_FILE_BYTE * max(int(payload_bytes), 0))


def fail(problem: str) -> NoReturn:
    raise NerfconvertError(f"{problem}: {FIX}.")


# ---- scalars ---------------------------------------------------------------------------------------------
def int_in(value: Any, what: str, lo: int = 0, hi: int = MAX_ELEMENTS) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fail(f"{what} is {_short(value)}, not an integer")
    if not lo <= value <= hi:
        fail(f"{what} is {value}, outside [{lo}, {hi}]")
    return value


def float_in(value: Any, what: str, lo: float = -1e30, hi: float = 1e30) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(f"{what} is {_short(value)}, not a number")
    if not (math.isfinite(value) and lo <= value <= hi):
        fail(f"{what} is {value}, outside [{lo:g}, {hi:g}]")
    return float(value)


def str_in(value: Any, what: str, allowed: Optional[Iterable[str]] = None, max_len: int = 256) -> str:
    if not isinstance(value, str) or len(value) > max_len:
        fail(f"{what} is {_short(value)}, not a string")
    if allowed is not None and value not in allowed:
        fail(f"{what} is {value!r}, not one of {', '.join(sorted(allowed))}")
    return value


def mapping(value: Any, what: str) -> Dict[str, Any]:
    if not isinstance(value, dict):
        fail(f"{what} is {_short(value)}, not a JSON object")
    return value


def dtype_of(value: Any, what: str, allowed: Iterable[str] = NUMPY_DTYPES) -> str:
    allowed = frozenset(allowed)
    if allowed is NUMPY_DTYPES or allowed == NUMPY_DTYPES:
        allowed = allowed | frozenset(NUMPY_CODES)
    if not isinstance(value, str) or value not in allowed:
        fail(f"{what} has dtype {_short(value)}, not one of {', '.join(sorted(a for a in allowed if a not in NUMPY_CODES))}")
    return value


def numel(shape: Sequence[int]) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def shape_of(value: Any, what: str, max_elements: int = MAX_ELEMENTS) -> Tuple[int, ...]:
    """A list of at most ``MAX_NDIM`` non-negative ints whose product is at most ``max_elements``."""
    if not isinstance(value, (list, tuple)) or len(value) > MAX_NDIM:
        fail(f"{what} has shape {_short(value)}, not a list of at most {MAX_NDIM} integers")
    shape = tuple(int_in(d, f"a dimension of {what}", 0, max_elements) for d in value)
    n = numel(shape)
    if n > max_elements:
        fail(f"{what} has shape {list(shape)} ({n:,} elements), more than the {max_elements:,} allowed")
    return shape


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- sections ------------------------------------------------------------------------------------------
def section_spec(name: str, spec: Any, stored_bytes: int, codecs: Iterable[str]) -> Tuple[str, int, str, Optional[Tuple[int, ...]]]:
    """A section's (codec, raw_bytes, dtype, shape) from the header, checked against each other and
    against the bytes stored for it: the raw size is bounded before anything is inflated."""
    what = f"Section {name!r}"
    spec = mapping(spec, what)
    codec = spec.get("codec")
    if not isinstance(codec, str):
        fail(f"{what} has codec {_short(codec)}")
    raw = int_in(spec.get("raw_bytes"), f"{what}'s raw size", 0, MAX_ELEMENTS * MAX_BYTES_PER_ELEMENT)
    if codec == "raw" and raw != stored_bytes:
        fail(f"{what} is stored raw in {stored_bytes} bytes but declares {raw}")
    if raw > max(SECTION_RATIO_SLACK, MAX_SECTION_RATIO * stored_bytes):
        fail(f"{what} declares {raw:,} bytes from {stored_bytes:,} stored, a ratio no coder reaches")
    dtype = dtype_of(spec.get("dtype", "uint8"), what)
    import numpy as np  # local: this module stays importable without numpy's cost at import time

    itemsize = np.dtype(dtype).itemsize
    shape = spec.get("shape")
    if shape is not None:
        shape = shape_of(shape, what)
        if numel(shape) * itemsize != raw:
            fail(f"{what} declares shape {list(shape)} of {dtype} ({numel(shape) * itemsize:,} bytes) but {raw:,} bytes")
    elif raw % itemsize:
        fail(f"{what} declares {raw} bytes, not a whole number of {dtype}")
    return codec, raw, dtype, shape


def expect_section(name: str, declared_dtype: str, declared_shape: Optional[Tuple[int, ...]], size: int,
                   dtype: Optional[str] = None, shape: Optional[Sequence[int]] = None) -> None:
    """What a decoder expects of a section (``ncz.array(name, dtype=..., shape=...)``): its declared
    dtype, and its shape (``-1`` matches any one dimension; a section without a shape is 1-D)."""
    if dtype is not None and NUMPY_CODES.get(declared_dtype, declared_dtype) != NUMPY_CODES.get(dtype, dtype):
        fail(f"Section {name!r} is {declared_dtype}, where the decoder reads {dtype}")
    if shape is not None:
        import numpy as np

        have = declared_shape if declared_shape is not None else (size // np.dtype(declared_dtype).itemsize,)
        if tuple(shape) == () and tuple(have) in ((), (1,)):
            return  # a 0-dim tensor: numpy's ascontiguousarray writes it as shape [1]
        if len(have) != len(shape) or any(w != -1 and w != h for w, h in zip(shape, have)):
            fail(f"Section {name!r} has shape {list(have)}, where the architecture implies {list(shape)}")


# ---- decode budget ------------------------------------------------------------------------------------
def elements_for(file_bytes: int) -> int:
    import os

    override = os.environ.get(BUDGET_ENV, "").strip()
    if override:
        try:
            return max(int(override), 0)
        except ValueError:
            raise NerfconvertError(f"{BUDGET_ENV}={override!r} is not a whole number of tensor elements; fix or unset it.") from None
    return int(min(MAX_ELEMENTS, max(MIN_ELEMENTS, ELEMENTS_PER_FILE_BYTE * max(int(file_bytes), 0))))


class Budget:
    """Tensor elements a file may still make its reader allocate."""

    def __init__(self, file_bytes: int) -> None:
        self.total = elements_for(file_bytes)
        self.left = self.total
        self.file_bytes = file_bytes

    def spend(self, elements: int, what: str) -> None:
        if elements > self.left:
            raise NerfconvertError(
                f"{what} needs {elements:,} tensor elements, more than a {self.file_bytes:,}-byte file may ask of its reader "
                f"({self.total:,} in all, {self.left:,} left): the file is corrupted or hand-made; if you trust it, "
                f"set {BUDGET_ENV} to a larger number and retry.")
        self.left -= elements


def budget(ncz) -> Budget:
    return Budget(getattr(ncz, "file_bytes", 0) or ncz.stored_bytes)


# ---- architecture JSON ---------------------------------------------------------------------------------
Range = Tuple[str, float, float]


def int_range(lo: float, hi: float) -> Range:
    return ("int", lo, hi)


def float_range(lo: float, hi: float) -> Range:
    return ("float", lo, hi)


_I, _F = int_range, float_range

COMMON_RANGES: Dict[str, Tuple[str, float, float]] = {
    "eval_num_rays_per_chunk": _I(1, 1 << 22),
}
PROPOSAL_NET_RANGES = {"hidden_dim": _I(1, 4096), "log2_hashmap_size": _I(1, 26), "num_levels": _I(1, 64),
                       "max_res": _I(1, 1 << 24), "use_linear": None}
MAX_LIST = 64
MAX_DEPTH = 4


def _num_check(value: Any, what: str, rule: Tuple[str, float, float]) -> None:
    kind, lo, hi = rule
    items = value if isinstance(value, (list, tuple)) else [value]
    for v in items:
        if kind == "int":
            int_in(v, what, int(lo), int(hi))
        else:
            float_in(v, what, lo, hi)


def _like(value: Any, default: Any, what: str, depth: int = 0) -> None:
    """``value`` has the JSON type of ``default`` (lists: of its items' types; dicts: its keys)."""
    if depth > MAX_DEPTH:
        fail(f"{what} nests too deeply")
    if default is None:
        if value is None or isinstance(value, (bool, int, float, str)):
            if isinstance(value, float) and not math.isfinite(value):
                fail(f"{what} is {value}")
            return
        if isinstance(value, list) and len(value) <= MAX_LIST and all(
                isinstance(v, (bool, int, float, str)) or v is None for v in value):
            return
        fail(f"{what} is {_short(value)}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            fail(f"{what} is {_short(value)}, not true/false")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            fail(f"{what} is {_short(value)}, not an integer")
        int_in(value, what, -(1 << 53), 1 << 53)
    elif isinstance(default, float):
        float_in(value, what)
    elif isinstance(default, str) or hasattr(default, "__fspath__"):
        str_in(value, what, max_len=4096)
    elif isinstance(default, (list, tuple)):
        if not isinstance(value, list) or len(value) > MAX_LIST:
            fail(f"{what} is {_short(value)}, not a list of at most {MAX_LIST} items")
        if default:
            for i, v in enumerate(value):
                _like(v, default[min(i, len(default) - 1)], f"{what}[{i}]", depth + 1)
        else:
            for i, v in enumerate(value):
                _like(v, None, f"{what}[{i}]", depth + 1)
    elif isinstance(default, dict):
        value = mapping(value, what)
        for k, v in value.items():
            if k.startswith("_"):
                fail(f"{what} sets private key {k!r}")
            _like(v, default.get(k), f"{what}.{k}", depth + 1)
    else:
        fail(f"{what} sets a field that is not plain data in this nerfstudio")


def _literal_choices(config_cls, name: str) -> Optional[Tuple[Any, ...]]:
    try:
        hint = typing.get_type_hints(config_cls).get(name)
    except Exception:  # noqa: BLE001 - a config whose hints do not resolve: no Literal check
        return None
    args: List[Any] = []
    for part in (typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)):
        if typing.get_origin(part) is typing.Literal:
            args.extend(typing.get_args(part))
        elif part is not type(None):
            return None  # not only literals
    return tuple(args) or None


def model_config(family, config, fields: Any) -> Dict[str, Any]:
    """The architecture's ``model_config`` checked against ``config`` (the stock config it is applied
    to): known public fields of plain data, each of its default's type and inside the ranges of the
    size-setting fields that the family (a ``views.tables.CompressionTables`` class) declares in ``config_ranges``.
    Returns the fields to apply."""
    fields = mapping(fields, "The architecture's model_config")
    ranges = {**COMMON_RANGES, **getattr(family, "config_ranges", {})}
    out: Dict[str, Any] = {}
    for name, value in fields.items():
        what = f"The architecture's model_config.{name}"
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            fail(f"The architecture's model_config names field {_short(name)}, which no reader applies")
        if name == "camera_optimizer_mode":
            out[name] = str_in(value, what, ("off", "SO3xR3", "SE3"))
            continue
        if not hasattr(config, name):
            continue  # a field of a newer nerfstudio: the stock default stays
        default = getattr(config, name)
        if callable(default) and not isinstance(default, (list, tuple, dict)):
            fail(f"{what} replaces a callable")
        _like(value, default, what)
        if isinstance(default, str):
            choices = _literal_choices(type(config), name)
            if choices is not None and value not in choices:
                fail(f"{what} is {value!r}, not one of {', '.join(map(str, choices))}")
        if name in ranges:
            _num_check(value, what, ranges[name])
        if name == "proposal_net_args_list":
            for i, args in enumerate(value):
                args = mapping(args, f"{what}[{i}]")
                for k, v in args.items():
                    if k not in PROPOSAL_NET_RANGES:
                        fail(f"{what}[{i}] sets {k!r}, which a proposal network does not have")
                    if PROPOSAL_NET_RANGES[k] is not None:
                        _num_check(v, f"{what}[{i}].{k}", PROPOSAL_NET_RANGES[k])
        out[name] = value
    return out


def charge_model(family, config, spend: Budget) -> None:
    """Charge the model a config builds to the budget, before it is built: the family's (a
    ``views.tables.CompressionTables`` class) ``model_size`` estimate, where it has one."""
    size = family.model_size(config)
    if size is not None:
        spend.spend(size, f"The {family.name} model the architecture describes")


def scene_box(value: Any) -> List[List[float]]:
    if not isinstance(value, list) or len(value) != 2:
        fail("The architecture's scene_box is not two corners")
    box = [[float_in(v, "A scene_box coordinate") for v in (c if isinstance(c, list) and len(c) == 3 else fail(
        "The architecture's scene_box corner is not 3 numbers"))] for c in value]
    if any(lo >= hi for lo, hi in zip(*box)):
        fail("The architecture's scene_box is empty")
    return box


# ---- state spec ----------------------------------------------------------------------------------------------
def _packed(shape: Tuple[int, ...], dtype: str) -> List[Tuple[str, str, Tuple[int, ...]]]:
    return [("", "uint8", ((numel(shape) + 7) // 8,))]


def _plain(np_dtype: Optional[str]):
    def sections(shape: Tuple[int, ...], dtype: str) -> List[Tuple[str, str, Tuple[int, ...]]]:
        return [("", np_dtype or dtype, shape)]

    return sections


def _eight_bit(shape: Tuple[int, ...], dtype: str) -> List[Tuple[str, str, Tuple[int, ...]]]:
    rows = shape[0] if len(shape) > 1 else numel(shape)
    cols = numel(shape) // rows if len(shape) > 1 and rows else 1
    return [("", "uint8", (rows, cols)), ("#range", "float32", (2, cols))]


STATE_STORAGES: Dict[str, Optional[Callable[[Tuple[int, ...], str], List[Tuple[str, str, Tuple[int, ...]]]]]] = {
    "table": None,  # filled from the tables (their own sections)
    "alias": None,  # another name of a stored entry (its "of"), checked by the decoder
    "bits": _packed,
    "raw": _plain(None),
    "fp16": _plain("float16"),
    "fp32": _plain("float32"),
    "uint8": _eight_bit,
}
"""Storage kind of a state entry -> its sections as (suffix after ``s/<key>``, numpy dtype, shape).
A new storage kind registers here (``None``: it reads no section of its own); a decoder then reads
``ncz.array(name, dtype=..., shape=...)`` with the same values, see ``state_sections``."""


def state_spec(value: Any, spend: Budget, allowed_storage: Optional[Iterable[str]] = None) -> Dict[str, Dict[str, Any]]:
    """The ``state`` of an architecture: {key: {"shape", "dtype", "storage"}} checked, its elements
    charged to ``spend``. Returns {key: {"shape": tuple, "dtype": str, "storage": str}}."""
    state = mapping(value, "The architecture's state")
    allowed = frozenset(allowed_storage) if allowed_storage is not None else frozenset(STATE_STORAGES)
    out = {}
    for key, spec in state.items():
        what = f"State entry {key!r}"
        if not key or len(key) > 256 or key.startswith(("_", ".")) or ".." in key:
            fail(f"{what} has an invalid name")
        spec = mapping(spec, what)
        shape = shape_of(spec.get("shape"), what, spend.left)
        dtype = dtype_of(spec.get("dtype"), what, TORCH_DTYPES)
        storage = str_in(spec.get("storage"), f"{what}'s storage", allowed)
        spend.spend(numel(shape), what)
        out[key] = {**spec, "shape": shape, "dtype": dtype, "storage": storage}
    return out


def state_sections(key: str, entry: Mapping[str, Any]) -> List[Tuple[str, str, Tuple[int, ...]]]:
    """The sections (name, numpy dtype, shape) a checked state entry reads."""
    rule = STATE_STORAGES.get(entry["storage"])
    if rule is None:
        return []
    return [("s/" + key + suffix, dtype, shape) for suffix, dtype, shape in rule(tuple(entry["shape"]), entry["dtype"])]


def check_state_sections(ncz, state: Mapping[str, Mapping[str, Any]]) -> None:
    """Every section the state reads exists with the dtype and shape its storage implies."""
    for key, entry in state.items():
        for name, dtype, shape in state_sections(key, entry):
            ncz.section(name)
            ncz.check(name, dtype=dtype, shape=shape)


# ---- the last line -------------------------------------------------------------------------------------------
UNEXPECTED = (ArithmeticError, AttributeError, IndexError, KeyError, LookupError, TypeError, ValueError, RuntimeError,
              RecursionError, MemoryError, AssertionError)


def hostile_input(func: Callable) -> Callable:
    """A decoder of files from strangers: an error the explicit checks did not foresee still ends as
    the one-line ``NerfconvertError`` (its message says which check it escaped), never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except NerfconvertError as err:
            if "\n" in str(err):  # a message built from a library's multi-line text: one line, same words
                raise NerfconvertError(" ".join(str(err).split())) from err.__cause__
            raise
        except UNEXPECTED as err:
            detail = str(err).splitlines()[0][:160] if str(err) else ""
            raise NerfconvertError(
                f"The .ncz does not decode (unexpected {type(err).__name__}: {detail}): {FIX}."
            ) from err

    return wrapper


# ---- per method ---------------------------------------------------------------------------------------------
MAX_CHANNELS = 1 << 12
MAX_CODES = 1 << 20
MAX_TRAIN_IMAGES = 1 << 24


def vq_architecture(ncz) -> Tuple[Budget, Dict[str, Dict[str, Any]], Dict[str, Dict[str, Any]]]:
    """A vq-compression file's architecture outside ``model_config``: scene box, image count, tables
    and state, their elements charged to the file's budget and the state's sections checked.
    Returns (budget left for the model itself, tables, state)."""
    arch = ncz.architecture
    spend = budget(ncz)
    scene_box(arch.get("scene_box"))
    int_in(arch.get("num_train_data"), "The architecture's num_train_data", 1, MAX_TRAIN_IMAGES)
    tables = {}
    for name, spec in mapping(arch.get("tables"), "The architecture's tables").items():
        what = f"Table {name!r}"
        spec = mapping(spec, what)
        rows = int_in(spec.get("rows"), f"{what}'s rows", 0, spend.left)
        channels = int_in(spec.get("channels"), f"{what}'s channels", 1, MAX_CHANNELS)
        codes = spec.get("codes")
        if codes is not None:
            codes = int_in(codes, f"{what}'s codebook size", 1, MAX_CODES)
            spend.spend(codes * channels, f"{what}'s codebook")
        spend.spend(rows * channels, what)
        tables[name] = {**spec, "rows": rows, "channels": channels, "codes": codes}
    state = state_spec(arch.get("state"), spend)
    check_state_sections(ncz, state)
    return spend, tables, state


def vq_table(tables: Mapping[str, Dict[str, Any]], name: str, kind: str) -> Dict[str, Any]:
    """The checked spec of a table the family has; its kind must be the family's."""
    if name not in tables:
        fail(f"The architecture has no table {name!r} (it has {', '.join(sorted(tables)) or 'none'})")
    spec = tables[name]
    if spec.get("kind", kind) != kind:
        fail(f"Table {name!r} is of kind {_short(spec.get('kind'))}, where the family has {kind!r}")
    if kind == "vq" and spec["codes"] is None:
        fail(f"Table {name!r} has no codebook size")
    return spec


MAX_LATENT_SIDE = 1 << 12
CDF_PRECISION = 16
"""CompressAI's range coder: each channel's CDF ends at 2^16."""
MAX_CDF_LENGTH = 1 << 16
MAX_OFFSET = 1 << 24


def entropy_architecture(ncz) -> Budget:
    """An entropy-compression file's architecture outside ``model_config``: latent, decoder and
    plane sizes consistent with each other and charged to the file's budget, the state checked."""
    arch = ncz.architecture
    spend = budget(ncz)
    scene_box(arch.get("scene_box"))
    int_in(arch.get("num_train_data"), "The architecture's num_train_data", 1, MAX_TRAIN_IMAGES)
    shape = arch.get("latent_shape")
    if not isinstance(shape, list) or len(shape) != 4:
        fail(f"The architecture's latent_shape is {_short(shape)}, not [3, C, h, w]")
    n = int_in(shape[0], "The latent plane count", 3, 3)
    c = int_in(shape[1], "The latent channel count", 1, MAX_CHANNELS)
    h = int_in(shape[2], "The latent height", 1, MAX_LATENT_SIDE)
    w = int_in(shape[3], "The latent width", 1, MAX_LATENT_SIDE)
    hidden = int_in(arch.get("hidden_channels"), "The decoder's hidden channels", 1, MAX_CHANNELS)
    planes = int_in(arch.get("plane_channels"), "The plane channel count", 2, MAX_CHANNELS)
    int_in(arch.get("density_channels"), "The density channel count", 1, planes - 1)
    resolution = arch.get("plane_resolution")
    if not isinstance(resolution, list) or len(resolution) != 2:
        fail(f"The architecture's plane_resolution is {_short(resolution)}, not [H, W]")
    int_in(resolution[0], "The plane height", 1, 4 * h)
    int_in(resolution[1], "The plane width", 1, 4 * w)
    int_in(arch.get("coded_locations", -1), "The coded latent count", 0, n * h * w)
    if not isinstance(arch.get("masked", True), bool):
        fail("The architecture's masked flag is not true/false")
    decoder_bits(arch.get("decoder_bits", DECODER_FLOAT_BITS))
    spend.spend(n * h * w * (c + 2), "The latents and their mask")
    spend.spend(9 * (c * hidden + hidden * planes), "The plane decoder")
    spend.spend(n * h * w * 4 * hidden + 2 * n * planes * 16 * h * w, "The decoded planes")
    state = state_spec(arch.get("state"), spend, ("bits", "raw", "fp16", "fp32"))
    check_state_sections(ncz, state)
    return spend


DECODER_FLOAT_BITS = 16
"""``decoder_bits`` of an fp16 decoder (and of files written before the option)."""
MAX_DECODER_SCALE = 1e6
"""A quantised decoder weight's per-channel scale lies in [0, this] (real ones: 1e-8 to ~0.1)."""


def decoder_bits(value: Any) -> int:
    bits = int_in(value, "The decoder's bits", 2, DECODER_FLOAT_BITS)
    if 8 < bits < DECODER_FLOAT_BITS:
        fail(f"The decoder's bits is {bits}, not 2 to 8 (int8 codes) or 16 (fp16)")
    return bits


def decoder_section_names(ncz, expected: Mapping[str, Tuple[int, ...]], bits: int) -> Dict[str, Any]:
    """The file's ``decoder/*`` sections are exactly those its decoder stores: per tensor one
    section, plus ``<weight>.scale`` for each quantised (4-D) weight when ``bits`` <= 8.
    -> ``{"quantized": names of the quantised weights}``."""
    bits = decoder_bits(bits)
    quantized = {name for name, shape in expected.items() if len(shape) == 4} if bits < DECODER_FLOAT_BITS else set()
    want = {"decoder/" + name for name in expected} | {"decoder/" + name + ".scale" for name in quantized}
    have = {name for name in ncz.sections if name.startswith("decoder/")}
    if have != want:
        missing, extra = sorted(want - have)[:3], sorted(have - want)[:3]
        fail(f"The decoder's sections do not match its architecture (missing {_short(missing)}, unexpected {_short(extra)})")
    return {"quantized": quantized}


def decoder_weight(ncz, name: str, shape: Tuple[int, ...], bits: int):
    """A quantised decoder weight: int8 codes of the weight's shape within the ``bits``-bit range, and
    one finite fp32 scale in [0, MAX_DECODER_SCALE] per output channel (dim 1). -> (codes, scales)."""
    import numpy as np

    codes = ncz.array(name, "int8", shape)
    q = (1 << (decoder_bits(bits) - 1)) - 1
    if codes.size and int(np.abs(codes.astype(np.int16)).max()) > q:
        fail(f"Section {name!r} has codes outside [-{q}, {q}] of {bits}-bit quantisation")
    scale = ncz.array(name + ".scale", "float32", (shape[1],))
    if not (np.isfinite(scale).all() and (scale >= 0).all() and (scale <= MAX_DECODER_SCALE).all()):
        fail(f"Section {name + '.scale'!r} has a scale that is not finite or outside [0, {MAX_DECODER_SCALE:g}]")
    return codes, np.array(scale, dtype=np.float32)  # a writable copy


def decoder_bias(ncz, name: str, shape: Tuple[int, ...]):
    """An fp32 decoder bias of the architecture's shape, finite."""
    import numpy as np

    value = np.array(ncz.array(name, "float32", shape), dtype=np.float32)  # a writable copy
    if not np.isfinite(value).all():
        fail(f"Section {name!r} has a value that is not finite")
    return value


def entropy_tables(ncz, channels: int):
    """The coder's tables as CompressAI's range coder requires them (it asserts nothing at run
    time): per channel a CDF from 0 to 2^16 in strictly increasing steps. -> (lengths, counts)."""
    import numpy as np

    lengths = ncz.array("entropy/cdf_length", "int32", (channels,)).astype(np.int64)
    if lengths.size and (lengths.min() < 2 or lengths.max() > MAX_CDF_LENGTH):
        fail(f"An entropy-model CDF has a length outside [2, {MAX_CDF_LENGTH}]")
    counts = ncz.array("entropy/pmf_counts", "uint16", (int((lengths - 1).sum()),)).astype(np.int64)
    if counts.size and counts.min() < 1:
        fail("An entropy-model table gives a symbol no probability")
    ends = np.cumsum(lengths - 1)
    sums = np.add.reduceat(counts, np.concatenate([[0], ends[:-1]])) if counts.size else np.zeros(0, np.int64)
    if (sums != 1 << CDF_PRECISION).any():
        fail(f"An entropy-model CDF does not end at 2^{CDF_PRECISION}")
    offsets = ncz.array("entropy/offset", "int32", (channels,))
    if offsets.size and np.abs(offsets.astype(np.int64)).max() > MAX_OFFSET:
        fail("An entropy-model offset is out of range")
    medians = ncz.array("entropy/medians", "float32", (channels,))
    if not np.isfinite(medians).all():
        fail("An entropy-model median is not finite")
    return lengths, counts


def padded_bitstream(bitstream: bytes, symbols: int) -> bytes:
    """The range coder reads 32-bit words past the end of a short or hostile stream, and its escape
    codes read 4-bit runs until one is not 15. Zero words end every escape at once, so this many
    of them keep each read inside the buffer (a real stream never reaches them)."""
    return bytes(bitstream) + bytes(4 * (len(bitstream) + 4 * symbols + 16))
