"""A tile-based Gaussian rasterizer in pure torch, with the signature and return contract of
``gsplat.rendering.rasterization`` (gsplat 1.4) for the options nerfstudio's ``splatfacto`` uses.

Why this exists: gsplat has CUDA kernels only (its maintainers do not plan a CPU backend), so a
splatfacto run could not be trained, evaluated, rendered or viewed on a machine without a GPU.
Nothing on PyPI fills the gap as a drop-in: ``torch-splatting`` and ``diff-gaussian-rasterization``
are not published there, ``splat`` is an astronomy toolkit (SpeX Prism Library), and the CPU-capable
renderers that are (``taichi-splatting`` 0.13, last released 2024-05, on taichi; ``gswarp`` on NVIDIA
Warp; ``splax`` on JAX; ``litesplat`` on Keras) each bring a framework of their own and a different
API and parameterisation from gsplat's, which splatfacto and ``gsplat.strategy.DefaultStrategy`` read.

What is reused and what is new. gsplat ships pure-torch reference versions of its projection and
spherical-harmonics kernels (``gsplat/cuda/_torch_impl.py``); they run on the CPU and are used as
they are (``_quat_scale_to_covar_preci``, ``_fully_fused_projection``, ``_spherical_harmonics``;
imported in one place, :func:`_gsplat_torch_impl`). Its torch tile intersection (``_isect_tiles``)
is a Python loop per Gaussian and tile, and its torch rasterizer (``_rasterize_to_pixels``, also
behind ``gsplat.rendering._rasterization``) calls the CUDA kernel ``rasterize_to_indices_in_range``
and nerfacc, so neither runs on the CPU: tile binning and compositing are written here.

The rules follow gsplat's CUDA kernels, so that a CPU render matches a GPU one:

* a Gaussian is binned to the tiles its 3-sigma screen radius (``radii``) overlaps, exactly as
  ``isect_tiles`` does, and each tile's list is sorted by depth (ties: Gaussian order);
* a pixel (centre at +0.5) takes ``alpha = min(0.999, opacity * exp(-sigma))`` and skips a Gaussian
  whose ``sigma < 0`` or ``alpha < 1/255``; it stops before the Gaussian that would bring its
  transmittance to ``<= 1e-4``;
* transmittance is a cumulative product over the tile's depth-sorted Gaussians; the backward pass
  of the compositing is closed-form (``gradcheck`` in the tests), autograd does the rest; ``absgrad=True`` fills ``meta["means2d"].absgrad`` with the sum over pixels of the
  absolute per-pixel gradients, as gsplat's backward kernel does (DefaultStrategy densifies on it).

Memory is bounded: tiles are processed in rounds of at most ``round_size`` depth-sorted Gaussians
per tile that carry their transmittance forward (a tile whose pixels have all stopped drops out,
which is most of the saving on dense scenes), in batches of at most ``pair_budget`` (pixel,
Gaussian) pairs (2^20: some 60 MB of float32 temporaries). The compositing's backward pass is
written out (:class:`_Composite`), so a batch keeps only alpha, transmittance and a mask for it (9
bytes a pair); past ``checkpoint_pairs`` pairs in a frame (2^25, some 300 MB) the batches are
checkpointed instead (recomputed in the backward pass: one more forward per step).
Nothing of size Gaussians x pixels is ever built.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4
SIGMA_MAX = 20.0  # exp(-20) * 1 < 1/255


def _gsplat_torch_impl() -> Tuple[Any, Any, Any]:
    """gsplat's pure-torch projection and SH helpers (private API, gsplat 1.4): the one place
    they are imported."""
    try:
        from gsplat.cuda._torch_impl import (  # noqa: PLC0415
            _fully_fused_projection,
            _quat_scale_to_covar_preci,
            _spherical_harmonics,
        )
    except ImportError as err:  # pragma: no cover - depends on the installed gsplat
        try:
            import gsplat

            version = getattr(gsplat, "__version__", "?")
        except ImportError:
            version = "not installed"
        raise ImportError(
            "nerfconvert's CPU Gaussian rasterizer uses gsplat's pure-torch reference functions "
            "(gsplat.cuda._torch_impl: _fully_fused_projection, _quat_scale_to_covar_preci, "
            f"_spherical_harmonics), which this gsplat ({version}) does not have: {err}. "
            "Install gsplat 1.4.x (pip install 'gsplat==1.4.0')."
        ) from err
    return _quat_scale_to_covar_preci, _fully_fused_projection, _spherical_harmonics


def _composite(xy: Tensor, conic: Tensor, opac: Tensor, color: Tensor, pix: Tensor, T0: Optional[Tensor],
               done0: Optional[Tensor], need_free: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Optional[Tensor]]:
    """The compositing of :class:`_Composite` without autograd: (colour, transmittance after, done, and for
    the backward pass alpha, the transmittance after each Gaussian and where alpha moves with opacity)."""
    x, y = xy[..., 0].contiguous(), xy[..., 1].contiguous()
    px, py = pix[..., 0].contiguous(), pix[..., 1].contiguous()
    dx, dy = x[:, None, :] - px[:, :, None], y[:, None, :] - py[:, :, None]  # [B, P, K]
    half_a = (0.5 * conic[..., 0])[:, None, :]
    b = conic[..., 1].contiguous()[:, None, :]
    half_c = (0.5 * conic[..., 2])[:, None, :]
    sigma = dx * (half_a * dx + b * dy) + half_c * dy * dy
    # exp() of large negative arguments is ~50x slower on the CPU (underflow path); past
    # sigma = 20, alpha < 1/255 for any opacity and the pair is skipped anyway
    raw = opac[:, None, :] * torch.exp(-torch.clamp_max(sigma, SIGMA_MAX))
    keep = (raw >= ALPHA_MIN) & (sigma >= 0)  # alpha = min(raw, ALPHA_MAX) >= ALPHA_MIN iff raw is
    if done0 is not None:
        keep &= ~done0[..., None]
    alpha = torch.where(keep, torch.clamp_max(raw, ALPHA_MAX), 0.0)
    # a pixel stops before the Gaussian that takes its transmittance to <= T_MIN (gsplat's rule);
    # transmittance only decreases, so the pixel stops in this chunk iff its last one is
    t_incl = torch.cumprod(1.0 - alpha, dim=-1)
    ok = (t_incl * T0[..., None] if T0 is not None else t_incl) > T_MIN
    done = ~ok[..., -1]
    if done0 is not None:
        done |= done0
    alpha = torch.where(ok, alpha, 0.0)
    one_minus = 1.0 - alpha  # >= 1 - ALPHA_MAX > 0
    trans = torch.cumprod(one_minus, dim=-1)  # transmittance after each Gaussian
    weights = alpha * (trans / one_minus)  # alpha_k * transmittance before k
    out = torch.bmm(weights, color)  # [B, P, D]
    # where alpha moves with raw (kept, not clamped, not stopped); a render without gradients needs none
    free = keep & ok & (raw < ALPHA_MAX) if need_free else None
    return out, trans[..., -1].clone(), done, alpha, trans, free


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of a batch of tiles' depth-sorted Gaussians, with a hand-written
    backward pass.

    Autograd through the plain tensor expression kept some 15 [B, P, K] temporaries per batch for its
    backward pass, so that frames past a few million (pixel, Gaussian) pairs had to be checkpointed
    (computed twice). The gradients are closed-form: with transmittance before
    Gaussian k ``T_k``, weight ``w_k = alpha_k T_k`` and ``G_k = dL/dout . c_k``,

        dL/dalpha_k = T_k G_k - (sum_{j>k} w_j G_j + dL/dT_final T_final) / (1 - alpha_k),

    and alpha = opacity exp(-sigma) carries them to the opacity, the conic and the screen mean.
    Only alpha, the transmittance and a mask are kept for the backward pass; ``absgrad`` (the sum
    over pixels of the absolute per-pixel screen-mean gradients, gsplat's) falls out of it.
    Returns (colour [B, P, D] relative to T0, transmittance after [B, P] relative to T0, done [B, P])."""

    @staticmethod
    def forward(ctx, xy, conic, opac, color, pix, T0, done0, ids, absgrad_buf):  # type: ignore[override]
        out, T, done, alpha, trans, free = _composite(xy, conic, opac, color, pix, T0, done0, any(ctx.needs_input_grad[:4]))
        ctx.save_for_backward(xy, conic, opac, color, pix, alpha, trans, free)
        ctx.ids, ctx.absgrad_buf = ids, absgrad_buf
        ctx.mark_non_differentiable(done)
        return out, T, done

    @staticmethod
    def backward(ctx, g_out, g_T, _g_done):  # type: ignore[override]
        xy, conic, opac, color, pix, alpha, trans, free = ctx.saved_tensors
        one_minus = 1.0 - alpha
        before = trans / one_minus
        weights = alpha * before
        g_out = g_out.contiguous()
        g_color = torch.bmm(weights.transpose(1, 2), g_out)  # [B, K, D]
        G = torch.bmm(g_out, color.transpose(1, 2))  # [B, P, K]
        wG = weights * G
        later = torch.cumsum(wG, dim=-1)
        later = later[..., -1:] - later  # sum over j > k of w_j G_j
        if g_T is not None:
            later = later + (g_T * trans[..., -1])[..., None]
        g_alpha = before * G - later / one_minus
        g_raw = torch.where(free, g_alpha, 0.0) * alpha  # d alpha = alpha (d log opacity - d sigma)
        g_opac = g_raw.sum(1) / opac.clamp_min(1e-30)  # opacities under 1/255 keep nothing: their sum is 0
        g_sigma = -g_raw
        x, y = xy[..., 0].contiguous(), xy[..., 1].contiguous()
        px, py = pix[..., 0].contiguous(), pix[..., 1].contiguous()
        dx, dy = x[:, None, :] - px[:, :, None], y[:, None, :] - py[:, :, None]
        a = conic[..., 0].contiguous()[:, None, :]
        b = conic[..., 1].contiguous()[:, None, :]
        c = conic[..., 2].contiguous()[:, None, :]
        g_dx = g_sigma * (a * dx + b * dy)
        g_dy = g_sigma * (b * dx + c * dy)
        g_sdx = g_sigma * dx
        g_conic = torch.stack([0.5 * (g_sdx * dx).sum(1), (g_sdx * dy).sum(1), 0.5 * (g_sigma * dy * dy).sum(1)], -1)
        g_xy = torch.stack([g_dx.sum(1), g_dy.sum(1)], -1)
        if ctx.absgrad_buf is not None:
            absgrad = torch.stack([g_dx.abs().sum(1), g_dy.abs().sum(1)], -1)  # [B, K, 2]
            ctx.absgrad_buf.index_add_(0, ctx.ids.reshape(-1), absgrad.reshape(-1, 2).to(ctx.absgrad_buf.dtype))
        return g_xy, g_conic, g_opac, g_color, None, None, None, None, None


