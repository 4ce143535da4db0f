"""Two-level view of the VM-decomposition family: nerfstudio's TensoRF.

phi1 (PVD Table 1, "decomposed tensors"): density planes x lines, and appearance planes x
lines projected by the appearance basis B. phi2: sum + ReLU for density, and the colour
decoder (MLP on features, direction and their frequency encodings, or SH if ``use_sh``).

Feature layout (``feature_dim = D + A``)::

    [0 : D]        density components, D = density_encoding.get_out_dim() (3 x R_sigma for VM)
    [D : D + A]    appearance features after the basis B, A = B.out_features (27 by default)

The whole vector is the volume feature (L_v, Eq. 6); ``density_feature_slice`` and
``appearance_feature_slice`` name the two blocks. The same code serves the "cp" and
"triplane" encodings of TensoRFModel, since the field treats them alike.

``VMTables`` is what compression quantises: one table per density plane and per appearance plane;
plane entries get the importance of the virtual grid summed along the plane's axis. Quantised to a
lattice by default, or with VQ-TensoRF's six codebooks (``quantizer="codebook"``). The same planes
are what entropy-compression codes (``feature_planes``).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.fields.tensorf_field import TensoRFField
from nerfstudio.model_components.losses import tv_loss
from nerfstudio.models.base_model import Model
from nerfstudio.utils import colors

from nerfconvert.compress.validate import int_range
from nerfconvert.views.base import Decoded, FieldView, ViewOptions
from nerfconvert.views.tables import VQ_TABLES, CompressionTables, Table, param_name, probe_grad

RAY_MASK_KEY = "nerfconvert_vm_ray_mask"
"""``RaySamples.metadata`` key under which :meth:`VMView.sample` stores TensoRF's coarse-pass ray mask."""

_COARSE_ACCUMULATION_THRESHOLD = 1e-4  # as in TensoRFModel.get_outputs


# ---- what compression quantises (vq-compression's tables, importance; a decoder's rebuild) --------
_PLANE_AXES = ((0, 1), (0, 2), (1, 2))  # as TensorVMEncoding.forward


class VMTables(CompressionTables):
    """TensoRF's six planes. By default each is a "lattice" table: on the lego100 teacher (planes
    3 x 64 x 213², 15-35% of each plane's entries alive after pruning) VQ-TensoRF's 4096-code
    codebooks held about as many vectors as they coded (4,089-4,096 codes for 4,089-8,957 vectors a
    plane) and were 1.47 MB of a 2.19 MB file; a lattice has no codebook to store
    (``benchmarks/compress_lego.py``)."""

    name = "vm"
    teacher_method = "tensorf"
    default_keep_quantile = 0.7
    quantizers = ("codebook", "lattice")
    default_quantizer = "lattice"
    config_ranges = {"init_resolution": int_range(1, 2048), "final_resolution": int_range(1, 2048),
                     "num_den_components": int_range(1, 1024), "num_color_components": int_range(1, 1024),
                     "appearance_dim": int_range(1, 1024), "num_samples": int_range(1, 1 << 14),
                     "num_uniform_samples": int_range(1, 1 << 14)}

    @staticmethod
    def model_size(c) -> int:
        r = int(c.init_resolution)
        comps = int(c.num_den_components) + int(c.num_color_components)
        return 3 * comps * (r * r + r) + 3 * int(c.num_color_components) * int(c.appearance_dim)

    def __init__(self, model: Model, quantizer: Optional[str] = None) -> None:
        super().__init__(model, quantizer)
        self.view.check_planes()

    def _planes(self):
        return zip(("density", "color"), self.view.planes())

    def tables(self) -> List[Table]:
        out = []
        for prefix, planes in self._planes():
            name = param_name(self.model, planes)
            for k in range(3):
                out.append(
                    Table(f"{prefix}_plane{k}", name, lambda d, k=k: d[k].view(d.shape[1], -1).t(), self.vq_kind(),
                          f"{prefix}_plane{k}", fill="mean")
                )
        return out

    def accumulate_importance(self, ray_bundle: RayBundle, into: Dict[str, Tensor]) -> None:
        view = self.view
        points = self._weighted_points(view, ray_bundle)
        if points is None:
            return
        positions, w = points
        x = view.field_coordinates(positions)
        for prefix, planes in self._planes():
            h, wd = planes.shape[-2:]
            coords = torch.stack([x[:, list(axes)] for axes in _PLANE_AXES]).view(3, -1, 1, 2)

            def lookup(g):  # planes with the lines set to one: the virtual grid summed along each axis
                return (F.grid_sample(g, coords, align_corners=True)[:, 0, :, 0] * w[None]).sum()

            grad = probe_grad(lookup, (3, 1, h, wd), x.device)
            for k in range(3):
                key = f"{prefix}_plane{k}"
                into[key] = into.get(key, torch.zeros(h * wd, device=x.device)) + grad[k].view(-1)

    def plane_importance(self, importance: Dict[str, Tensor]) -> Tensor:
        h, w = self.view.planes()[0].shape[-2:]
        return torch.stack([importance[f"density_plane{k}"].view(h, w) for k in range(3)])


