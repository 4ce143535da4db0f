"""The pure-torch Gaussian rasterizer (nerfconvert/splat/raster.py) and the shim that sends
splatfacto to it on the CPU (nerfconvert/splat/shim.py).

* agreement with a brute-force renderer written here (every Gaussian for every pixel, sorted by
  depth, composited one at a time with gsplat's rules) on small random scenes;
* gradcheck in float64, and ``absgrad`` against per-pixel gradients;
* gsplat's CUDA rasterizer (where there is a GPU);
* a SplatfactoModel rendered and trained (with DefaultStrategy's densification) on the CPU, and a
  stock ``ns-train splatfacto`` run followed by ``ns-eval`` and ``ns-render`` (slow).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from processes import bin_

from nerfconvert.splat.raster import rasterization

# ------------------------------------------------------------------------------------------
# brute-force reference
# ------------------------------------------------------------------------------------------
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def ref_sh(degree, dirs, coeffs):
    """The 3DGS evaluation of real SH up to degree 3 (independent of gsplat's)."""
    d = dirs / dirs.norm(dim=-1, keepdim=True)
    x, y, z = d[..., 0:1], d[..., 1:2], d[..., 2:3]
    out = SH_C0 * coeffs[..., 0, :]
    if degree >= 1:
        out = out - SH_C1 * y * coeffs[..., 1, :] + SH_C1 * z * coeffs[..., 2, :] - SH_C1 * x * coeffs[..., 3, :]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out = (out + SH_C2[0] * xy * coeffs[..., 4, :] + SH_C2[1] * yz * coeffs[..., 5, :]
               + SH_C2[2] * (2 * zz - xx - yy) * coeffs[..., 6, :] + SH_C2[3] * xz * coeffs[..., 7, :]
               + SH_C2[4] * (xx - yy) * coeffs[..., 8, :])
    if degree >= 3:
        out = (out + SH_C3[0] * y * (3 * xx - yy) * coeffs[..., 9, :] + SH_C3[1] * xy * z * coeffs[..., 10, :]
               + SH_C3[2] * y * (4 * zz - xx - yy) * coeffs[..., 11, :]
               + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * coeffs[..., 12, :]
               + SH_C3[4] * x * (4 * zz - xx - yy) * coeffs[..., 13, :] + SH_C3[5] * z * (xx - yy) * coeffs[..., 14, :]
               + SH_C3[6] * x * (xx - 3 * yy) * coeffs[..., 15, :])
    return out


def ref_project(means, quats, scales, viewmat, K, W, H, eps2d=0.3, near=0.01, far=1e10):
    """EWA projection of one camera, with gsplat's frustum clamp of the Jacobian, 0.3 px blur,
    3-sigma radius and culling."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    R = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(-1, 3, 3)
    M = R * scales[:, None, :]
    cov = M @ M.transpose(1, 2)
    Rv, tv = viewmat[:3, :3], viewmat[:3, 3]
    mc = means @ Rv.T + tv
    covc = Rv @ cov @ Rv.T
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tx, ty, tz = mc.unbind(-1)
    tan_x, tan_y = 0.5 * W / fx, 0.5 * H / fy
    txc = tz * torch.clamp(tx / tz, min=-(cx / fx + 0.3 * tan_x), max=(W - cx) / fx + 0.3 * tan_x)
    tyc = tz * torch.clamp(ty / tz, min=-(cy / fy + 0.3 * tan_y), max=(H - cy) / fy + 0.3 * tan_y)
    zero = torch.zeros_like(tz)
    J = torch.stack([fx / tz, zero, -fx * txc / tz**2, zero, fy / tz, -fy * tyc / tz**2], -1).reshape(-1, 2, 3)
    cov2 = J @ covc @ J.transpose(1, 2)
    det0 = cov2[:, 0, 0] * cov2[:, 1, 1] - cov2[:, 0, 1] ** 2
    cov2 = cov2 + eps2d * torch.eye(2, dtype=means.dtype)
    det = cov2[:, 0, 0] * cov2[:, 1, 1] - cov2[:, 0, 1] ** 2
    comp = torch.sqrt(torch.clamp(det0 / det, min=0))
    conic = torch.stack([cov2[:, 1, 1] / det, -cov2[:, 0, 1] / det, cov2[:, 0, 0] / det], -1)
    mean2d = torch.stack([fx * tx / tz + cx, fy * ty / tz + cy], -1)
    b = (cov2[:, 0, 0] + cov2[:, 1, 1]) / 2
    radius = torch.ceil(3 * torch.sqrt(b + torch.sqrt(torch.clamp(b * b - det, min=0.01))))
    valid = (tz > near) & (tz < far)
    valid &= (mean2d[:, 0] + radius > 0) & (mean2d[:, 0] - radius < W) & (mean2d[:, 1] + radius > 0) & (mean2d[:, 1] - radius < H)
    radius = torch.where(valid, radius, torch.zeros_like(radius))
    return mean2d, conic, tz, radius, comp


@torch.no_grad()
def ref_render(means, quats, scales, opacities, colors, viewmats, Ks, W, H, *, sh_degree=None, render_mode="RGB",
               rasterize_mode="classic", backgrounds=None, tile_size=16):
    """Every Gaussian against every pixel of every camera; returns (colours, alphas, radii, pixels that stopped)."""
    renders, alphas, all_radii, stopped = [], [], [], 0
    for c in range(viewmats.shape[0]):
        mean2d, conic, depth, radius, comp = ref_project(means, quats, scales, viewmats[c], Ks[c], W, H)
        all_radii.append(radius)
        opac = opacities * comp if rasterize_mode == "antialiased" else opacities
        if sh_degree is None:
            col = colors if colors.dim() == 2 else colors[c]
        else:
            campos = torch.inverse(viewmats[c])[:3, 3]
            col = torch.clamp_min(ref_sh(sh_degree, means - campos, colors if colors.dim() == 3 else colors[c]) + 0.5, 0)
        if render_mode in ("RGB+D", "RGB+ED"):
            col = torch.cat([col, depth[:, None]], -1)
        elif render_mode in ("D", "ED"):
            col = depth[:, None]
        ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        px, py = xs.reshape(-1).to(means.dtype) + 0.5, ys.reshape(-1).to(means.dtype) + 0.5  # [HW]
        dx, dy = mean2d[None, :, 0] - px[:, None], mean2d[None, :, 1] - py[:, None]  # [HW, N]
        sigma = 0.5 * (conic[:, 0] * dx * dx + conic[:, 2] * dy * dy) + conic[:, 1] * dx * dy
        alpha = torch.clamp_max(opac[None] * torch.exp(-sigma), 0.999)
        # a Gaussian reaches the pixels of the tiles its radius overlaps (gsplat's binning)
        tr = radius / tile_size
        tx0 = torch.floor(mean2d[:, 0] / tile_size - tr)
        tx1 = torch.ceil(mean2d[:, 0] / tile_size + tr)
        ty0 = torch.floor(mean2d[:, 1] / tile_size - tr)
        ty1 = torch.ceil(mean2d[:, 1] / tile_size + tr)
        ptx, pty = (xs.reshape(-1) // tile_size)[:, None], (ys.reshape(-1) // tile_size)[:, None]
        in_tile = (ptx >= tx0) & (ptx < tx1) & (pty >= ty0) & (pty < ty1) & (radius > 0)
        alpha = torch.where(in_tile & (sigma >= 0) & (alpha >= 1 / 255), alpha, torch.zeros_like(alpha))
        T = torch.ones(H * W, dtype=means.dtype)
        acc = torch.zeros(H * W, col.shape[-1], dtype=means.dtype)
        done = torch.zeros(H * W, dtype=torch.bool)
        for g in torch.sort(depth, stable=True).indices.tolist():
            a = torch.where(done, torch.zeros_like(T), alpha[:, g])
            stop = (a > 0) & (T * (1 - a) <= 1e-4)
            done |= stop
            a = torch.where(stop, torch.zeros_like(a), a)
            acc += (a * T)[:, None] * col[g]
            T = T * (1 - a)
        stopped += int(done.sum())
        if backgrounds is not None:
            bg = backgrounds[c]
            if render_mode in ("RGB+D", "RGB+ED"):
                bg = torch.cat([bg, bg.new_zeros(1)])
            elif render_mode in ("D", "ED"):
                bg = bg.new_zeros(1)
            acc = acc + T[:, None] * bg
        alpha_img = (1 - T)[:, None]
        if render_mode in ("ED", "RGB+ED"):
            acc = torch.cat([acc[:, :-1], acc[:, -1:] / alpha_img.clamp(min=1e-10)], -1)
        renders.append(acc.reshape(H, W, -1))
        alphas.append(alpha_img.reshape(H, W, 1))
    return torch.stack(renders), torch.stack(alphas), torch.stack(all_radii), stopped


def look_at(eye, target=(0.0, 0.0, 0.0)):
    """A world-to-camera matrix (OpenCV: +z forward, +y down) looking from ``eye`` at ``target``."""
    eye, target = torch.tensor(eye, dtype=torch.float64), torch.tensor(target, dtype=torch.float64)
    f = (target - eye) / (target - eye).norm()
    r = torch.linalg.cross(f, torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))
    r = r / r.norm()
    d = torch.linalg.cross(f, r)
    R = torch.stack([r, d, f])  # rows: camera axes in world coordinates
    V = torch.eye(4, dtype=torch.float64)
    V[:3, :3] = R
    V[:3, 3] = -R @ eye
    return V


def make_scene(seed, n=60, sh_degree=None, dtype=torch.float64, W=40, H=28, cameras=2, opacity=(0.05, 0.99),
               scale=(0.03, 0.25), per_camera_colors=False):
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 2.0
    # culled by the first camera: behind it, outside its frustum, closer than the near plane
    means[:3] = torch.tensor([[0.3, -0.4, 6.0], [6.0, 0.0, 0.0], [0.3, -0.4, 3.995]])
    quats = torch.randn(n, 4, generator=g)
    scales = scale[0] + (scale[1] - scale[0]) * torch.rand(n, 3, generator=g)
    opacities = opacity[0] + (opacity[1] - opacity[0]) * torch.rand(n, generator=g)
    C = cameras
    if sh_degree is None:
        colors = torch.rand((C, n, 3) if per_camera_colors else (n, 3), generator=g)
    else:
        colors = 0.4 * torch.randn((C, n, 16, 3) if per_camera_colors else (n, 16, 3), generator=g)
    eyes = [(0.3, -0.4, 4.0), (-3.0, 1.0, 2.5), (2.0, 2.0, -3.0)][:C]
    viewmats = torch.stack([look_at(e) for e in eyes])
    Ks = torch.tensor([[1.1 * W, 0, W / 2 + 1.3], [0, 1.1 * W, H / 2 - 0.7], [0, 0, 1]], dtype=torch.float64).repeat(C, 1, 1)
    cast = [t.to(dtype) for t in (means, quats, scales, opacities, colors, viewmats, Ks)]
    return cast


CASES = {
    "rgb": dict(seed=0),
    "rgb-backgrounds-per-camera-colors": dict(seed=1, backgrounds=True, per_camera_colors=True),
    "sh1": dict(seed=2, sh_degree=1),
    "sh2-backgrounds": dict(seed=3, sh_degree=2, backgrounds=True),
    "sh3": dict(seed=4, sh_degree=3),
    "sh3-per-camera": dict(seed=5, sh_degree=3, per_camera_colors=True),
    "antialiased": dict(seed=6, rasterize_mode="antialiased", sh_degree=1),
    "rgb+ed": dict(seed=7, render_mode="RGB+ED", backgrounds=True),
    "rgb+d": dict(seed=8, render_mode="RGB+D"),
    "ed": dict(seed=9, render_mode="ED"),
    "d-backgrounds": dict(seed=10, render_mode="D", backgrounds=True),
    "dense-stops": dict(seed=11, n=150, opacity=(0.6, 0.99), scale=(0.1, 0.4), sh_degree=3, render_mode="RGB+ED"),
    "tile8-three-cameras": dict(seed=12, tile_size=8, cameras=3, n=80),
}


def _render_both(case, dtype=torch.float64, reference=True, **ours):
    case = dict(case)
    seed = case.pop("seed")
    sh_degree = case.pop("sh_degree", None)
    render_mode = case.pop("render_mode", "RGB")
    rasterize_mode = case.pop("rasterize_mode", "classic")
    tile_size = case.pop("tile_size", 16)
    want_bg = case.pop("backgrounds", False)
    means, quats, scales, opacities, colors, viewmats, Ks = make_scene(seed, sh_degree=sh_degree, dtype=dtype, **case)
    W, H, C = 40, 28, viewmats.shape[0]
    backgrounds = torch.rand(C, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype) if want_bg else None
    kwargs = dict(sh_degree=sh_degree, render_mode=render_mode, rasterize_mode=rasterize_mode, backgrounds=backgrounds, tile_size=tile_size)
    mine = rasterization(means, quats, scales, opacities, colors, viewmats, Ks, W, H, packed=False, **kwargs, **ours)
    if not reference:
        return mine, None
    d = torch.float64
    ref = ref_render(means.to(d), quats.to(d), scales.to(d), opacities.to(d), colors.to(d), viewmats.to(d), Ks.to(d), W, H,
                     **{k: (v.to(d) if torch.is_tensor(v) else v) for k, v in kwargs.items()})
    return mine, ref


@pytest.mark.parametrize("name", list(CASES))
def test_matches_brute_force(name):
    (colors, alphas, meta), (ref_colors, ref_alphas, ref_radii, stopped) = _render_both(CASES[name])
    assert colors.shape == ref_colors.shape and alphas.shape == ref_alphas.shape
    assert torch.equal(meta["radii"], ref_radii.int())
    assert (meta["radii"] > 0).any() and (meta["radii"] == 0).any()  # some Gaussians are culled
    assert ref_alphas.max() > 0.5  # the scenes are not empty
    torch.testing.assert_close(alphas, ref_alphas, atol=1e-4, rtol=0)
    torch.testing.assert_close(colors, ref_colors, atol=1e-4, rtol=0)
    if name == "dense-stops":
        assert stopped > 50  # early termination is exercised


def test_float32_matches_brute_force():
    (colors, alphas, _), (ref_colors, ref_alphas, _, _) = _render_both(CASES["sh3"], dtype=torch.float32)
    assert colors.dtype == torch.float32
    torch.testing.assert_close(alphas.double(), ref_alphas, atol=1e-4, rtol=0)
    torch.testing.assert_close(colors.double(), ref_colors, atol=1e-4, rtol=0)


def test_rounds_batches_and_packing_give_the_same_image():
    case = CASES["dense-stops"]
    (colors, alphas, meta), _ = _render_both(case, reference=False)
    # 32 Gaussians per tile per round, one tile per batch: the transmittance is carried across rounds
    (c2, a2, m2), _ = _render_both(case, reference=False, round_size=32, pair_budget=32 * 256)
    assert int(meta["isect_offsets"].diff(dim=-1).max()) > 3 * 32  # several rounds in some tiles
    torch.testing.assert_close(c2, colors, atol=1e-10, rtol=0)
    torch.testing.assert_close(a2, alphas, atol=1e-10, rtol=0)
    # the binning outputs have gsplat's layout
    C, N = meta["radii"].shape
    assert meta["isect_offsets"].shape == (C, meta["tile_height"], meta["tile_width"])
    assert int(meta["tiles_per_gauss"].sum()) == meta["flatten_ids"].numel() == meta["isect_ids"].numel()
    assert torch.all(meta["isect_ids"][1:] >= meta["isect_ids"][:-1])  # sorted by (camera, tile, depth)
    # packed: the same image, per-visible-entry meta
    seed = case["seed"]
    scene = make_scene(seed, n=case["n"], opacity=case["opacity"], scale=case["scale"], sh_degree=3)
    kw = dict(sh_degree=3, render_mode="RGB+ED")
    c3, a3, m3 = rasterization(*scene, 40, 28, packed=True, **kw)
    torch.testing.assert_close(c3, colors, atol=1e-10, rtol=0)
    nnz = int((meta["radii"] > 0).sum())
    assert m3["means2d"].shape == (nnz, 2) and m3["camera_ids"].shape == m3["gaussian_ids"].shape == (nnz,)
    torch.testing.assert_close(m3["means2d"], meta["means2d"][m3["camera_ids"], m3["gaussian_ids"]])


# ------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------
def _tiny(seed, sh=False):
    g = torch.Generator().manual_seed(seed)
    n = 4
    means = torch.tensor([[0.1, -0.1, 0.0], [-0.2, 0.15, 0.3], [0.25, 0.2, -0.2], [-0.1, -0.25, 0.1]], dtype=torch.float64)
    means = means + 0.05 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    # about 2 px wide: every pixel of the 8x8 image sees every Gaussian well above alpha = 1/255
    scales = 0.6 + 0.2 * torch.rand(n, 3, generator=g, dtype=torch.float64)
    opacities = 0.3 + 0.4 * torch.rand(n, generator=g, dtype=torch.float64)
    colors = (0.3 * torch.randn(n, 4, 3, generator=g, dtype=torch.float64) if sh
              else torch.rand(n, 3, generator=g, dtype=torch.float64))
    viewmats = look_at((0.2, -0.1, 3.0))[None]
    Ks = torch.tensor([[[10.0, 0, 4.2], [0, 10.0, 3.9], [0, 0, 1]]], dtype=torch.float64)
    return means, quats, scales, opacities, colors, viewmats, Ks


@pytest.mark.parametrize("sh,mode,extra", [
    (False, "classic", {}),
    (True, "antialiased", {}),
    (True, "classic", {"round_size": 2, "checkpoint_pairs": 0}),  # rounds + checkpointed batches
])
def test_gradcheck_float64(sh, mode, extra):
    means, quats, scales, opacities, colors, viewmats, Ks = _tiny(0, sh)
    bg = torch.tensor([[0.2, 0.5, 0.9]], dtype=torch.float64)

    def render(means, quats, scales, opacities, colors):
        out, alpha, _ = rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, 8, 8, tile_size=4, packed=False,
            sh_degree=1 if sh else None, rasterize_mode=mode, render_mode="RGB+ED", backgrounds=bg, **extra)
        return out, alpha

    inputs = tuple(t.clone().requires_grad_() for t in (means, quats, scales, opacities, colors))
    out, alpha = render(*inputs)
    assert alpha.min() > 0.05 and alpha.max() < 0.999  # every pixel sees Gaussians; none saturates
    # the checkpointed variant recomputes every batch per backward: gradcheck's fast mode there
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=bool(extra))


@pytest.mark.parametrize("extra", [{}, {"round_size": 1, "pair_budget": 1, "checkpoint_pairs": 0}])
def test_absgrad_is_the_sum_of_absolute_per_pixel_gradients(extra):
    means, quats, scales, opacities, colors, viewmats, Ks = _tiny(1)
    means.requires_grad_()
    W = H = 8
    render, _, meta = rasterization(means, quats, scales, opacities, colors, viewmats, Ks, W, H, tile_size=4,
                                    packed=False, absgrad=True, **extra)
    weights = torch.randn(render.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    means2d = meta["means2d"]
    means2d.retain_grad()
    expected_abs = torch.zeros_like(means2d)
    expected = torch.zeros_like(means2d)
    for y in range(H):
        for x in range(W):
            (g,) = torch.autograd.grad((render[0, y, x] * weights[0, y, x]).sum(), means2d, retain_graph=True)
            expected_abs += g.abs()
            expected += g
    # the per-pixel passes above ran the backward too (and retain_grad's hook fills .grad there)
    meta["means2d"].absgrad.zero_()
    means2d.grad = None
    (render * weights).sum().backward()
    torch.testing.assert_close(means2d.grad, expected)
    torch.testing.assert_close(means2d.absgrad, expected_abs)
    assert (means2d.absgrad > means2d.grad.abs() + 1e-9).any()  # signs do cancel in .grad


# ------------------------------------------------------------------------------------------
# gsplat's CUDA kernels
# ------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat's rasterizer needs CUDA")
@pytest.mark.parametrize("kw", [
    dict(sh_degree=3, render_mode="RGB+ED"),
    dict(sh_degree=None, rasterize_mode="antialiased", render_mode="RGB"),
    dict(sh_degree=1, render_mode="RGB", backgrounds=True),
])
def test_matches_gsplat_cuda(kw):
    from gsplat.rendering import rasterization as gsplat_rasterization

    kw = dict(kw)
    sh_degree = kw.get("sh_degree")
    scene = make_scene(21, n=400, sh_degree=sh_degree, dtype=torch.float32, W=96, H=64)
    if kw.pop("backgrounds", False):
        kw["backgrounds"] = torch.rand(2, 3)
    W, H = 96, 64
    cpu_in = [t.clone().requires_grad_(i < 5) for i, t in enumerate(scene)]
    gpu_in = [t.detach().cuda().requires_grad_(i < 5) for i, t in enumerate(scene)]
    gpu_kw = {k: (v.cuda() if torch.is_tensor(v) else v) for k, v in kw.items()}
    c1, a1, m1 = rasterization(*cpu_in, W, H, packed=False, absgrad=True, **kw)
    c2, a2, m2 = gsplat_rasterization(*gpu_in, W, H, packed=False, absgrad=True, **gpu_kw)
    c2, a2 = c2.cpu(), a2.cpu()
    assert (m1["radii"] != m2["radii"].cpu()).float().mean() < 1e-3
    for mine, theirs in ((c1, c2), (a1, a2)):
        diff = (mine - theirs).abs()
        if kw.get("render_mode") == "RGB+ED":
            diff = diff[..., :3]
        assert diff.max() < 2e-2 and (diff > 1e-4).float().mean() < 1e-3, (diff.max(), (diff > 1e-4).float().mean())
    weights = torch.rand(c1.shape)
    m1["means2d"].retain_grad()
    m2["means2d"].retain_grad()
    ((c1 * weights).sum() + a1.sum()).backward()
    ((c2.cuda() * weights.cuda()).sum() + a2.cuda().sum()).backward()
    pairs = [(a.grad, b.grad.cpu()) for a, b in zip(cpu_in[:5], gpu_in[:5])]
    pairs.append((m1["means2d"].absgrad, m2["means2d"].absgrad.cpu()))
    for mine, theirs in pairs:
        cos = torch.nn.functional.cosine_similarity(mine.flatten(), theirs.flatten(), dim=0)
        assert cos > 0.999 and abs(mine.norm() / theirs.norm() - 1) < 1e-2, (cos, mine.norm(), theirs.norm())


# ------------------------------------------------------------------------------------------
# splatfacto through the shim
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def splatfacto_module():
    from nerfconvert import compat

    compat.install()  # offline LPIPS; the CPU rasterizer shim
    import nerfstudio.models.splatfacto as sf

    return sf


def test_shim_dispatches_on_device_and_is_idempotent(splatfacto_module):
    import gsplat.rendering

    from nerfconvert.splat import shim

    sf = splatfacto_module
    patched = sf.rasterization
    assert patched.gsplat_rasterization is gsplat.rendering.rasterization
    shim.install_cpu_rasterizer()
    assert sf.rasterization is patched  # not wrapped twice
    assert not hasattr(sf.get_viewmat, "_torchdynamo_orig_callable")  # the eager one on the CPU
    c2w = torch.eye(4)[None, :3]
    assert torch.equal(sf.get_viewmat(c2w), sf.get_viewmat.__wrapped__(c2w))
    scene = make_scene(0, dtype=torch.float32)
    out, _, _ = sf.rasterization(*scene, 40, 28, packed=False)
    ref, _, _ = rasterization(*scene, 40, 28, packed=False)
    assert torch.equal(out, ref)
    # .cuda() is torch's own outside splatfacto's calls
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, AssertionError)):
            torch.zeros(1).cuda()


def _camera(eye, size=48, focal=50.0):
    from nerfstudio.cameras.cameras import Cameras, CameraType

    V = look_at(eye).float()
    c2w = torch.inverse(V)[:3]
    c2w[:, 1:3] *= -1  # OpenCV -> nerfstudio's OpenGL camera axes
    return Cameras(camera_to_worlds=c2w[None], fx=focal, fy=focal, cx=size / 2, cy=size / 2, width=size, height=size,
                   camera_type=CameraType.PERSPECTIVE, metadata={"cam_idx": 0})


def test_splatfacto_renders_and_trains_on_cpu_with_densification(splatfacto_module):
    from nerfstudio.data.scene_box import SceneBox
    from nerfstudio.engine.optimizers import AdamOptimizerConfig, Optimizers

    sf = splatfacto_module
    torch.manual_seed(0)
    pts = 0.5 * torch.randn(300, 3)
    rgb = torch.randint(0, 256, (300, 3)).float()  # seed points with colours (the `.cuda()` path)
    config = sf.SplatfactoModelConfig(
        sh_degree=1, sh_degree_interval=4, num_downscales=0, background_color="black",
        warmup_length=2, refine_every=3, densify_grad_thresh=1e-7, reset_alpha_every=100,
    )
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=1,
                         seed_points=(pts, rgb))
    if not torch.cuda.is_available():  # splatfacto's `.cuda()` kept the seed colours on the CPU
        assert model.features_dc.device.type == "cpu"
    model.to("cpu")  # as the pipeline does (where there is CUDA, populate_modules put them there)
    camera = _camera((0.3, -0.2, 3.0))

    model.eval()
    outputs = model.get_outputs_for_camera(camera)
    assert outputs["rgb"].shape == (48, 48, 3) and outputs["depth"].shape == (48, 48, 1)
    assert outputs["accumulation"].max() > 0.5 and torch.isfinite(outputs["depth"]).all()

    # a target: the same cloud, recoloured
    with torch.no_grad():
        target = model.get_outputs_for_camera(camera)["rgb"].flip(-1)
    model.train()
    optimizers = Optimizers(
        {k: {"optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": None} for k, lr in
         dict(means=1e-3, scales=5e-3, quats=1e-3, features_dc=2.5e-2, features_rest=1e-3, opacities=5e-2).items()},
        model.get_param_groups(),
    )
    losses, counts = [], []
    for step in range(10):
        model.step_cb(optimizers, step)
        outputs = model.get_outputs(camera)
        loss = sum(model.get_loss_dict(outputs, {"image": target}).values())
        optimizers.zero_grad_all()
        loss.backward()
        assert model.info["means2d"].absgrad.abs().sum() > 0
        optimizers.optimizer_step_all()
        model.step_post_backward(step)
        losses.append(loss.item())
        counts.append(model.num_points)
        state = model.strategy_state
        assert state["grad2d"].shape == state["count"].shape == (model.num_points,)
    # steps 0-5 only optimise; 6 and 9 refine (split, then prune: the loss jumps, as on a GPU)
    assert losses[5] < 0.8 * losses[0], losses
    assert counts[:6] == [300] * 6 and counts[6] != 300 and counts[9] != counts[8], counts
    assert all(math.isfinite(v) for v in losses)
    assert all(p.shape[0] == model.num_points for p in model.gauss_params.values())
    for name, opt in optimizers.optimizers.items():
        if name in model.gauss_params:
            (param,) = opt.param_groups[0]["params"]
            assert param is model.gauss_params[name] and opt.state[param]["exp_avg"].shape == param.shape


# ------------------------------------------------------------------------------------------
# stock ns-train / ns-eval / ns-render on the CPU
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def splatfacto_cpu_run(object_scene, tmp_path_factory):
    """config.yml of a stock ``ns-train splatfacto`` run on the CPU: 30 steps from 3000 random
    Gaussians in the unit cube (blender data has no points; a cloud that leaves the background
    visible around it), one refinement at step 20."""
    out = tmp_path_factory.mktemp("splatfacto_cpu")
    train = subprocess.run(
        [bin_("ns-train"), "splatfacto", "--machine.device-type", "cpu", "--max-num-iterations", "30",
         "--output-dir", str(out), "--experiment-name", "cpu", "--timestamp", "run", "--vis", "tensorboard",
         "--steps-per-save", "30", "--steps-per-eval-image", "1000000", "--steps-per-eval-all-images", "1000000",
         "--pipeline.model.num-random", "3000", "--pipeline.model.random-scale", "1.0",
         "--pipeline.model.warmup-length", "10", "--pipeline.model.refine-every", "10",
         "--pipeline.model.num-downscales", "0", "--logging.local-writer.enable", "False",
         "blender-data", "--data", str(object_scene)],
        capture_output=True, text=True, timeout=900,
    )
    assert train.returncode == 0, train.stdout[-3000:] + train.stderr[-3000:]
    config = out / "cpu" / "splatfacto" / "run" / "config.yml"
    assert config.exists() and list((config.parent / "nerfstudio_models").glob("*.ckpt"))
    return config


@pytest.mark.slow
def test_ns_train_eval_render_splatfacto_on_cpu(splatfacto_cpu_run, tmp_path):
    config = splatfacto_cpu_run
    metrics = tmp_path / "eval.json"
    evaluation = subprocess.run([bin_("ns-eval"), "--load-config", str(config), "--output-path", str(metrics)],
                                capture_output=True, text=True, timeout=600)
    assert evaluation.returncode == 0, evaluation.stdout[-3000:] + evaluation.stderr[-3000:]
    results = json.loads(metrics.read_text())["results"]
    assert np.isfinite(results["psnr"]) and np.isfinite(results["ssim"])  # 30 steps: a smoke test, not a fit

    frames = tmp_path / "frames"
    render = subprocess.run(
        [bin_("ns-render"), "dataset", "--load-config", str(config), "--output-path", str(frames), "--split", "test",
         "--rendered-output-names", "rgb", "depth"],
        capture_output=True, text=True, timeout=600,
    )
    assert render.returncode == 0, render.stdout[-3000:] + render.stderr[-3000:]
    import imageio.v3 as iio

    rgb = sorted((frames / "test" / "rgb").glob("*"))
    assert len(rgb) == 2 and len(list((frames / "test" / "depth").glob("*"))) == 2
    assert float(np.asarray(iio.imread(rgb[0]), dtype=np.float64).std()) > 1.0


@pytest.mark.slow
def test_a_splatfacto_run_fine_tuned_from_its_checkpoint_trains_the_loaded_gaussians(splatfacto_cpu_run, tmp_path):
    """Stock nerfstudio's trainer builds its optimizers before it loads a checkpoint, and splatfacto's
    loading replaced every Gaussian tensor: without nerfconvert.compat's patch 4 (the loaded values go
    into the model's own Parameters) the loaded Gaussians stayed frozen until the next densification. Resumed with --load-dir, they move at the first step,
    each optimizer holds the model's own tensors and the loaded Adam state."""
    import yaml
    from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

    import nerfconvert.compat as compat

    compat.install()
    config = yaml.load(splatfacto_cpu_run.read_text(), Loader=yaml.Loader)
    config.load_dir = splatfacto_cpu_run.parent / "nerfstudio_models"
    config.output_dir, config.timestamp = tmp_path, "resumed"
    config.max_num_iterations = 2
    config.steps_per_save = 10**9
    config.pipeline.model.refine_every = 1000  # no densification: only the optimizers can move the Gaussians
    saved = torch.load(next(config.load_dir.glob("*.ckpt")), map_location="cpu", weights_only=False)
    loaded_means = saved["pipeline"]["_model.gauss_params.means"]
    trainer = config.setup(local_rank=0, world_size=1)
    with compat.own_event_writers():
        trainer.setup()
        model = trainer.pipeline.model
        assert model.num_points == loaded_means.shape[0] != config.pipeline.model.num_random
        for name, opt in trainer.optimizers.optimizers.items():
            if name in model.gauss_params:
                (param,) = opt.param_groups[0]["params"]
                assert param is model.gauss_params[name], name
                assert opt.state[param]["exp_avg"].shape == param.shape, name  # the checkpoint's Adam state
        moved = []
        trainer.callbacks.append(TrainingCallback(
            [TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
            lambda step: moved.append(float((model.means.detach() - loaded_means).abs().max())),
        ))
        trainer.train()
    assert moved and moved[0] > 0, moved


@pytest.mark.slow
def test_ns_viewer_renders_splatfacto_on_cpu(splatfacto_cpu_run, tmp_path):
    """Stock ``ns-viewer`` on the run, its frame read back in headless Chromium (tests/viewer's harness)."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "viewer"))
    harness = pytest.importorskip("browser_harness")
    if harness.missing:
        pytest.skip(f"{' and '.join(harness.missing)} not installed (apt-get install -y chromium chromium-driver)")
    port = harness.free_port()
    process = harness.ViewerProcess(
        [bin_("ns-viewer"), "--load-config", str(splatfacto_cpu_run), "--viewer.websocket-port", str(port),
         "--viewer.websocket-host", "127.0.0.1", "--viewer.max-num-display-images", "0"],
        tmp_path / "viewer.log",
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        process.wait_for_page(url, 300)
        with harness.chromium() as driver:
            page = harness.Page(driver, url)
            harness.prepare_view(page, process, 10, 300)
            frame = harness.render_screenshot(page, process, "splatfacto_cpu")
            harness.check_not_blank(frame)
        assert "Traceback" not in process.log_tail()
    finally:
        process.stop()