def _blend(
    xy: Tensor,  # [B, K, 2]
    conic: Tensor,  # [B, K, 3]
    opac: Tensor,  # [B, K] (0 for padding)
    color: Tensor,  # [B, K, D]
    pix: Tensor,  # [B, P, 2] pixel centres
    T0: Optional[Tensor] = None,  # [B, P] transmittance before these Gaussians (None: 1)
    done0: Optional[Tensor] = None,  # [B, P] bool: the pixel stopped in an earlier chunk
    ids: Optional[Tensor] = None,  # [B, K] rows of the absgrad buffer
    absgrad_buf: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Front-to-back compositing of depth-sorted Gaussians over a batch of tiles (:class:`_Composite`).

    Returns (colour added to each pixel [B, P, D], transmittance after [B, P], done [B, P]).
    Written for the CPU: every [B, P, K] operand is contiguous or broadcast along one axis (strided
    views and reductions over the last axis cost several times more there)."""
    T0_const = T0.detach() if T0 is not None else None
    if torch.is_grad_enabled() and any(t.requires_grad for t in (xy, conic, opac, color)):
        out, T, done = _Composite.apply(xy, conic, opac, color, pix, T0_const, done0, ids, absgrad_buf)
    else:  # a render: no autograd.Function, nothing kept
        out, T, done = _composite(xy, conic, opac, color, pix, T0_const, done0, False)[:3]
    if T0 is not None:
        out = out * T0[..., None]
        T = T * T0
    return out, T, done


def _batches(lengths: Tensor, per_tile: int, budget: int) -> List[Tuple[int, int, int]]:
    """Greedy batches (start, stop, K) over tiles sorted by descending ``lengths`` such that
    stop-start tiles x K Gaussians x per_tile pixels stays within ``budget`` (one tile at least)."""
    out = []
    lengths_list = lengths.tolist()
    i, n = 0, len(lengths_list)
    while i < n:
        k = max(int(lengths_list[i]), 1)
        b = max(1, budget // (per_tile * k))
        out.append((i, min(n, i + b), k))
        i += b
    return out


def composite_tiles(
    xy: Tensor,  # [M, 2] screen means of the visible (camera, Gaussian) entries
    conic: Tensor,  # [M, 3]
    opac: Tensor,  # [M]
    color: Tensor,  # [M, D]
    depth: Tensor,  # [M]
    radius: Tensor,  # [M] int, > 0
    cam: Tensor,  # [M] camera of each entry
    n_cameras: int,
    width: int,
    height: int,
    tile_size: int = 16,
    pair_budget: int = 2**20,
    checkpoint_pairs: Optional[int] = 2**25,
    round_size: int = 256,
    absgrad_rows: Optional[Tensor] = None,  # [M] row of each entry in absgrad_buf
    absgrad_buf: Optional[Tensor] = None,  # [R + 1, 2]; row R takes the padding
) -> Tuple[Tensor, Tensor, Dict[str, Tensor]]:
    """Bin entries to tiles, sort each tile by depth, composite front to back.

    Returns (colours [C, H, W, D] without background, transmittance [C, H, W], binning info)."""
    device, dtype = xy.device, xy.dtype
    M, D = color.shape[0], color.shape[1]
    ts = tile_size
    tw, th = math.ceil(width / ts), math.ceil(height / ts)
    n_tiles = n_cameras * th * tw
    P = ts * ts

    # --- tile intersections (gsplat's isect_tiles rule) ---------------------------------------
    with torch.no_grad():
        txy = xy.detach() / ts
        tr = radius.to(dtype) / ts
        x0 = torch.floor(txy[:, 0] - tr).clamp(0, tw).long()
        x1 = torch.ceil(txy[:, 0] + tr).clamp(0, tw).long()
        y0 = torch.floor(txy[:, 1] - tr).clamp(0, th).long()
        y1 = torch.ceil(txy[:, 1] + tr).clamp(0, th).long()
        tiles_per = (x1 - x0) * (y1 - y0) * (radius > 0)
        entry = torch.repeat_interleave(torch.arange(M, device=device), tiles_per)
        first = torch.cumsum(tiles_per, 0) - tiles_per
        local = torch.arange(entry.numel(), device=device) - first[entry]
        span = (x1 - x0)[entry]
        tile_x = x0[entry] + local % span
        tile_y = y0[entry] + torch.div(local, span, rounding_mode="floor")
        tile_key = cam.long()[entry] * (th * tw) + tile_y * tw + tile_x
        # sort by (tile, depth, entry): the depth rank breaks ties by entry order like a stable sort
        depth_rank = torch.empty(M, dtype=torch.long, device=device)
        depth_rank[torch.sort(depth.detach(), stable=True).indices] = torch.arange(M, device=device)
        order = torch.sort(tile_key * max(M, 1) + depth_rank[entry]).indices
        flat_entry = entry[order]  # [n_isects] entries, tile-major and depth-sorted
        flat_tile = tile_key[order]
        counts_all = torch.bincount(flat_tile, minlength=n_tiles)
        offsets_all = torch.cumsum(counts_all, 0) - counts_all
        tiles = torch.nonzero(counts_all).squeeze(1)  # non-empty tiles
        counts = counts_all[tiles]
        starts = offsets_all[tiles]
        info = {
            "tiles_per_gauss": tiles_per,
            "flat_entry": flat_entry,
            "flat_tile": flat_tile,
            "isect_offsets": offsets_all.reshape(n_cameras, th, tw),
            "tile_width": tw,
            "tile_height": th,
        }

        # pixel centres of each tile
        ly, lx = torch.meshgrid(torch.arange(ts, device=device), torch.arange(ts, device=device), indexing="ij")
        local_pix = torch.stack([lx.reshape(-1), ly.reshape(-1)], -1).to(dtype) + 0.5  # [P, 2]
        tile_in_cam = tiles % (th * tw)
        origin = torch.stack([(tile_in_cam % tw) * ts, torch.div(tile_in_cam, tw, rounding_mode="floor") * ts], -1)
        pix_int = origin[:, None, :] + local_pix.long()  # [n_ne, P, 2] (floor of the centres)
        outside = (pix_int[..., 0] >= width) | (pix_int[..., 1] >= height)  # never keeps a tile going

    n_ne = tiles.numel()
    acc = torch.zeros((n_ne, P, D), dtype=dtype, device=device)
    T = torch.ones((n_ne, P), dtype=dtype, device=device)
    done = torch.zeros((n_ne, P), dtype=torch.bool, device=device)

    # Gaussians per tile per round: between rounds, tiles whose pixels have all stopped drop out
    chunk = max(1, min(round_size, pair_budget // P))
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (xy, conic, opac, color))
    total_pairs = int(counts.sum()) * P
    use_checkpoint = needs_grad and checkpoint_pairs is not None and total_pairs > checkpoint_pairs
    pad_row = M  # entry index of the padding row
    xy_p = torch.cat([xy, xy.new_zeros(1, 2)])
    conic_p = torch.cat([conic, conic.new_zeros(1, 3)])
    opac_p = torch.cat([opac, opac.new_zeros(1)])
    color_p = torch.cat([color, color.new_zeros(1, D)])
    if absgrad_buf is not None:
        assert absgrad_rows is not None
        rows_p = torch.cat([absgrad_rows.long(), absgrad_rows.new_full((1,), absgrad_buf.shape[0] - 1).long()])

    n_rounds = int((counts.max() + chunk - 1) // chunk) if n_ne else 0
    for r in range(n_rounds):
        with torch.no_grad():
            remaining = counts - r * chunk
            # a tile whose pixels have all stopped is finished (gsplat's block-level early exit)
            active = torch.nonzero((remaining > 0) & ~(done | outside).all(dim=1)).squeeze(1)
            if active.numel() == 0:
                break
            lengths = remaining[active].clamp_max(chunk)
            sort = torch.sort(lengths, descending=True, stable=True)
            active, lengths = active[sort.indices], sort.values
        outs, Ts, dones = [], [], []
        for b0, b1, k in _batches(lengths, P, pair_budget):
            with torch.no_grad():
                t_ids = active[b0:b1]
                ar = torch.arange(k, device=device)
                pos = starts[t_ids, None] + r * chunk + ar  # [B, k]
                valid = ar < lengths[b0:b1, None]
                ent = torch.where(valid, flat_entry[pos.clamp_max(flat_entry.numel() - 1)], pad_row)
                pix = origin[t_ids, None, :].to(dtype) + local_pix  # [B, P, 2]
            first_round = r == 0
            args = [xy_p[ent], conic_p[ent], opac_p[ent], color_p[ent], pix,
                    None if first_round else T[t_ids], None if first_round else done[t_ids]]
            # the absgrad buffer is written in place by the backward pass: a closure, not an input
            # that a checkpoint would save and check
            blend = functools.partial(_blend, ids=rows_p[ent], absgrad_buf=absgrad_buf) if absgrad_buf is not None else _blend
            if use_checkpoint:
                from torch.utils.checkpoint import checkpoint

                out, t_new, d_new = checkpoint(blend, *args, use_reentrant=False)
            else:
                out, t_new, d_new = blend(*args)
            outs.append(out if first_round else acc[t_ids] + out)
            Ts.append(t_new)
            dones.append(d_new)
        idx = active
        acc = acc.index_copy(0, idx, torch.cat(outs))
        T = T.index_copy(0, idx, torch.cat(Ts))
        done = done.index_copy(0, idx, torch.cat(dones))

    # --- tiles back to images ------------------------------------------------------------------
    full = torch.zeros((n_tiles, P, D), dtype=dtype, device=device).index_copy(0, tiles, acc)
    full_T = torch.ones((n_tiles, P), dtype=dtype, device=device).index_copy(0, tiles, T)
    image = full.reshape(n_cameras, th, tw, ts, ts, D).permute(0, 1, 3, 2, 4, 5).reshape(n_cameras, th * ts, tw * ts, D)
    image_T = full_T.reshape(n_cameras, th, tw, ts, ts).permute(0, 1, 3, 2, 4).reshape(n_cameras, th * ts, tw * ts)
    return image[:, :height, :width], image_T[:, :height, :width], info


def rasterization(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [(C,) N, D] or [(C,) N, K, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    packed: bool = True,
    tile_size: int = 16,
    backgrounds: Optional[Tensor] = None,
    render_mode: str = "RGB",
    sparse_grad: bool = False,
    absgrad: bool = False,
    rasterize_mode: str = "classic",
    channel_chunk: int = 32,
    distributed: bool = False,
    camera_model: str = "pinhole",
    covars: Optional[Tensor] = None,
    *,
    pair_budget: int = 2**20,
    checkpoint_pairs: Optional[int] = 2**25,
    round_size: int = 256,
) -> Tuple[Tensor, Tensor, Dict[str, Any]]:
    """``gsplat.rendering.rasterization`` in pure torch (see the module docstring).

    Same arguments and returns: (render_colors [C, H, W, ch], render_alphas [C, H, W, 1], meta).
    ``channel_chunk`` is accepted and unused (all channels are composited together).
    Not supported: ``sparse_grad``, ``distributed``, camera models other than ``pinhole``.
    Extra keyword-only knobs: ``pair_budget`` ((pixel, Gaussian) pairs per batch of tiles),
    ``checkpoint_pairs`` (recompute batches in the backward pass above this many pairs per frame;
    None: never) and ``round_size`` (Gaussians per tile per round; a tile whose pixels have all
    stopped is not visited again)."""
    if sparse_grad:
        raise NotImplementedError("nerfconvert's CPU rasterizer has no sparse gradients (sparse_grad=True)")
    if distributed:
        raise NotImplementedError("nerfconvert's CPU rasterizer does not render distributed")
    if camera_model != "pinhole":
        raise NotImplementedError(f"nerfconvert's CPU rasterizer supports the pinhole camera model only, not {camera_model!r}")
    if render_mode not in ("RGB", "D", "ED", "RGB+D", "RGB+ED"):
        raise ValueError(f"unknown render_mode {render_mode!r}")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"unknown rasterize_mode {rasterize_mode!r}")
    quat_scale_to_covar, fully_fused_projection, spherical_harmonics = _gsplat_torch_impl()

    N = means.shape[0]
    C = viewmats.shape[0]
    device = means.device
    assert means.shape == (N, 3), means.shape
    assert opacities.shape == (N,), opacities.shape
    assert viewmats.shape == (C, 4, 4), viewmats.shape
    assert Ks.shape == (C, 3, 3), Ks.shape
    if sh_degree is None:
        assert (colors.dim() == 2 and colors.shape[0] == N) or (colors.dim() == 3 and colors.shape[:2] == (C, N)), colors.shape
    else:
        assert (colors.dim() == 3 and colors.shape[0] == N and colors.shape[2] == 3) or (
            colors.dim() == 4 and colors.shape[:2] == (C, N) and colors.shape[3] == 3
        ), colors.shape
        assert (sh_degree + 1) ** 2 <= colors.shape[-2], colors.shape
    Ks = Ks.to(device=device, dtype=means.dtype)
    viewmats = viewmats.to(device=device, dtype=means.dtype)

    # --- projection (gsplat's torch reference) ------------------------------------------------
    if covars is None:
        assert quats.shape == (N, 4) and scales.shape == (N, 3), (quats.shape, scales.shape)
        covars, _ = quat_scale_to_covar(quats, scales, compute_covar=True, compute_preci=False, triu=False)
    elif covars.shape == (N, 6):  # upper triangle
        a, b, c, d, e, f = covars.unbind(-1)
        covars = torch.stack([a, b, c, b, d, e, c, e, f], -1).reshape(N, 3, 3)
    radii, means2d, depths, conics, compensations = fully_fused_projection(
        means, covars, viewmats, Ks, width, height, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
        calc_compensations=(rasterize_mode == "antialiased"), camera_model=camera_model,
    )
    if radius_clip > 0:
        radii = torch.where(radii <= radius_clip, torch.zeros_like(radii), radii)
    opacities_c = opacities.repeat(C, 1)  # [C, N]
    if compensations is not None:
        opacities_c = opacities_c * compensations

    cam_ids, gs_ids = torch.where(radii > 0)  # the visible entries, camera-major (gsplat's packed order)
    if packed:
        means2d_meta = means2d[cam_ids, gs_ids]  # [nnz, 2]
        meta: Dict[str, Any] = {
            "camera_ids": cam_ids, "gaussian_ids": gs_ids, "radii": radii[cam_ids, gs_ids],
            "means2d": means2d_meta, "depths": depths[cam_ids, gs_ids], "conics": conics[cam_ids, gs_ids],
            "opacities": opacities_c[cam_ids, gs_ids],
        }
        rows = torch.arange(cam_ids.numel(), device=device)
        xy = means2d_meta
    else:
        meta = {
            "camera_ids": None, "gaussian_ids": None, "radii": radii, "means2d": means2d, "depths": depths,
            "conics": conics, "opacities": opacities_c,
        }
        rows = cam_ids * N + gs_ids
        xy = means2d.reshape(-1, 2)[rows]
    conic_e = conics[cam_ids, gs_ids]
    opac_e = opacities_c[cam_ids, gs_ids]
    depth_e = depths[cam_ids, gs_ids]
    radius_e = radii[cam_ids, gs_ids]

    # --- colours of the visible entries -------------------------------------------------------
    if sh_degree is None:
        color_e = colors[gs_ids] if colors.dim() == 2 else colors[cam_ids, gs_ids]
    else:
        campos = torch.inverse(viewmats)[:, :3, 3]  # [C, 3]
        dirs = means[gs_ids] - campos[cam_ids]
        shs = colors[gs_ids] if colors.dim() == 3 else colors[cam_ids, gs_ids]
        color_e = torch.clamp_min(spherical_harmonics(sh_degree, dirs, shs) + 0.5, 0.0)
    if render_mode in ("RGB+D", "RGB+ED"):
        color_e = torch.cat([color_e, depth_e[:, None]], -1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], -1)
    elif render_mode in ("D", "ED"):
        color_e = depth_e[:, None]
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(C, 1)

    absgrad_buf = None
    if absgrad:
        n_rows = means2d_meta.shape[0] if packed else C * N
        absgrad_buf = torch.zeros((n_rows + 1, 2), dtype=means2d.dtype, device=device)

    image, image_T, info = composite_tiles(
        xy, conic_e, opac_e, color_e.to(xy.dtype), depth_e, radius_e, cam_ids, C, width, height,
        tile_size=tile_size, pair_budget=pair_budget, checkpoint_pairs=checkpoint_pairs, round_size=round_size,
        absgrad_rows=rows if absgrad else None, absgrad_buf=absgrad_buf,
    )
    render_alphas = (1.0 - image_T)[..., None]
    render_colors = image
    if backgrounds is not None:
        render_colors = render_colors + image_T[..., None] * backgrounds[:, None, None, :].to(image.dtype)
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], dim=-1
        )

    if absgrad:
        # filled in by the backward pass, like gsplat's (it sets the attribute there)
        meta["means2d"].absgrad = absgrad_buf[:-1].reshape(meta["means2d"].shape)

    # gsplat's binning outputs, in its layout
    with torch.no_grad():
        if packed:
            tiles_per_gauss = info["tiles_per_gauss"].int()
        else:
            tiles_per_gauss = torch.zeros(C * N, dtype=torch.int32, device=device)
            tiles_per_gauss[rows] = info["tiles_per_gauss"].int()
            tiles_per_gauss = tiles_per_gauss.reshape(C, N)
        flat_entry, flat_tile = info["flat_entry"], info["flat_tile"]
        tile_n_bits = (info["tile_width"] * info["tile_height"]).bit_length()
        depth_bits = depth_e.detach().float().view(torch.int32).long()[flat_entry]
        tiles_per_cam = info["tile_width"] * info["tile_height"]
        isect_ids = (
            (torch.div(flat_tile, tiles_per_cam, rounding_mode="floor") << (32 + tile_n_bits))
            | ((flat_tile % tiles_per_cam) << 32)
            | depth_bits
        )
    meta.update(
        {
            "tile_width": info["tile_width"],
            "tile_height": info["tile_height"],
            "tiles_per_gauss": tiles_per_gauss,
            "isect_ids": isect_ids,
            "flatten_ids": rows[flat_entry].int(),
            "isect_offsets": info["isect_offsets"].int(),
            "width": width,
            "height": height,
            "tile_size": tile_size,
            "n_cameras": C,
        }
    )
    return render_colors, render_alphas, meta
