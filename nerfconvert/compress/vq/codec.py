"""A compressed model <-> ``.ncz`` bytes (VQRF post-processing, Sec. 6).

Per table (see ``families``): two bit-packed masks (live voxels; kept = not vector-quantised),
then for a "vq" table the fp16 codebook, code indices at ceil(log2 K) bits and 8-bit kept voxels
(per-channel offset and step); for a "lattice" table (hash grids) the two steps and the integer
multiples of them, one section for the vector-quantised voxels and one for the kept ones, each
channel-major so that the container's coder sees one distribution at a time. The rest of the
model's state: fp16 for large float tensors (MLPs, lines, bases), 8-bit for the family's large
side tables, fp32 for small ones, bit-packed booleans. A tensor registered under several names
(nerfacto's proposal networks hold their hash table as ``encoding`` and ``mlp_base.0``) is stored
once; its other names are recorded as aliases. Every section is entropy coded by the container
(best of zlib / lzma / zstd).

Decoding rebuilds the model from a stock method config plus the JSON-only architecture (no
pickle), so a file from a stranger cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from nerfconvert import NerfconvertError
from nerfconvert.compress import container, validate
from nerfconvert.compress.quant import (
    dequantize_uint8,
    index_bits,
    pack_indices,
    pack_mask,
    quantize_uint8,
    unpack_indices,
    unpack_mask,
)
from nerfconvert.compress.modelconfig import model_architecture, model_config_from_json
from nerfconvert.compress.tables import CompressionTables, Table, vq_tables_named

METHOD = "vq-compression"
SMALL_TENSOR = 256
"""Float tensors with fewer entries are stored at fp32 (boxes, scalars): they cost nothing."""


@dataclass
class TableState:
    """The compressed state of one table."""

    alive: Tensor
    """[N] bool: not pruned."""
    kept: Tensor
    """[N] bool: stored directly (8-bit), not through the codebook; subset of alive."""
    assignment: Tensor
    """[N] long: code of each vector-quantised voxel (-1 elsewhere); fixed while fine-tuning."""
    codebook: Optional[Tensor]
    """[K, C] (None for scalar tables)."""
    importance: Tensor
    """[N] Eq. 4 scores (weights of the code synchronisation)."""
    steps: Optional[Tuple[float, float]] = None
    """Lattice tables: the grid steps (vector-quantised voxels, kept voxels), float32 values."""
    latent: Optional[Tensor] = None
    """Lattice tables: [N, C] full-precision values the fine-tuning updates; the model holds their
    projection onto the lattice (the straight-through shadow of quantisation-aware training)."""
    fill: Optional[Tensor] = None
    """[C] float32: what the pruned voxels hold, for a table whose ``fill`` is "mean" (None: its empty value)."""

    def empty(self, table: Table, like: Tensor) -> Tensor:
        """The value of a pruned row, [C] (or [1]), on ``like``'s device and dtype."""
        if self.fill is not None:
            return self.fill.to(like.device, like.dtype)
        return torch.full((1,), float(table.empty_value), device=like.device, dtype=like.dtype)

    @property
    def vq(self) -> Tensor:
        return self.alive & ~self.kept & (self.assignment >= 0)


# ---- lattice tables -----------------------------------------------------------------------------------------------------
LATTICE_DTYPES = ("int8", "int16", "int32")


def lattice_codes(values: Tensor, step: float) -> Tensor:
    """Integer multiples of ``step`` nearest to ``values`` (float32 integers)."""
    return torch.round(values.float() / torch.tensor(step, dtype=torch.float32))


def lattice_values(codes: Tensor, step: float) -> Tensor:
    """What the decoder computes from stored codes: exactly ``lattice_codes(x) * step`` in float32."""
    return codes.float() * torch.tensor(step, dtype=torch.float32)


