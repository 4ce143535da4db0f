"""View of the Gaussian-splat family: nerfstudio's ``splatfacto`` (3D Gaussians, rasterised by gsplat).

A splat scene has no two-level field to query along rays: it renders whole cameras. So the view
offers camera rendering only (``point_queries = False``), and pvd-al distils to and from it on
images of pseudo cameras (``trains_on_images``): the teacher renders a pseudo view, the student
is trained on it with its own loss. On CUDA the rasteriser is gsplat's; on the CPU,
``nerfconvert.splat`` (installed by ``nerfconvert.compat``).

A splat student does not start from random points. ``initialise_student`` places Gaussians where a
point-query teacher's ray weights put mass along pseudo-camera rays (drawn in proportion to the
weights), with opacity from the teacher's density over the Gaussian's extent, scale from the
spacing of neighbours, and SH colour fitted by least squares to the teacher's colour over several
view directions; a teacher without point queries seeds them from its rendered depth and colour.
That pass renders random pixels of the pseudo cameras, as many as the teacher's measured speed
allows in a time budget (``ViewOptions.init_seconds``): every pixel of a nerfacto teacher takes
tens of minutes on a CPU.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.models.base_model import Model
from nerfstudio.utils.rich_utils import CONSOLE

from nerfconvert import NerfconvertError
from nerfconvert.progress import with_progress
from nerfconvert.views.base import Decoded, FieldView, ViewOptions, pinhole_camera

SPLATFACTO_RUN_LENGTH = 30000
"""splatfacto's own run length: its step-counted options are fractions of it."""
MIN_REFINE_EVERY = 20
"""Fewest steps whose view-space gradients a densification step looks at."""
STEP_OPTIONS = ("warmup_length", "refine_every", "stop_split_at", "stop_screen_size_at", "resolution_schedule")
"""splatfacto options counted in steps, refitted to a distillation's length."""


def _no_point_queries(what: str):
    raise NerfconvertError(
        f"A Gaussian-splat scene has no point queries ({what}): it renders cameras. Methods ask "
        "view.has('point_queries') first and distil splats on images."
    )


