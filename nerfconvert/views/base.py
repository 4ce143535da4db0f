"""The unified two-level view (PVD, Table 1 and Eq. 5): every field is phi2(phi1(x, d)).

A view adapts one trained nerfstudio model to this interface. Distillation, importance
scores and viewer comparisons are written against views, never against a model class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Dict, Union

import torch
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer
from nerfstudio.models.base_model import Model


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
    """One of "hash", "vm", "mlp", "voxel"."""
    model_names: ClassVar[tuple]
    """Model class names this view supports (used in error messages)."""
    capabilities: ClassVar[Dict[str, Union[str, type]]] = {}
    """Companion classes registered with the view, by capability: a method asks the registry for
    one (``registry.companion_class``), never for a family. The class, or ``"module:Class"`` (imported
    when asked for, so that views import no method code). ``"vq_tables"``: what vq-compression
    quantises and how importance reaches it (a ``nerfconvert.compress.vq.families.Family``)."""
    volume_feature_slice: ClassVar[slice] = slice(None)
    """The part of phi1's output that is the scene's volume feature (compared by L_v, PVD Eq. 6);
    views that carry helper values in their features (e.g. an in-box flag) narrow it."""

    def __init__(self, model: Model) -> None:
        self.model = model

    @property
    def unbounded(self) -> bool:
        """Whether the field contracts space, so that it models a background past the scene box."""
        return False

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