def _lattice_array(codes: Tensor) -> np.ndarray:
    """[M, C] integer codes -> the smallest signed dtype that holds them, channel-major [C, M]."""
    array = codes.detach().cpu().to(torch.int64).t().contiguous().numpy()
    for dtype in LATTICE_DTYPES:
        info = np.iinfo(dtype)
        if array.size == 0 or (int(array.min()) >= info.min and int(array.max()) <= info.max):
            return array.astype(dtype)
    raise NerfconvertError("A lattice table's codes do not fit in 32 bits: raise --pipeline.model.lattice-step.")


# ---- packing ------------------------------------------------------------------------------------------------------------
def _table_sections(table: Table, rows: Tensor, state: TableState) -> Dict[str, Any]:
    n, c = rows.shape
    p = f"t/{table.name}/"
    sections: Dict[str, Any] = {p + "alive": pack_mask(state.alive)}
    if table.fill == "mean":
        sections[p + "fill"] = state.empty(table, rows).detach().cpu().float().expand(c).contiguous().numpy()
    if table.kind == "lattice":
        sections[p + "kept"] = pack_mask(state.kept[state.alive])
        coarse, fine = state.steps
        sections[p + "steps"] = np.array([coarse, fine], dtype=np.float32)
        vq = state.alive & ~state.kept
        sections[p + "codes"] = _lattice_array(lattice_codes(rows[vq.to(rows.device)], coarse))
        sections[p + "kept_codes"] = _lattice_array(lattice_codes(rows[state.kept.to(rows.device)], fine))
        return sections
    if table.kind == "scalar":
        codes, rng = quantize_uint8(rows[state.alive], table.low_quantile)
        sections[p + "values"] = codes
        sections[p + "range"] = rng
        return sections
    kept_in_alive = state.kept[state.alive]
    sections[p + "kept"] = pack_mask(kept_in_alive)
    codebook = state.codebook.detach().cpu().half()
    sections[p + "codebook"] = codebook.numpy()
    idx = state.assignment[state.alive & ~state.kept].cpu().numpy()
    bits = index_bits(codebook.shape[0])
    sections[p + "indices"] = container.Section(pack_indices(idx, bits), dtype="uint8")
    codes, rng = quantize_uint8(rows[state.kept], table.low_quantile)
    sections[p + "kept_values"] = codes
    sections[p + "kept_range"] = rng
    return sections


