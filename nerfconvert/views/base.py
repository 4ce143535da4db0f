"""The unified two-level view (PVD, Table 1 and Eq. 5): every field is phi2(phi1(x, d)).

A view adapts one trained nerfstudio model to this interface. Distillation, importance
scores and viewer comparisons are written against views, never against a model class.

A view is the only per-family adapter. It declares two capabilities, and methods ask for a
capability (``view.has("point_queries")``), never for a family:

* **point queries** (``point_queries``): ``phi1``/``phi2``/``query`` at points, and the model's
  own sampler (``sample``, ``render_samples``). Fields have them; a rasterised family may not.
* **camera rendering** (``camera_rendering``): ``render_camera`` and ``render_ray_bundle``,
  through the model's own renderer. Every family has it.

Besides, the view class carries what a method needs to know about its family: the density
activation (L_sigma across activations), its role as a distillation student (stock method,
model config and optimizers derived from the stock method's own config, regulariser, extra
losses and callbacks) and companions (``capabilities``), e.g. the tables vq-compression quantises.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer
from nerfstudio.models.base_model import Model


@dataclass
class ViewOptions:
    """How a method wants views built; options a family does not use are ignored by it."""

    split_layer: int = 4
    """K of PVD Table 1 for MLP fields: phi1 = the first K layers."""
    coarse_sync_every: int = 100
    """Students with a separate coarse field for sampling: copy the fine field into it every this many steps."""
    init_points: int = 20000
    """Students initialised from the teacher (Gaussian splats): how many primitives to place."""
    init_seconds: float = 60.0
    """Students initialised from the teacher: time budget of the teacher's pass over the pseudo
    cameras' rays (a random subset of them, as many as the teacher's measured speed allows); 0: every pixel."""
    grid_from_teacher: bool = True
    """Grid students (voxel grids) start from the teacher's field sampled at their vertices instead of
    their own empty initialisation."""


@dataclass
class Decoded:
    """What phi2 gives for a batch of sample points."""

    density: Tensor
    """[..., 1] density after the model's activation (what the renderer integrates)."""
    raw_density: Tensor
    """[..., 1] density before activation, the quantity PVD clamps to [a, b] (Eq. 8)."""
    rgb: Tensor
    """[..., 3] colour in [0, 1]."""