# ---- the view ------------------------------------------------------------------------------------
class VMView(FieldView):
    """phi2(phi1(x, d)) == ``TensoRFField``."""

    family = "vm"
    model_names = ("TensoRFModel", "UnboundedTensoRFModel")
    capabilities = {VQ_TABLES: VMTables}
    student_method = "tensorf"
    student_description = "tensorf student (VM decomposition), as ns-train tensorf builds it (the default)."
    models_background = True  # as tensorf-unbounded (nerfconvert.unbounded) when the teacher contracts space

    def __init__(self, model: Model) -> None:
        super().__init__(model)
        field = getattr(model, "field", None)
        if not isinstance(field, TensoRFField):
            raise TypeError(
                f"VMView needs a model whose .field is a TensoRFField, got {type(model).__name__} "
                f"with field {type(field).__name__}"
            )
        self.field: TensoRFField = field
        self.volume_feature_slice = slice(0, self.feature_dim)

    def density_activation(self) -> Tuple[str, float]:
        return "relu", 1.0

    # ---- the feature planes (what entropy-compression codes) --------------------------------
    feature_planes = True
    plane_state_keys = ("field.density_encoding.plane_coef", "field.color_encoding.plane_coef")
    """State-dict keys of the density and colour planes, in the model's state dict."""

    def check_planes(self) -> None:
        """One-line error unless both encodings are VM planes (the "cp" and "triplane" encodings have none)."""
        from nerfstudio.field_components.encodings import TensorVMEncoding

        from nerfconvert import NerfconvertError

        for enc in self.encodings():
            if not isinstance(enc, TensorVMEncoding):
                raise NerfconvertError(
                    f"this needs tensorf's VM encoding, not {type(enc).__name__}: "
                    "train the teacher with --pipeline.model.tensorf-encoding vm."
                )

    def encodings(self) -> Tuple[nn.Module, nn.Module]:
        """The density and colour encodings (TensorVMEncoding for the VM decomposition)."""
        return self.field.density_encoding, self.field.color_encoding

    def planes(self) -> Tuple[Tensor, Tensor]:
        """The density and colour feature planes, [3, C, R, R] each."""
        density, color = self.encodings()
        return density.plane_coef, color.plane_coef

    def set_planes(self, density: Tensor, color: Tensor) -> None:
        """Replace the planes; a plain tensor (e.g. a decoder's output) replaces the Parameter. The
        encodings' resolution follows the planes."""
        for enc, planes in zip(self.encodings(), (density, color)):
            if "plane_coef" in enc._parameters and not isinstance(planes, nn.Parameter):
                del enc._parameters["plane_coef"]
            enc.plane_coef = planes
            enc.resolution = int(planes.shape[-1])

    def sync_resolution(self) -> None:
        """The encodings' resolution from their planes (after loading planes of another size)."""
        for enc in self.encodings():
            enc.resolution = int(enc.plane_coef.shape[-1])

    # ---- as a student -------------------------------------------------------------------
    @classmethod
    def student_model_config(cls, unbounded: bool = False):
        config = super().student_model_config(unbounded)
        config.regularization = "none"  # L_reg is PVD's (Eq. 7), see regularizer()
        if unbounded:
            from dataclasses import fields

            from nerfconvert.unbounded import UnboundedTensoRFModelConfig

            kept = {f.name: getattr(config, f.name) for f in fields(config) if f.name != "_target"}
            config = UnboundedTensoRFModelConfig(**kept)
        return config

    @property
    def resolution(self) -> int:
        """Current resolution of the VM planes (they grow during a stock run)."""
        return int(self.field.density_encoding.resolution)

    @classmethod
    def adopt_teacher(cls, model_config, teacher: FieldView, options: Optional[ViewOptions] = None) -> None:
        # A VM teacher has already grown its planes. The student starts at that size: its targets are
        # the teacher's density and colour at every sample, so it needs no coarse-to-fine warm-up, and
        # a stock schedule would keep a CPU-length run at 128^2 (upsampling starts at step 2000),
        # too coarse for the teacher's detail (measured: benchmarks/README.md, "conversion table").
        if isinstance(teacher, VMView):
            model_config.init_resolution = model_config.final_resolution = teacher.resolution

    @classmethod
    def fit_to_run(cls, model_config, total_steps: int) -> None:
        """A student that starts at its final resolution never upsamples (an upsample to the same size
        would only reset Adam); otherwise stock tensorf's absolute upsampling steps stand."""
        if model_config.init_resolution >= model_config.final_resolution:
            model_config.upsampling_iters = tuple(total_steps + 1 + i for i in range(len(model_config.upsampling_iters)))

    def regularizer(self, density: Optional[Tensor], tv_weight: float, l1_weight: float) -> Optional[Tensor]:
        field = self.field
        planes = [getattr(enc, "plane_coef", None) for enc in (field.density_encoding, field.color_encoding)]
        lines = [getattr(enc, "line_coef", None) for enc in (field.density_encoding, field.color_encoding)]
        loss = 0.0
        if planes[0] is not None and tv_weight > 0:
            loss = loss + tv_weight * (tv_loss(planes[0]) + tv_loss(planes[1]))
        if l1_weight > 0:
            # TensoRF's L1 on the density factors
            dens = [t for t in (planes[0], lines[0]) if t is not None]
            loss = loss + l1_weight * sum(t.abs().mean() for t in dens)
        return loss if torch.is_tensor(loss) else None

    @property
    def _density_dim(self) -> int:
        return self.field.density_encoding.get_out_dim()

    @property
    def feature_dim(self) -> int:
        return self._density_dim + self.field.B.out_features

    @property
    def density_feature_slice(self) -> slice:
        return slice(0, self._density_dim)

    @property
    def appearance_feature_slice(self) -> slice:
        return slice(self._density_dim, self.feature_dim)

    # ---- the two levels -----------------------------------------------------------------
    def field_coordinates(self, positions: Tensor) -> Tensor:
        """World positions -> the [-1, 1] coordinates the VM encodings are looked up at (through
        the scene contraction first, for an unbounded TensoRF)."""
        contract = getattr(self.field, "contract", None)
        if contract is not None:
            positions = contract(positions)
        return SceneBox.get_normalized_positions(positions, self.field.aabb) * 2 - 1

    @property
    def unbounded(self) -> bool:
        """Whether the field reaches past the scene box (a contracted TensoRF)."""
        return getattr(self.field, "contract", None) is not None

    @classmethod
    def config_unbounded(cls, model_config) -> bool:
        from nerfconvert.unbounded import UnboundedTensoRFModelConfig

        return isinstance(model_config, UnboundedTensoRFModelConfig)

    def phi1(self, positions: Tensor, directions: Tensor = None) -> Tensor:
        # phi1, PVD Table 1: decomposed tensors (planes x lines, then the basis B)
        del directions
        x = self.field_coordinates(positions)
        density_components = self.field.density_encoding(x)
        appearance = self.field.B(self.field.color_encoding(x))
        return torch.cat([density_components, appearance], dim=-1)

    def phi2(self, features: Tensor, directions: Tensor) -> Decoded:
        # phi2, PVD Table 1: MLP decoder
        field = self.field
        density_components, appearance = torch.split(
            features, [self._density_dim, field.B.out_features], dim=-1
        )
        raw_density = density_components.sum(dim=-1, keepdim=True)
        density = torch.relu(raw_density)

        if field.use_sh:
            sh = field.sh(directions)[..., None, :]  # [..., 1, n_sh]
            coefficients = appearance.view(*appearance.shape[:-1], 3, sh.shape[-1])
            rgb = torch.relu(torch.sum(sh * coefficients, dim=-1) + 0.5)
        else:
            decoder_in = torch.cat(
                [
                    appearance,
                    directions,
                    field.feature_encoding(appearance),
                    field.direction_encoding(directions),
                ],
                dim=-1,
            )
            rgb = field.field_output_rgb(field.mlp_head(decoder_in))
        return Decoded(density=density, raw_density=raw_density, rgb=rgb)

    # ---- sampling and rendering -----------------------------------------------------------
    def sample(self, ray_bundle: RayBundle) -> RaySamples:
        """Uniform samples, then PDF samples from the field's density (TensoRFModel.get_outputs).

        TensoRF skips the fine pass on rays whose coarse accumulation is below 1e-4 (density 0,
        white colour). That mask is stored in ``metadata[RAY_MASK_KEY]`` so that
        :meth:`render_samples` renders these samples exactly as the model does.
        """
        model = self.model
        if getattr(model, "collider", None) is not None:
            ray_bundle = model.collider(ray_bundle)
        with torch.no_grad():
            uniform = model.sampler_uniform(ray_bundle)
            weights = uniform.get_weights(self.field.get_density(uniform))
            accumulation = model.renderer_accumulation(weights)
            ray_mask = accumulation >= _COARSE_ACCUMULATION_THRESHOLD  # [num_rays, 1]
            ray_samples = model.sampler_pdf(ray_bundle, uniform, weights)
        metadata = dict(ray_samples.metadata or {})
        metadata[RAY_MASK_KEY] = ray_mask[..., None, :].expand(*ray_samples.shape, 1)
        ray_samples.metadata = metadata
        return ray_samples

    def masked_decoded(self, ray_samples: RaySamples, decoded: Decoded) -> Decoded:
        outputs_mask = (ray_samples.metadata or {}).get(RAY_MASK_KEY)
        if outputs_mask is None:
            return decoded
        # TensoRFField.forward with a mask: skipped rays get zero density and white colour
        white = colors.WHITE.to(decoded.rgb)
        return Decoded(
            density=torch.where(outputs_mask, decoded.density, torch.zeros_like(decoded.density)),
            raw_density=decoded.raw_density,
            rgb=torch.where(outputs_mask, decoded.rgb, white.expand_as(decoded.rgb)),
        )

    def render_samples(self, ray_samples: RaySamples) -> Dict[str, Tensor]:
        decoded = self.query(ray_samples.frustums.get_positions(), ray_samples.frustums.directions)
        return self.render_decoded(ray_samples, self.masked_decoded(ray_samples, decoded))

    # ---- parameters -----------------------------------------------------------------------
    def phi1_parameters(self) -> list[nn.Parameter]:
        field = self.field
        return (
            list(field.density_encoding.parameters())
            + list(field.color_encoding.parameters())
            + list(field.B.parameters())
        )

    def phi2_parameters(self) -> list[nn.Parameter]:
        field = self.field
        if field.use_sh:
            return []
        return (
            list(field.mlp_head.parameters())
            + list(field.field_output_rgb.parameters())
            + list(field.feature_encoding.parameters())
            + list(field.direction_encoding.parameters())
        )