class SplatView(FieldView):
    """Camera rendering of a ``SplatfactoModel``; its parameters are the Gaussians."""

    family = "gaussians"
    model_names = ("SplatfactoModel",)
    point_queries = False
    volume_features = False
    trains_on_images = True
    student_method = "splatfacto"
    student_description = "splatfacto student (3D Gaussians), as ns-train splatfacto builds it; initialised from the teacher."
    models_background = True  # Gaussians may sit anywhere, the background included

    def __init__(self, model: Model) -> None:
        super().__init__(model)
        if not hasattr(model, "gauss_params"):
            raise TypeError(f"SplatView needs a splatfacto model (with gauss_params), got {type(model).__name__}")
        if model.gauss_params["means"].shape[0] == 0:
            raise NerfconvertError(
                "This splatfacto run has no Gaussians (all were pruned, or its checkpoint is empty): there is "
                "no scene to convert. Use a checkpoint from before they were lost, or retrain it."
            )

    # ---- what a splat scene does not have -------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return 0

    def phi1(self, positions: Tensor, directions: Tensor) -> Tensor:
        _no_point_queries("phi1")

    def phi2(self, features: Tensor, directions: Tensor) -> Decoded:
        _no_point_queries("phi2")

    def sample(self, ray_bundle: RayBundle) -> RaySamples:
        _no_point_queries("a ray sampler")

    def phi1_parameters(self) -> list[nn.Parameter]:
        return list(self.model.gauss_params.values())

    def phi2_parameters(self) -> list[nn.Parameter]:
        return []

    def density_activation(self) -> Tuple[str, float]:
        return "identity", 1.0

    # ---- camera rendering ---------------------------------------------------------------------
    def render_camera(self, camera: Cameras) -> Dict[str, Tensor]:
        return self.model.get_outputs_for_camera(pinhole_camera(camera).to(self.device))

    def render_ray_bundle(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        _no_point_queries("ray bundles")

    def set_render_background(self, rgb: Tensor) -> None:
        self.model.set_background(rgb.to(self.device))

    def background_color(self) -> Optional[Tensor]:
        bg = self.model.config.background_color
        return None if bg == "random" else self.model.background_color.detach().float().cpu()

    @property
    def unbounded(self) -> bool:
        return True  # Gaussians are placed wherever the teacher has matter, past any box

    @property
    def num_gaussians(self) -> int:
        return int(self.model.means.shape[0])

    # ---- as a student ---------------------------------------------------------------------------
    @classmethod
    def student_model_config(cls, unbounded: bool = False):
        config = super().student_model_config(unbounded)
        # initialised with every SH degree fitted to the teacher: render them from the first step
        config.sh_degree_interval = 1
        # Gaussians start at the teacher's opacity: splatfacto's 0.1 pruning threshold (tuned for
        # random points) would remove the semi-transparent matter a teacher has; its docs suggest 0.005
        config.cull_alpha_thresh = 0.005
        return config

    @classmethod
    def adopt_teacher(cls, model_config, teacher: FieldView, options: Optional[ViewOptions] = None) -> None:
        # the teacher's pseudo views carry its background: the student composites onto the same one
        bg = teacher.background_color()
        if bg is not None and hasattr(model_config, "background_color"):
            model_config.background_color = "white" if float(bg.mean()) > 0.5 else "black"

    @classmethod
    def fit_to_run(cls, model_config, total_steps: int) -> None:
        """splatfacto's step-counted options (warm-up, densification, resolution schedule) as the same
        fractions of a run of ``total_steps`` as of splatfacto's own 30k steps. Densification keeps
        accumulating gradients over at least ``MIN_REFINE_EVERY`` steps, and a student that starts
        from its teacher neither warms up at a lower resolution nor has its opacities reset."""
        scale = total_steps / SPLATFACTO_RUN_LENGTH
        defaults = type(model_config)()
        for name in STEP_OPTIONS:
            if hasattr(model_config, name) and getattr(model_config, name) == getattr(defaults, name):
                setattr(model_config, name, max(1, int(round(getattr(defaults, name) * scale))))
        if model_config.refine_every == max(1, int(round(defaults.refine_every * scale))):
            model_config.refine_every = max(model_config.refine_every, MIN_REFINE_EVERY)
            model_config.warmup_length = max(model_config.warmup_length, model_config.refine_every)
        if model_config.num_downscales == defaults.num_downscales:
            model_config.num_downscales = 0  # the teacher's pseudo views are sharp from the first step
        if model_config.reset_alpha_every == defaults.reset_alpha_every:
            # opacity resets re-learn opacity from images over thousands of steps; ours come from the teacher
            model_config.reset_alpha_every = total_steps // max(1, model_config.refine_every) + 2

    @classmethod
    def render_depth_in_training(cls, model_config) -> None:
        model_config.output_depth_during_training = True  # splatfacto renders RGB only while training otherwise

    @classmethod
    def teacher_init(cls, teacher: FieldView, cameras: Cameras, options: ViewOptions) -> Optional[Dict[str, Tensor]]:
        return teacher_gaussians(teacher, cameras, options.init_points, seconds=options.init_seconds)

    @classmethod
    def setup_kwargs(cls, init: Optional[Dict[str, Tensor]]) -> Dict:
        """splatfacto's ``seed_points`` (positions, 0-255 colours), as a dataparser's point cloud would give."""
        if init is None:
            return {}
        return {"seed_points": (init["means"], (init["rgb"] * 255).clamp(0, 255))}

    def initialise_student(self, init: Optional[Dict[str, Tensor]]) -> None:
        """Overwrite splatfacto's seed-point defaults (scale from neighbours, opacity 0.1, DC colour)
        with the teacher's opacity and least-squares SH colour."""
        model = self.model
        if not hasattr(model, "optimizers"):
            model.optimizers = {}  # set by its training callback before each step; a step outside a trainer has none
        if init is None:
            return
        params = model.gauss_params
        device = params["means"].device
        k = params["features_rest"].shape[1] + 1
        sh = fit_sh(init["dirs"], init["rgb_dirs"], k)  # [N, K, 3]
        with torch.no_grad():
            distances, _ = model.k_nearest_sklearn(params["means"].data.cpu(), 3)
            scale = torch.from_numpy(distances).float().mean(dim=-1, keepdim=True).clamp_min(1e-4)
            params["scales"] = nn.Parameter(torch.log(scale.repeat(1, 3)).to(device))
            # opacity: the teacher's alpha over the Gaussian's extent, 1 - exp(-k sigma s), with one
            # factor k for the scene so that the student's pseudo views are as opaque as the teacher's
            # (Gaussians drawn in proportion to the weights overlap along a ray; k accounts for it)
            optical = (init["density"] * scale).to(device)
            lo, hi = -12.0, 6.0  # log k, bisected to within 0.07 (k within 7%)
            for _ in range(8):
                mid = (lo + hi) / 2
                params["opacities"] = nn.Parameter(_alpha_logit(optical * math.exp(mid)))
                if self._mean_accumulation(init["cameras"]) < init["accumulation"]:
                    lo = mid
                else:
                    hi = mid
            params["opacities"] = nn.Parameter(_alpha_logit(optical * math.exp((lo + hi) / 2)))
            if model.config.sh_degree > 0:
                params["features_dc"] = nn.Parameter(sh[:, 0].to(device))
                params["features_rest"] = nn.Parameter(sh[:, 1:].to(device))
            else:
                params["features_dc"] = nn.Parameter(torch.logit(init["rgb"].clamp(1e-4, 1 - 1e-4)).to(device))
        self._keep_initial_opacities()
        CONSOLE.log(
            f"splatfacto student: {self.num_gaussians} Gaussians placed from the teacher "
            f"(mean accumulation {self._mean_accumulation(init['cameras']):.3f}, teacher {init['accumulation']:.3f})"
        )

    def before_finetune(self) -> None:
        # splatfacto resets every opacity at step 0 of a run: the distilled ones are kept
        self._keep_initial_opacities()

    @torch.no_grad()
    def _mean_accumulation(self, cameras: Cameras) -> float:
        was_training = self.model.training
        self.model.eval()
        try:
            return float(torch.stack([self.render_camera(cameras[i : i + 1])["accumulation"].mean()
                                      for i in range(cameras.shape[0])]).mean())
        finally:
            self.model.train(was_training)

    def _keep_initial_opacities(self) -> None:
        """gsplat's DefaultStrategy resets every opacity to at most 2 x its pruning threshold at step 0
        (``step % reset_every == 0``), which would undo the teacher's opacities; at step 0 it only
        accumulates its statistics here (what it does before growing, which it does not do at step 0)."""
        strategy = self.model.strategy
        original = strategy.step_post_backward

        def step_post_backward(params, optimizers, state, step, info, packed=False):
            if step == 0:
                strategy._update_state(params, state, info, packed=packed)
                return
            original(params, optimizers, state, step, info, packed=packed)

        strategy.step_post_backward = step_post_backward

def _alpha_logit(optical_depth: Tensor) -> Tensor:
    return torch.logit((1 - torch.exp(-optical_depth)).clamp(1e-3, 0.99))


# ---- initialisation from a teacher -----------------------------------------------------------------------
def fibonacci_directions(n: int) -> Tensor:
    """``n`` unit vectors spread evenly over the sphere."""
    i = torch.arange(n, dtype=torch.float32) + 0.5
    z = 1 - 2 * i / n
    r = torch.sqrt((1 - z * z).clamp_min(0))
    phi = math.pi * (3 - math.sqrt(5)) * i
    return torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)