class FieldView(ABC):
    """Two-level view of one trained model.

    Positions are world coordinates, as given by ``ray_samples.frustums.get_positions()``;
    directions are unit world-space vectors. Each view applies its model's own
    normalisation or contraction internally.
    """

    family: ClassVar[str]
    """The family's name, for messages and reports only: methods never branch on it."""
    model_names: ClassVar[tuple]
    """Model class names this view supports (used in error messages)."""
    capabilities: ClassVar[Dict[str, type]] = {}
    """Companion classes registered with the view, by capability: a method asks the registry for
    one (``registry.companion_class``), never for a family. A companion is defined in the view's own
    module (a family is one file). ``"vq_tables"``: what vq-compression quantises, how importance
    reaches it and what rebuilds the model from a file (a ``nerfconvert.views.tables.CompressionTables``)."""
    volume_feature_slice: ClassVar[slice] = slice(None)
    """The part of phi1's output that is the scene's volume feature (compared by L_v, PVD Eq. 6);
    views that carry helper values in their features (e.g. an in-box flag) narrow it."""

    point_queries: ClassVar[bool] = True
    """phi1/phi2/query at points and the model's own sampler (``sample``, ``render_samples``)."""
    camera_rendering: ClassVar[bool] = True
    """``render_camera`` / ``render_ray_bundle`` through the model's own renderer."""
    trains_on_images: ClassVar[bool] = False
    """As a student, it learns from whole rendered views (a rasteriser); False: from batches of rays."""
    feature_planes: ClassVar[bool] = False
    """``planes()`` / ``set_planes()`` / ``plane_state_keys``: 2D feature planes that an image codec
    can code (what entropy-compression compresses)."""
    volume_features: ClassVar[bool] = True
    """phi1 is a learned volume feature that L_v (PVD Eq. 6) can compare; PVD leaves it out for the
    voxel grid, whose phi1 is the explicit grid itself."""

    def __init__(self, model: Model) -> None:
        self.model = model

    @classmethod
    def from_options(cls, model: Model, options: Optional[ViewOptions] = None) -> "FieldView":
        """The view of ``model`` built as ``options`` ask (a family reads the options it has)."""
        return cls(model)

    @classmethod
    def has(cls, capability: str) -> bool:
        """Whether the view offers ``capability``: "point_queries", "camera_rendering", "feature_planes",
        or a companion's name (``capabilities``)."""
        if capability in ("point_queries", "camera_rendering", "feature_planes"):
            return bool(getattr(cls, capability))
        return capability in cls.capabilities

    # ---- camera rendering -------------------------------------------------------------
    def render_camera(self, camera) -> Dict[str, Tensor]:
        """The model's own render of one camera (``rgb``, ``depth``, ``accumulation``, ...)."""
        return self.model.get_outputs_for_camera(camera)

    def render_ray_bundle(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        """The model's own render of a batch of rays (a ray-marched family's chunked eval path)."""
        return self.model.get_outputs_for_camera_ray_bundle(ray_bundle)

    def background_color(self) -> Optional[Tensor]:
        """The constant colour the model composites onto, or None (a random or modelled background)."""
        bg = getattr(getattr(self.model, "renderer_rgb", None), "background_color", None)
        if torch.is_tensor(bg):
            return bg.detach().float().cpu()
        if isinstance(bg, str) and bg in ("white", "black"):
            return torch.ones(3) if bg == "white" else torch.zeros(3)
        return None

    def set_render_background(self, rgb: Tensor) -> None:
        """Render onto ``rgb`` from now on, where the family lets a caller choose (a rasteriser does)."""

    # ---- density ------------------------------------------------------------------------
    def density_activation(self) -> Tuple[str, float]:
        """(name, scale) of the density activation, density = scale * act(raw): "exp", "relu",
        "softplus" or "identity". Lets L_sigma compare across activations (PVD Eq. 8)."""
        raise NotImplementedError(f"{type(self).__name__} does not state its density activation")

    def masked_decoded(self, ray_samples: RaySamples, decoded: Decoded) -> Decoded:
        """What the model itself renders from ``decoded`` at its own samples (e.g. rays it skips)."""
        return decoded

    # ---- as a distillation student ----------------------------------------------------------
    student_method: ClassVar[Optional[str]] = None
    """The stock method whose model a student of this family is (its run is written under this
    name), or None where the family cannot be a student."""
    student_description: ClassVar[str] = ""
    """One line for ``ns-train pvd-al --help``."""
    models_background: ClassVar[bool] = False
    """A student of this family contracts space, so it can carry a capture's background."""
    student_lr: ClassVar[Dict[str, Tuple[float, float]]] = {}
    """Optimizer group -> (lr, lr_final) where distillation departs from the stock method's rates."""

    @classmethod
    def stock_config(cls):
        """The stock method's ``TrainerConfig`` (nerfstudio's or ours), never modified."""
        from nerfconvert.views.stock import builtin_method_config

        return builtin_method_config(cls.student_method)

    @classmethod
    def student_model_config(cls, unbounded: bool = False):
        """The student's model config: the stock method's, without camera optimisation (pseudo
        cameras are exact). ``unbounded``: the teacher contracts space and so must the student."""
        config = copy.deepcopy(cls.stock_config().pipeline.model)
        if hasattr(config, "camera_optimizer"):
            config.camera_optimizer.mode = "off"
        return config

    @classmethod
    def student_optimizers(cls, max_steps: int) -> Dict[str, Dict[str, Any]]:
        """The student's optimizer groups: the stock method's (no camera optimiser), at
        ``student_lr``'s rates where set, with every schedule ending at ``max_steps``."""
        from nerfconvert.schedules import fit_schedulers

        groups = {k: copy.deepcopy(v) for k, v in cls.stock_config().optimizers.items() if k != "camera_opt"}
        for name, (lr, lr_final) in cls.student_lr.items():
            groups[name]["optimizer"].lr = lr
            if groups[name].get("scheduler") is not None:
                groups[name]["scheduler"].lr_final = lr_final
        fit_schedulers(groups, max_steps)
        return groups

    @classmethod
    def adopt_teacher(cls, model_config, teacher: "FieldView", options: Optional[ViewOptions] = None) -> None:
        """Copy what the student's config should share with ``teacher`` before the student is built."""

    @classmethod
    def fit_to_run(cls, model_config, total_steps: int) -> None:
        """Refit the student's step-counted model options (not its optimizers) to a run of ``total_steps``."""

    @classmethod
    def render_depth_in_training(cls, model_config) -> None:
        """Make the student render its expected depth at training steps too (the teacher's depth is
        a loss). Ray-marched models always do."""

    @classmethod
    def starts_at_teacher(cls, teacher_cls: type, options: Optional[ViewOptions] = None) -> bool:
        """Whether a student of this family is set to the teacher's density and colour before its first
        step (``initialise_student``), so that PVD's stages 1-2, which bring a student's fields to the
        teacher's, have nothing left to do."""
        return False

    @classmethod
    def teacher_init(cls, teacher: "FieldView", cameras, options: ViewOptions) -> Optional[Any]:
        """What the student starts from, derived from ``teacher`` over pseudo ``cameras`` (None: its own init)."""
        return None

    @classmethod
    def setup_kwargs(cls, init: Optional[Any]) -> Dict[str, Any]:
        """Extra keyword arguments of the student model's constructor, from ``teacher_init``'s result."""
        return {}

    def initialise_student(self, init: Optional[Any]) -> None:
        """Apply ``teacher_init``'s result to the built student."""

    def regularizer(self, density: Optional[Tensor], tv_weight: float, l1_weight: float) -> Optional[Tensor]:
        """L_reg of PVD Eq. 7 for this student (TV + L1 of grids); None where the family has none."""
        return None

    def student_losses(self, rays: Dict[str, Tensor], ray_samples: RaySamples, teacher_weights: Tensor) -> Dict[str, Tensor]:
        """Extra losses a student needs to keep its own sampler working (unweighted), by name."""
        return {}

    def student_callbacks(self, options: ViewOptions) -> List[Any]:
        """Training callbacks a student needs besides its model's own (nerfstudio ``TrainingCallback``s)."""
        return []

    def finish_student(self) -> None:
        """Bring what distillation does not train directly (e.g. a sampling field) up to date
        before the student is written as a run."""

    def before_finetune(self) -> None:
        """The loaded student is about to train on images from step 0 of a new run (``--finetune-data``):
        keep what it learned from its teacher through anything a method does at a run's start."""

    @property
    def unbounded(self) -> bool:
        """Whether the field contracts space, so that it models a background past the scene box."""
        return False

    @classmethod
    def config_unbounded(cls, model_config) -> bool:
        """Whether a model built from ``model_config`` contracts space (``unbounded``, read before it is built)."""
        return getattr(model_config, "disable_scene_contraction", True) is False

    # ---- the two levels -------------------------------------------------------------
    @property
    @abstractmethod
    def feature_dim(self) -> int:
        """Width of phi1's output."""

    @abstractmethod
    def phi1(self, positions: Tensor, directions: Tensor) -> Tensor:
        """The "volume" part: [..., 3] x [..., 3] -> [..., feature_dim]."""

    @abstractmethod
    def phi2(self, features: Tensor, directions: Tensor) -> Decoded:
        """The "decoder" part: features and directions -> density, raw density, rgb."""

    def query(self, positions: Tensor, directions: Tensor) -> Decoded:
        return self.phi2(self.phi1(positions, directions), directions)

    def raw_density(self, positions: Tensor, directions: Tensor) -> Tensor:
        """[..., 1] density before activation at the given points."""
        return self.query(positions, directions).raw_density

    # ---- sampling and rendering -----------------------------------------------------
    @abstractmethod
    def sample(self, ray_bundle: RayBundle) -> RaySamples:
        """The model's own sampler: the samples its final field pass would be evaluated at."""

    def render_samples(self, ray_samples: RaySamples) -> Dict[str, Tensor]:
        """Volume-render this model's field at externally supplied samples.

        Lets a teacher and a student be evaluated at the same points. Returns ``rgb``,
        ``depth``, ``accumulation``, ``weights`` and the per-sample ``decoded`` values.
        """
        positions = ray_samples.frustums.get_positions()
        directions = ray_samples.frustums.directions
        decoded = self.query(positions, directions)
        return self.render_decoded(ray_samples, decoded)

    def render_decoded(self, ray_samples: RaySamples, decoded: Decoded) -> Dict[str, Tensor]:
        weights = ray_samples.get_weights(decoded.density)
        return {
            "rgb": self.rgb_renderer(rgb=decoded.rgb, weights=weights),
            "depth": _depth_renderer(weights=weights, ray_samples=ray_samples),
            "accumulation": _accumulation_renderer(weights=weights),
            "weights": weights,
            "decoded": decoded,
        }

    def render_rays(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        """Sample with the model's own sampler, then render through the two levels."""
        return self.render_samples(self.sample(ray_bundle))

    @property
    def rgb_renderer(self) -> RGBRenderer:
        """The model's own RGB renderer, so background handling matches the model's."""
        return self.model.renderer_rgb

    # ---- parameters -----------------------------------------------------------------
    @abstractmethod
    def phi1_parameters(self) -> list[nn.Parameter]:
        """Parameters of the volume part (for block-wise training)."""

    @abstractmethod
    def phi2_parameters(self) -> list[nn.Parameter]:
        """Parameters of the decoder part (empty for the voxel grid)."""

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        return f"{type(self).__name__}(family={self.family!r}, feature_dim={self.feature_dim})"


_depth_renderer = DepthRenderer(method="expected")
_accumulation_renderer = AccumulationRenderer()


def pinhole_camera(camera):
    """``camera`` without lens distortion: a rasteriser renders pinhole images, so both sides of an
    image-level distillation render the same undistorted view."""
    if getattr(camera, "distortion_params", None) is None:
        return camera
    camera = copy.copy(camera)
    camera.distortion_params = None
    return camera
