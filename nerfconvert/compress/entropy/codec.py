"""ECTensoRF model <-> ``.ncz`` bytes.

Sections:

    latents/bitstream   CompressAI range-coded latents of the coded locations (M = 1), all three planes
    latents/mask        the binary masks, bit-packed (absent for the plain factorised prior)
    entropy/*           the entropy model as its quantised CDF tables (per-channel pmf in 16-bit
                        counts, lengths, offsets) and medians: exactly what the range coder used,
                        so decoding never re-derives a table from floats (bit-exact on any device)
    decoder/*           the plane decoder: with ``decoder_bits`` <= 8 (the default, 8) each weight as
                        int8 codes (``decoder/up1.weight``) and one fp32 scale per output channel
                        (``decoder/up1.weight.scale``), weight = codes * scale in fp32, biases fp32;
                        with 16 (and files without ``decoder_bits``) every tensor fp16
    s/*                 the rest of the TensoRF model (lines, basis, MLP, ...) as in vq-compression:
                        fp16 for large float tensors, fp32 for small ones, bit-packed booleans

The container entropy-codes every section (best of zlib / lzma / zstd). Decoding rebuilds a stock
TensoRF model from JSON (no pickle) and reconstructs its planes once, with the decoder.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from nerfconvert import NerfconvertError
from nerfconvert.compress import container, validate
from nerfconvert.compress.entropy.coder import (
    STORED_FLOAT_BITS,
    MaskedEntropyModel,
    PlaneDecoder,
    dequantize_weight,
    split_planes,
)
from nerfconvert.compress.quant import pack_mask, unpack_mask
from nerfconvert.views.registry import view_for

METHOD = "entropy-compression"
SMALL_TENSOR = 256
SKIPPED_PREFIXES = ("lpips.",)
"""Metric networks in the state dict: not part of the scene."""


def stored_state_keys(state_dict: Dict[str, Tensor], plane_keys) -> list:
    """The state a file stores besides the planes (``plane_keys``, the view's) and metric networks."""
    return [k for k in state_dict if k not in plane_keys and not k.startswith(SKIPPED_PREFIXES)]


def round_like_storage(value: Tensor) -> Tensor:
    """What ``pack`` stores for a state tensor: fp16 for large float tensors, else unchanged."""
    if value.is_floating_point() and value.numel() >= SMALL_TENSOR:
        return value.half().to(value.dtype)
    return value


# ---- entropy model tables ---------------------------------------------------------------------------
def _cdf_sections(eb) -> Dict[str, Any]:
    cdf = eb._quantized_cdf.cpu().numpy().astype(np.int64)
    lengths = eb._cdf_length.cpu().numpy().astype(np.int64)
    pmfs = [np.diff(cdf[c, : lengths[c]]) for c in range(cdf.shape[0])]
    counts = np.concatenate(pmfs) if pmfs else np.zeros(0, np.int64)
    if counts.size and (counts.min() < 0 or counts.max() > 0xFFFF):
        raise NerfconvertError("The entropy model's CDF does not fit 16-bit counts; this is a bug, please report it.")
    return {
        "entropy/pmf_counts": counts.astype(np.uint16),
        "entropy/cdf_length": lengths.astype(np.int32),
        "entropy/offset": eb._offset.cpu().numpy().astype(np.int32),
        "entropy/medians": eb._get_medians().detach().cpu().reshape(-1).numpy().astype(np.float32),
    }


def _load_cdf(eb, ncz: container.NczFile) -> None:
    lengths, counts = validate.entropy_tables(ncz, eb.channels)
    if lengths.shape[0] != eb.channels or int((lengths - 1).sum()) != counts.size or (lengths < 2).any():
        raise NerfconvertError("The .ncz's entropy-model tables do not match its latents: the file is corrupted.")
    cdf = np.zeros((lengths.shape[0], int(lengths.max())), np.int32)
    start = 0
    for c, n in enumerate(lengths):
        cdf[c, 1:n] = np.cumsum(counts[start : start + n - 1])
        start += n - 1
    eb._quantized_cdf = torch.from_numpy(cdf)
    eb._cdf_length = torch.from_numpy(lengths.astype(np.int32))
    eb._offset = torch.from_numpy(ncz.array("entropy/offset").astype(np.int32))
    medians = torch.from_numpy(ncz.array("entropy/medians").astype(np.float32))
    with torch.no_grad():
        eb.quantiles.data[:, 0, 1] = medians


# ---- latents -------------------------------------------------------------------------------------------
def encode_latents(entropy: MaskedEntropyModel, latents: Tensor) -> Tuple[bytes, Tensor, Tensor, float]:
    """-> (bitstream, coded latent values [3, C, h, w], mask [3, 1, h, w], estimated bits)."""
    eb = entropy.bottleneck
    state = entropy.quantized(latents)
    mask = state.mask[:, 0].cpu()  # [3, h, w]
    z = latents.detach().cpu()
    coded = z.permute(1, 0, 2, 3)[:, mask]  # [C, N] in (plane, row, column) order
    strings = eb.compress(coded[None, :, :, None])
    return strings[0], state.values.cpu(), state.mask.cpu(), float(state.bits)


def decode_latents(eb, bitstream: bytes, mask: Tensor, channels: int) -> Tensor:
    """Bitstream + mask -> [3, C, h, w] latents (zero where M = 0)."""
    n = int(mask.sum())
    values = torch.zeros(channels, *mask.shape)
    if n:
        decoded = eb.decompress([bitstream], (n, 1))[0, :, :, 0].float()  # [C, N]
        values[:, mask] = decoded
    return values.permute(1, 0, 2, 3).contiguous()


# ---- whole model ------------------------------------------------------------------------------------------
def pack(model, entropy: MaskedEntropyModel, decoder: PlaneDecoder, latents: Tensor, spec: Dict[str, Any],
         metadata: Dict[str, Any]) -> Tuple[bytes, Dict[str, Any]]:
    """Encode. ``model``: the model whose feature planes were coded (its planes are not read); ``spec``:
    preset and plane shapes. Returns the file bytes and a size/rate report. Calls ``update()`` on the bottleneck."""
    from nerfconvert.compress.modelconfig import model_architecture
    from nerfconvert.compress.tables import vq_tables_class_for

    family_cls = vq_tables_class_for(type(model))  # what rebuilds the model: its view's tables

    eb = entropy.bottleneck
    eb.update(force=True)
    start = time.perf_counter()
    bitstream, _, mask, est_bits = encode_latents(entropy, latents)
    sections: Dict[str, Any] = {"latents/bitstream": bitstream}
    if entropy.masked:
        sections["latents/mask"] = pack_mask(mask)
    sections.update(_cdf_sections(eb))
    sections.update(decoder_sections(decoder))
    state_dict = model.state_dict()
    state_spec = {}
    for key in stored_state_keys(state_dict, view_for(model).plane_state_keys):
        value = state_dict[key].detach().cpu()
        entry = {"shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
        if value.dtype == torch.bool:
            entry["storage"] = "bits"
            sections["s/" + key] = pack_mask(value)
        elif not value.is_floating_point():
            entry["storage"] = "raw"
            sections["s/" + key] = value.numpy()
        elif value.numel() >= SMALL_TENSOR:
            entry["storage"] = "fp16"
            sections["s/" + key] = value.half().numpy()
        else:
            entry["storage"] = "fp32"
            sections["s/" + key] = value.float().numpy()
        state_spec[key] = entry
    architecture = {
        **model_architecture(model, family_cls.name, family_cls.teacher_method),
        "latent_shape": list(latents.shape),
        "coded_locations": int(mask.sum()),
        "masked": bool(entropy.masked),
        "decoder_bits": int(decoder.bits),
        "state": state_spec,
        **spec,
    }
    data = container.to_bytes(METHOD, architecture, sections, metadata=metadata)
    report = {
        "bitstream_bytes": len(bitstream),
        "estimated_bitstream_bytes": est_bits / 8.0,
        "rate_mismatch": (len(bitstream) * 8.0 - est_bits) / max(est_bits, 1e-9),
        "coded_fraction": float(mask.float().mean()),
        "encode_seconds": time.perf_counter() - start,
        "ncz_bytes": len(data),
    }
    return data, report


# ---- decoder ---------------------------------------------------------------------------------------------
def decoder_sections(decoder: PlaneDecoder) -> Dict[str, np.ndarray]:
    """The decoder's sections: quantised weights as int8 codes + fp32 scales and fp32 biases, or all fp16."""
    if not decoder.quantized:
        return {"decoder/" + name: value.detach().cpu().half().numpy() for name, value in decoder.state_dict().items()}
    quantized = decoder.quantized_weights()
    sections: Dict[str, np.ndarray] = {}
    for name, value in decoder.state_dict().items():
        if name in quantized:
            codes, scale = quantized[name]
            sections["decoder/" + name] = codes.cpu().numpy()
            sections["decoder/" + name + ".scale"] = scale.cpu().numpy().astype(np.float32)
        else:
            sections["decoder/" + name] = value.detach().cpu().float().numpy()
    return sections


def load_decoder(decoder: PlaneDecoder, ncz: container.NczFile, bits: int) -> None:
    """The file's decoder weights into ``decoder`` (a plain float one), each section validated first."""
    expected = {name: tuple(value.shape) for name, value in decoder.state_dict().items()}
    stored = validate.decoder_section_names(ncz, expected, bits)
    weights: Dict[str, Tensor] = {}
    for name, shape in expected.items():
        if bits == STORED_FLOAT_BITS:
            weights[name] = torch.from_numpy(ncz.array("decoder/" + name, "float16", shape).astype(np.float32))
        elif name in stored["quantized"]:
            codes, scale = validate.decoder_weight(ncz, "decoder/" + name, shape, bits)
            weights[name] = dequantize_weight(torch.from_numpy(codes.astype(np.int8)), torch.from_numpy(scale))
        else:
            weights[name] = torch.from_numpy(validate.decoder_bias(ncz, "decoder/" + name, shape))
    try:
        decoder.load_state_dict(weights)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:300]
        raise NerfconvertError(f"The .ncz's decoder weights do not fit its architecture: the file is corrupted ({detail}).") from err


def build_coder(arch: Dict[str, Any]) -> Tuple[MaskedEntropyModel, PlaneDecoder]:
    n, c, h, w = arch["latent_shape"]
    entropy = MaskedEntropyModel(c, (n, h, w), masked=bool(arch.get("masked", True)))
    decoder = PlaneDecoder(c, int(arch["hidden_channels"]), int(arch["plane_channels"]))
    return entropy, decoder


def decode_sections(ncz: container.NczFile) -> Tuple[Tensor, PlaneDecoder, MaskedEntropyModel]:
    """-> (latents [3, C, h, w] exactly as coded, decoder with the file's weights, entropy model)."""
    if ncz.method != METHOD:
        raise NerfconvertError(f"The file was written by {ncz.method!r}, not {METHOD}; decode it with that method's tools.")
    arch = ncz.architecture
    validate.entropy_architecture(ncz)  # every size bounded before anything is allocated
    try:
        entropy, decoder = build_coder(arch)
        n, c, h, w = arch["latent_shape"]
    except (KeyError, TypeError, ValueError) as err:
        raise NerfconvertError(f"The .ncz's architecture is incomplete ({err}): the file is corrupted or from another version.") from err
    _load_cdf(entropy.bottleneck, ncz)
    if arch.get("masked", True):
        mask = unpack_mask(ncz.array("latents/mask", "uint8", ((n * h * w + 7) // 8,)), n * h * w).view(n, h, w)
    else:
        mask = torch.ones(n, h, w, dtype=torch.bool)
    if int(mask.sum()) != int(arch.get("coded_locations", -1)):
        raise NerfconvertError("The .ncz's mask does not match its latent count: the file is corrupted.")
    bitstream = validate.padded_bitstream(ncz.section("latents/bitstream").data, int(mask.sum()) * c)
    latents = decode_latents(entropy.bottleneck, bitstream, mask, c)
    load_decoder(decoder, ncz, int(arch.get("decoder_bits", STORED_FLOAT_BITS)))
    return latents, decoder, entropy


def stored_state(ncz: container.NczFile) -> Dict[str, Tensor]:
    """The TensoRF state a file stores besides the planes (``s/*``: lines, basis, MLP, ...), by state key.
    Sizes as validated by ``decode_sections`` / ``validate.entropy_architecture``."""
    state: Dict[str, Tensor] = {}
    for key, spec in ncz.architecture["state"].items():
        shape = tuple(spec["shape"])
        dtype = getattr(torch, spec["dtype"])
        if spec["storage"] == "bits":
            value = unpack_mask(ncz.array("s/" + key), int(np.prod(shape))).view(shape)
        else:
            value = torch.from_numpy(np.array(ncz.array("s/" + key)))
        state[key] = value.to(dtype).view(shape)
    return state


@torch.no_grad()
def decode_planes(decoder: PlaneDecoder, latents: Tensor, resolution, device=None) -> Tensor:
    device = device or torch.device("cpu")
    return decoder.to(device)(latents.to(device), tuple(resolution))


@validate.hostile_input
def decode(ncz: container.NczFile, device: Optional[torch.device] = None, num_train_data: Optional[int] = None):
    """.ncz -> (the stock model the file names, its feature planes decoded; report with ``decode_seconds``)."""
    from nerfstudio.data.scene_box import SceneBox

    from nerfconvert.compress.modelconfig import model_config_from_json
    from nerfconvert.compress.tables import FEATURE_PLANES, vq_tables_named

    start = time.perf_counter()
    device = torch.device(device) if device is not None else torch.device("cpu")
    latents, decoder, _ = decode_sections(ncz)
    arch = ncz.architecture
    # what rebuilds the model: the tables of the registered family with feature planes the file names
    family_cls = vq_tables_named(arch.get("family"), having=FEATURE_PLANES)
    if family_cls is None:
        raise NerfconvertError(f"The file holds feature planes of an unknown family {validate._short(arch.get('family'))}: "
                               "the file is corrupted or needs a newer nerfconvert.")
    planes = decode_planes(decoder, latents, arch["plane_resolution"], device)
    density, color = split_planes(planes, int(arch["density_channels"]))
    config = model_config_from_json(family_cls, arch.get("model_config", {}), arch.get("model_method"))
    validate.charge_model(family_cls, config, validate.budget(ncz))
    scene_box = SceneBox(aabb=torch.tensor(arch["scene_box"], dtype=torch.float32))
    model = config.setup(scene_box=scene_box, num_train_data=num_train_data or arch["num_train_data"], metadata={},
                         device=device)
    view = view_for(model)
    state: Dict[str, Tensor] = dict(zip(view.plane_state_keys, (density.cpu(), color.cpu())))
    state.update(stored_state(ncz))
    load_plane_state(model, state, view)
    model.to(device)
    model.eval()
    return model, {"decode_seconds": time.perf_counter() - start}


def load_plane_state(model, state: Dict[str, Tensor], view) -> None:
    """Load after adopting the stored plane/line resolutions (the teacher may have been upsampled)."""
    params = dict(model.named_parameters())
    for key, value in state.items():
        target = params.get(key)
        if target is not None and target.shape != value.shape:
            target.data = torch.empty(value.shape, dtype=target.dtype, device=target.device)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(SKIPPED_PREFIXES)]
    if missing or unexpected:
        raise NerfconvertError(
            f"The decoded state does not fit this nerfstudio's {type(model).__name__} (missing {missing[:3]}, unexpected "
            f"{list(unexpected)[:3]}): the file was written for another version of the architecture."
        )
    view.sync_resolution()