def sh_basis(k: int, dirs: Tensor) -> Tensor:
    """[M, 3] directions -> [M, k] the real SH basis gsplat evaluates colours with (its own
    pure-torch ``spherical_harmonics`` applied to the identity coefficients)."""
    from nerfconvert.splat.raster import _gsplat_torch_impl

    spherical_harmonics = _gsplat_torch_impl()[-1]
    degree = int(round(math.sqrt(k))) - 1
    eye = torch.eye(k, dtype=dirs.dtype, device=dirs.device).expand(dirs.shape[0], k, k)
    return spherical_harmonics(degree, dirs, eye)


def fit_sh(dirs: Tensor, rgb: Tensor, k: int) -> Tensor:
    """SH coefficients [N, k, 3] whose colour (basis . c + 0.5, as gsplat renders) fits ``rgb``
    [N, D, 3] seen from ``dirs`` [D, 3] (or [N, D, 3]) in the least-squares sense."""
    n, d, _ = rgb.shape
    basis = sh_basis(k, dirs.expand(n, d, 3).reshape(-1, 3)).view(n, d, k)
    target = rgb - 0.5
    # ridge on the higher degrees keeps under-determined fits (few directions) near DC
    reg = torch.full((k,), 1e-3)
    reg[0] = 0.0
    lhs = basis.transpose(1, 2) @ basis + torch.diag(reg)
    return torch.linalg.solve(lhs, basis.transpose(1, 2) @ target)