def _decode_table(ncz: container.NczFile, table: Table, spec: Dict[str, Any]) -> Tensor:
    n, c = spec["rows"], spec["channels"]
    p = f"t/{table.name}/"
    alive = unpack_mask(ncz.array(p + "alive", "uint8", ((n + 7) // 8,)), n)
    rows = torch.full((n, c), float(table.empty_value))
    fill = _fill(ncz, table, c)
    if fill is not None:
        rows[:] = fill
    if table.kind == "scalar":
        rows[alive] = dequantize_uint8(ncz.array(p + "values", "uint8", (int(alive.sum()), c)),
                                       ncz.array(p + "range", "float32", (2, c)))
        return rows
    kept_in_alive = unpack_mask(ncz.array(p + "kept", "uint8", ((int(alive.sum()) + 7) // 8,)), int(alive.sum()))
    kept = torch.zeros(n, dtype=torch.bool)
    kept[alive] = kept_in_alive
    vq = alive & ~kept
    if table.kind == "lattice":
        steps = ncz.array(p + "steps", "float32", (2,))
        if not np.all(np.isfinite(steps)) or np.any(np.abs(steps) > 1e6):
            raise NerfconvertError(f"Table {table.name} has an invalid lattice step: the file is corrupted.")
        for name, mask, step in (("codes", vq, steps[0]), ("kept_codes", kept, steps[1])):
            count = int(mask.sum())
            declared = ncz.section(p + name).dtype
            dtype = np.dtype(declared).name if declared in ("i1", "i2", "i4", *LATTICE_DTYPES) else declared
            if dtype not in LATTICE_DTYPES:
                raise NerfconvertError(f"Table {table.name} stores its {name} as {dtype!r}, not an integer: the file is corrupted.")
            codes = ncz.array(p + name, dtype, (c, count))
            rows[mask] = lattice_values(torch.from_numpy(codes.astype(np.int64)).t(), float(step))
        return rows
    codebook = torch.from_numpy(ncz.array(p + "codebook", "float16", (spec["codes"], c)).astype(np.float32))
    bits = index_bits(codebook.shape[0])
    ncz.check(p + "indices", "uint8", ((int(vq.sum()) * bits + 7) // 8,))
    idx = torch.from_numpy(unpack_indices(ncz.section(p + "indices").data, bits, int(vq.sum())))
    if idx.numel() and int(idx.max()) >= codebook.shape[0]:
        raise NerfconvertError(f"Table {table.name} has a code index beyond its codebook: the file is corrupted.")
    rows[vq] = codebook[idx]
    rows[kept] = dequantize_uint8(ncz.array(p + "kept_values", "uint8", (int(kept.sum()), c)),
                                  ncz.array(p + "kept_range", "float32", (2, c)))
    return rows


def _fill(ncz: container.NczFile, table: Table, channels: int) -> Optional[Tensor]:
    """A "mean"-filled table's stored fill vector, checked (float32 [C], finite, bounded)."""
    if table.fill != "mean":
        return None
    name = f"t/{table.name}/fill"
    if name not in ncz.sections:  # files from before the fill: their pruned voxels were empty
        return None
    values = ncz.array(name, "float32", (channels,))
    if not np.all(np.isfinite(values)) or np.any(np.abs(values) > 1e6):
        raise NerfconvertError(f"Table {table.name} has an invalid fill value: the file is corrupted.")
    return torch.from_numpy(np.array(values))


@validate.hostile_input
def table_states(ncz: container.NczFile, family: CompressionTables) -> Dict[str, TableState]:
    """The compressed state of every table of ``family`` as the file stores it, to resume the joint
    fine-tuning from a checkpoint: live and kept masks, codebook and fixed assignment ("vq"), steps and
    the decoded rows as the latent ("lattice"). Validated as ``decode`` validates. ``importance`` is
    zeros: the caller keeps the scores it computed."""
    if ncz.method != METHOD:
        raise NerfconvertError(f"The file was written by {ncz.method!r}, not {METHOD}; decode it with that method's tools.")
    if ncz.architecture.get("family") != family.name:
        raise NerfconvertError(f"The file holds a {validate._short(ncz.architecture.get('family'))} model, not a "
                               f"{family.name} one: resume with the teacher the run was started from.")
    if _quantizer(ncz.architecture, type(family)) != family.quantizer:
        raise NerfconvertError(f"The file's tables are quantised with {validate._short(ncz.architecture.get('quantizer'))}, "
                               f"this run's with {family.quantizer!r}: resume with the --pipeline.model.quantizer the run "
                               "was started with.")
    _, tables, _ = validate.vq_architecture(ncz)
    states: Dict[str, TableState] = {}
    for table in family.tables():
        spec = validate.vq_table(tables, table.name, table.kind)
        n, c = spec["rows"], spec["channels"]
        p = f"t/{table.name}/"
        alive = unpack_mask(ncz.array(p + "alive", "uint8", ((n + 7) // 8,)), n)
        live = int(alive.sum())
        assignment = torch.full((n,), -1, dtype=torch.long)
        codebook = steps = latent = None
        if table.kind == "scalar":
            kept = alive.clone()  # every live voxel is stored directly, at 8 bits
        else:
            kept = torch.zeros(n, dtype=torch.bool)
            kept[alive] = unpack_mask(ncz.array(p + "kept", "uint8", ((live + 7) // 8,)), live)
        if table.kind == "lattice":
            step_values = ncz.array(p + "steps", "float32", (2,))
            steps = (float(step_values[0]), float(step_values[1]))
            latent = _decode_table(ncz, table, spec).float()
        elif table.kind == "vq":
            codebook = torch.from_numpy(ncz.array(p + "codebook", "float16", (spec["codes"], c)).astype(np.float32))
            vq = alive & ~kept
            bits = index_bits(codebook.shape[0])
            ncz.check(p + "indices", "uint8", ((int(vq.sum()) * bits + 7) // 8,))
            idx = torch.from_numpy(unpack_indices(ncz.section(p + "indices").data, bits, int(vq.sum()))).long()
            if idx.numel() and int(idx.max()) >= codebook.shape[0]:
                raise NerfconvertError(f"Table {table.name} has a code index beyond its codebook: the file is corrupted.")
            assignment[vq] = idx
        states[table.name] = TableState(alive=alive, kept=kept, assignment=assignment, codebook=codebook,
                                        importance=torch.zeros(n), steps=steps, latent=latent, fill=_fill(ncz, table, c))
    return states


def _quantizer(arch: Dict[str, Any], family_cls) -> str:
    """The quantiser a file names (files from before the choice: the family's first, what they used)."""
    quantizer = arch.get("quantizer", family_cls.quantizers[0])
    if not isinstance(quantizer, str) or quantizer not in family_cls.quantizers:
        raise NerfconvertError(f"The file names the quantiser {validate._short(quantizer)}, which its {family_cls.name} "
                               "tables do not have: the file is corrupted or from a newer nerfconvert.")
    return quantizer


def pack(family: CompressionTables, states: Dict[str, TableState], extra: Dict[str, Any]) -> bytes:
    """The current model + compressed state -> .ncz bytes. Does not modify the model."""
    model = family.model
    tables = family.tables()
    state_dict = model.state_dict()
    covered = {t.param_name for t in tables}
    aliases = shared_tensor_aliases(state_dict, prefer=covered)
    eight_bit = set(family.eight_bit_state_keys())
    sections: Dict[str, Any] = {}
    table_specs = {}
    for table in tables:
        rows = table.rows(state_dict[table.param_name].detach()).cpu()
        sections.update(_table_sections(table, rows, states[table.name]))
        table_specs[table.name] = {"rows": rows.shape[0], "channels": rows.shape[1], "kind": table.kind,
                                   "codes": None if states[table.name].codebook is None else int(states[table.name].codebook.shape[0])}
    state_spec = {}
    for key, value in state_dict.items():
        value = value.detach().cpu()
        entry = {"shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
        if key in aliases:
            entry["storage"] = "alias"
            entry["of"] = aliases[key]
        elif key in covered:
            entry["storage"] = "table"
        elif value.dtype == torch.bool:
            entry["storage"] = "bits"
            sections["s/" + key] = pack_mask(value)
        elif not value.is_floating_point():
            entry["storage"] = "raw"
            sections["s/" + key] = value.numpy()
        elif key in eight_bit:
            entry["storage"] = "uint8"
            codes, rng = quantize_uint8(value.reshape(value.shape[0], -1) if value.ndim > 1 else value.reshape(-1, 1))
            sections["s/" + key] = codes
            sections["s/" + key + "#range"] = rng
        elif value.numel() >= SMALL_TENSOR:
            entry["storage"] = "fp16"
            sections["s/" + key] = value.half().numpy()
        else:
            entry["storage"] = "fp32"
            sections["s/" + key] = value.float().numpy()
        state_spec[key] = entry
    architecture = {
        **model_architecture(model, family.name, family.teacher_method),
        "quantizer": family.quantizer,
        "tables": table_specs,
        "state": state_spec,
    }
    return container.to_bytes(METHOD, architecture, sections, metadata=extra)


def shared_tensor_aliases(state_dict: Dict[str, Tensor], prefer=()) -> Dict[str, str]:
    """{name: the name it is stored under} for every state entry that shares its storage with an
    earlier one (same memory, shape and strides), preferring names in ``prefer`` as the stored one."""
    first: Dict[tuple, str] = {}
    for key, value in sorted(state_dict.items(), key=lambda kv: kv[0] not in prefer):
        if value.numel() == 0:
            continue
        ident = (value.data_ptr(), tuple(value.shape), tuple(value.stride()), value.dtype, value.device)
        first.setdefault(ident, key)
    aliases = {}
    for key, value in state_dict.items():
        if value.numel() == 0:
            continue
        ident = (value.data_ptr(), tuple(value.shape), tuple(value.stride()), value.dtype, value.device)
        if first[ident] != key:
            aliases[key] = first[ident]
    return aliases


@validate.hostile_input
def decode(ncz: container.NczFile, device: Optional[torch.device] = None, num_train_data: Optional[int] = None):
    """.ncz -> a stock model of the compressed architecture, with the decoded tensors loaded."""
    from nerfstudio.data.scene_box import SceneBox

    if ncz.method != METHOD:
        raise NerfconvertError(
            f"The file was written by {ncz.method!r}, not {METHOD}; decode it with that method's tools."
        )
    arch = ncz.architecture
    family_cls = vq_tables_named(arch.get("family"))  # the family a registered view offers under that name
    if family_cls is None:
        raise NerfconvertError(f"Unknown architecture family {arch.get('family')!r}: upgrade nerfconvert.")
    budget, tables, checked_state = validate.vq_architecture(ncz)  # sizes bounded before anything is allocated
    config = model_config_from_json(family_cls, arch.get("model_config", {}), arch.get("model_method"))
    validate.charge_model(family_cls, config, budget)
    scene_box = SceneBox(aabb=torch.tensor(arch["scene_box"], dtype=torch.float32))
    model = config.setup(scene_box=scene_box, num_train_data=num_train_data or arch["num_train_data"], metadata={},
                         device=device or torch.device("cpu"))
    family = family_cls(model, _quantizer(arch, family_cls))
    state: Dict[str, Tensor] = {}
    for key, spec in checked_state.items():
        shape = tuple(spec["shape"])
        dtype = getattr(torch, spec["dtype"])
        storage = spec["storage"]
        if storage == "table":
            state[key] = torch.zeros(shape, dtype=dtype)
            continue
        if storage == "alias":
            continue  # filled below, from the entry it names
        if storage == "bits":
            value = unpack_mask(ncz.array("s/" + key), int(np.prod(shape))).view(shape)
        elif storage == "uint8":
            value = dequantize_uint8(ncz.array("s/" + key), ncz.array("s/" + key + "#range")).view(shape)
        else:
            value = torch.from_numpy(np.array(ncz.array("s/" + key)))
        state[key] = value.to(dtype).view(shape)
    for table in family.tables():
        spec = validate.vq_table(tables, table.name, table.kind)
        table.rows(state[table.param_name])[:] = _decode_table(ncz, table, spec).to(state[table.param_name].dtype)
    for key, spec in checked_state.items():
        if spec["storage"] == "alias":
            of = spec.get("of")
            target = checked_state.get(of) if isinstance(of, str) else None
            if target is None or target["storage"] == "alias" or tuple(target["shape"]) != tuple(spec["shape"]) \
                    or target["dtype"] != spec["dtype"]:
                raise NerfconvertError(f"State entry {key!r} is an alias of {validate._short(of)}, which is not a stored "
                                       "entry of the same shape and dtype: the file is corrupted.")
            state[key] = state[of]  # one tensor under both names, as in the model
    load_state_into(model, state)
    model.to(device or torch.device("cpu"))
    model.eval()
    return model, family


def load_state_into(model: torch.nn.Module, state: Dict[str, Tensor]) -> None:
    """``load_state_dict`` after adopting the stored shapes (upsampled grids, other scene sizes)."""
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    for key, value in state.items():
        target = params.get(key, buffers.get(key))
        if target is not None and target.shape != value.shape:
            if key in params:
                target.data = torch.empty(value.shape, dtype=target.dtype, device=target.device)
            else:
                module_name, _, attr = key.rpartition(".")
                module = model.get_submodule(module_name) if module_name else model
                setattr(module, attr, torch.empty(value.shape, dtype=target.dtype, device=target.device))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise NerfconvertError(
            f"The decoded state does not fit this nerfstudio's model (missing {list(missing)[:3]}, unexpected "
            f"{list(unexpected)[:3]}): the file was written for another version of the architecture."
        )
    for module in model.modules():  # refresh derived caches (voxel grid occupancy)
        refresh = getattr(module, "_refresh_occupancy_cache", None)
        if callable(refresh):
            refresh()