PLACEMENT_CHUNK = 4096
"""Rays per teacher call of the placement pass."""
PLACEMENT_PROBE = 1024
"""Most rays of the timed chunk whose speed sets the placement pass's ray cap."""
COLOUR_CHUNK = 2048
"""Points per teacher call of the per-direction colour query (each queried from every direction)."""


def pixel_rays(cameras: Cameras, index: Tensor) -> RayBundle:
    """Rays through the pixels ``index``, numbered over all ``cameras`` (camera by camera, row-major),
    at the pixel centres ``generate_rays`` renders whole cameras with."""
    index = index.to(cameras.device)
    widths = cameras.width.view(-1)
    sizes = cameras.height.view(-1) * widths
    starts = torch.cumsum(sizes, 0) - sizes
    cam = torch.searchsorted(starts, index, right=True) - 1
    local = index - starts[cam]
    coords = torch.stack([local // widths[cam], local % widths[cam]], dim=-1).float() + 0.5
    return cameras.generate_rays(camera_indices=cam[:, None], coords=coords)


def placement_ray_cap(total: int, rays_per_second: float, seconds: float, max_rays: Optional[int] = None,
                      done: int = 0) -> int:
    """Rays of the placement pass: ``max_rays`` when given, else as many as the teacher renders in
    ``seconds`` at its measured speed (0: every pixel); never more than ``total``, nor fewer than
    the ``done`` rays that timed it."""
    if max_rays is not None:
        return max(done, min(total, int(max_rays)))
    if seconds <= 0:
        return total
    return max(done, min(total, int(rays_per_second * seconds)))


@torch.no_grad()
def teacher_gaussians(teacher: FieldView, cameras: Cameras, num_points: int, num_dirs: int = 16,
                      generator: Optional[torch.Generator] = None, seconds: float = 60.0,
                      max_rays: Optional[int] = None) -> Dict[str, Tensor]:
    """Where Gaussians go and what they look like, from the teacher over pseudo ``cameras``.

    Point-query teachers: samples along the cameras' rays, drawn in proportion to the teacher's
    ray weights (not only at the expected depth), each with the teacher's density and its colour
    along the ray and from ``num_dirs`` directions. The rays are random pixels of all cameras, as
    many as the teacher renders in ``seconds`` (timed on a first chunk; 0: every pixel), or
    ``max_rays`` of them when given. Others: their rendered depth and colour.
    Returns ``means`` [N, 3], ``rgb`` [N, 3], ``density`` [N, 1], ``dirs`` [D, 3], ``rgb_dirs`` [N, D, 3],
    and the ``cameras`` with the teacher's mean ``accumulation`` over them (to calibrate opacity).
    """
    generator = generator or torch.Generator().manual_seed(0)
    device = teacher.device
    if teacher.has("point_queries"):
        total = int((cameras.height.view(-1) * cameras.width.view(-1)).sum())
        # every pixel in random order: any prefix is a uniform sample of all the cameras' rays, so the
        # capped pass still places Gaussians everywhere and its mean accumulation stays unbiased
        order = torch.randperm(total, generator=generator)
        pos, rgb, density, weights = [], [], [], []
        accumulation, num_rays = 0.0, 0  # the teacher's mean accumulation over these cameras, from the same pass

        def render(index: Tensor) -> float:
            nonlocal accumulation, num_rays
            start = time.perf_counter()
            samples = teacher.sample(pixel_rays(cameras, index).to(device))
            out = teacher.render_samples(samples)
            w = out["weights"][..., 0]
            accumulation += float(w.sum())
            num_rays += w.shape[0]
            keep = w > 1e-4
            pos.append(samples.frustums.get_positions()[keep].cpu())
            rgb.append(out["decoded"].rgb[keep].float().cpu())
            density.append(out["decoded"].density[keep].float().cpu())
            weights.append(w[keep].cpu())
            return time.perf_counter() - start  # the copies to the CPU above synchronise a GPU

        # the teacher's speed: a few warm-up rays take its first-call costs (allocations, kernels), then a
        # timed chunk; a slow teacher is timed on fewer rays (~2 s of them) so that the line comes early
        limit = total if max_rays is None else max(1, min(total, int(max_rays)))
        warm = min(64, limit)
        warm_seconds = render(order[:warm])
        probe = min(limit - warm, PLACEMENT_PROBE, max(256, int(2.0 * warm / max(warm_seconds, 1e-6))))
        rate = probe / max(render(order[warm : warm + probe]), 1e-6) if probe > 0 else warm / max(warm_seconds, 1e-6)
        done = warm + probe
        cap = placement_ray_cap(total, rate, seconds, max_rays, done)
        if max_rays is not None:
            why = f"max_rays {int(max_rays):,}"
        elif seconds <= 0:
            why = "--pipeline.init-seconds 0: all"
        elif cap < total:
            why = f"--pipeline.init-seconds {seconds:g}, 0: all"
        else:
            why = f"within the {seconds:g} s budget"
        eta = f"{cap / rate:.0f}" if cap / rate >= 10 else f"{cap / rate:.1f}"
        CONSOLE.print(
            f"placing Gaussians: teacher at {rate:,.0f} rays/s, {cap:,} of {total:,} rays "
            f"({100.0 * cap / max(total, 1):.1f}%, ~{eta} s; {why})",
            soft_wrap=True,  # one line in logs, whatever the terminal's width
        )
        chunks = (order[j : min(j + PLACEMENT_CHUNK, cap)] for j in range(done, cap, PLACEMENT_CHUNK))
        for index in with_progress(chunks, cap, "placing Gaussians: teacher rays", done=done):
            render(index)
        if not pos or sum(p.shape[0] for p in pos) == 0:
            raise NerfconvertError("The teacher renders nothing from its pseudo cameras: there is no scene to place Gaussians in.")
        seen = {"cameras": cameras, "accumulation": accumulation / max(1, num_rays)}
        pos, rgb, density, weights = torch.cat(pos), torch.cat(rgb), torch.cat(density), torch.cat(weights)
        pick = torch.multinomial(weights, min(num_points, weights.shape[0]), replacement=False, generator=generator)
        means, rgb, density = pos[pick], rgb[pick], density[pick]
        dirs = fibonacci_directions(num_dirs)
        rgb_dirs = torch.empty(means.shape[0], num_dirs, 3)
        n = means.shape[0]
        # num_points x num_dirs teacher queries (320,000 by default): seconds to a minute on a CPU
        starts = with_progress(range(0, n, COLOUR_CHUNK), n * num_dirs, f"placing Gaussians: colour from {num_dirs} directions",
                               unit="queries", size=lambda j: min(COLOUR_CHUNK, n - j) * num_dirs)
        for j in starts:
            p = means[j : j + COLOUR_CHUNK].to(device)
            d = dirs.to(device)[None].expand(p.shape[0], -1, -1)
            p = p[:, None].expand(-1, num_dirs, -1)
            rgb_dirs[j : j + COLOUR_CHUNK] = teacher.query(p.contiguous(), d.contiguous()).rgb.float().cpu()
        return {"means": means, "rgb": rgb, "density": density, "dirs": dirs, "rgb_dirs": rgb_dirs, **seen}

    # camera rendering only: back-project rendered depth (where the teacher is opaque)
    pos, rgb, accumulation = [], [], []
    for i in range(cameras.shape[0]):
        cam = cameras[i : i + 1]
        out = teacher.render_camera(cam)
        bundle = pinhole_camera(cam).generate_rays(camera_indices=0, keep_shape=False)
        acc = out["accumulation"].reshape(-1).cpu()
        accumulation.append(acc.mean())
        keep = acc > 0.5
        depth = out["depth"].reshape(-1, 1).cpu()
        pos.append((bundle.origins + bundle.directions * depth)[keep])
        rgb.append(out["rgb"].reshape(-1, 3).cpu()[keep])
    seen = {"cameras": cameras, "accumulation": float(torch.stack(accumulation).mean())}
    pos, rgb = torch.cat(pos), torch.cat(rgb)
    if pos.shape[0] == 0:
        raise NerfconvertError("The teacher renders nothing opaque from its pseudo cameras: there is no scene to place Gaussians in.")
    pick = torch.randperm(pos.shape[0], generator=generator)[:num_points]
    means, rgb = pos[pick], rgb[pick]
    return {"means": means, "rgb": rgb, "density": torch.full((means.shape[0], 1), 50.0),
            "dirs": torch.zeros(1, 3) + torch.tensor([0.0, 0.0, 1.0]), "rgb_dirs": rgb[:, None], **seen}
