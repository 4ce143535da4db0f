"""Two-level view of the plain-MLP family: vanilla NeRF (the FINE field of NeRFModel).

phi1 (PVD Table 1, "first K layers"): positional encoding + the first K layers of the base
MLP. phi2: the remaining base layers, the density head and the colour head.

The base MLP re-injects the encoded position before layer 4 (skip connection). When a skip
falls in phi2 (``skip >= K``, which is the case for the default K = 4), phi2 needs the
encoded position, so phi1 carries it along. Feature layout::

    [0 : W]        hidden state after K layers (W = base layer width, 256), post-activation
    [W : W + E]    encoded position gamma(x) (E = 63), present only if a skip is in phi2

``volume_feature_slice`` is the hidden state: the quantity L_v (Eq. 6) compares.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor, nn

from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.field_components.field_heads import FieldHeadNames
from nerfstudio.fields.vanilla_nerf_field import NeRFField
from nerfstudio.models.base_model import Model

from nerfconvert.views.base import Decoded, FieldView, ViewOptions


class MLPView(FieldView):
    """phi2(phi1(x, d)) == ``model.field_fine``, split after ``split_layer`` base layers."""

    family = "mlp"
    model_names = ("NeRFModel",)
    student_method = "vanilla-nerf"
    student_description = "vanilla-nerf student (MLP), as ns-train vanilla-nerf builds it."

    @classmethod
    def from_options(cls, model: Model, options: Optional[ViewOptions] = None) -> "MLPView":
        return cls(model, split_layer=(options or ViewOptions()).split_layer)

    def __init__(self, model: Model, split_layer: int = 4) -> None:
        super().__init__(model)
        field = getattr(model, "field_fine", None)
        if not isinstance(field, NeRFField):
            raise TypeError(
                f"MLPView needs a model with a NeRFField as .field_fine, got {type(model).__name__} "
                f"with field_fine {type(field).__name__}"
            )
        if field.use_integrated_encoding:
            raise NotImplementedError("MLPView does not support integrated (mip-NeRF) encodings: phi1 sees points")
        base = field.mlp_base
        if base.tcnn_encoding is not None:
            raise NotImplementedError("MLPView cannot split a fused tcnn base MLP; use implementation='torch'")
        num_layers = len(base.layers)
        if not 1 <= split_layer <= num_layers:
            raise ValueError(f"split_layer must be in [1, {num_layers}] for this base MLP, got {split_layer}")
        rgb_heads = [h for h in field.field_heads if h.field_head_name == FieldHeadNames.RGB]
        if not rgb_heads:
            raise ValueError("the fine NeRFField has no RGB head")

        self.field: NeRFField = field
        self.split_layer = split_layer
        self._rgb_head = rgb_heads[0]
        self._num_layers = num_layers
        # phi2 needs gamma(x) if the skip concatenation happens at or after the split
        self.carries_encoding = any(s >= split_layer for s in base._skip_connections)
        self._hidden_dim = base.out_dim if split_layer == num_layers else base.layer_width
        self._encoding_dim = field.position_encoding.get_out_dim() if self.carries_encoding else 0
        self.volume_feature_slice = slice(0, self._hidden_dim)

    @property
    def feature_dim(self) -> int:
        return self._hidden_dim + self._encoding_dim

    def density_activation(self) -> Tuple[str, float]:
        act = self.field.field_output_density.activation
        if act is None:
            return "identity", 1.0
        if isinstance(act, nn.Softplus):
            return "softplus", 1.0
        if isinstance(act, nn.ReLU):
            return "relu", 1.0
        return type(act).__name__.lower(), 1.0

    # ---- as a student -------------------------------------------------------------------
    def student_callbacks(self, options: ViewOptions) -> List[Any]:
        """The coarse field (the model's own sampler) is kept a copy of the fine field, which
        distillation trains: evaluated at uniform samples it gives the PDF."""
        from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

        return [
            TrainingCallback(
                [TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                lambda step: self.sync_coarse_field(),
                update_every_num_iters=max(1, options.coarse_sync_every),
            )
        ]

    @torch.no_grad()
    def sync_coarse_field(self) -> None:
        self.model.field_coarse.load_state_dict(self.field.state_dict())

    def finish_student(self) -> None:
        self.sync_coarse_field()

    @property
    def unbounded(self) -> bool:
        return self.field.spatial_distortion is not None

    # ---- the two levels -----------------------------------------------------------------
    def phi1(self, positions: Tensor, directions: Tensor = None) -> Tensor:
        # phi1, PVD Table 1: first K layers
        del directions
        field = self.field
        if field.spatial_distortion is not None:
            positions = field.spatial_distortion(positions)
        encoded = field.position_encoding(positions)
        hidden = self._run_layers(encoded, encoded, 0, self.split_layer)
        if self.carries_encoding:
            return torch.cat([hidden, encoded], dim=-1)
        return hidden

    def phi2(self, features: Tensor, directions: Tensor) -> Decoded:
        # phi2, PVD Table 1: remaining MLP
        field = self.field
        hidden = features[..., : self._hidden_dim]
        encoded = features[..., self._hidden_dim :] if self.carries_encoding else None
        base_out = self._run_layers(hidden, encoded, self.split_layer, self._num_layers)

        raw_density = field.field_output_density.net(base_out)
        activation = field.field_output_density.activation
        density = activation(raw_density) if activation is not None else raw_density

        colour_in = torch.cat([field.direction_encoding(directions), base_out], dim=-1)
        rgb = self._rgb_head(field.mlp_head(colour_in))
        return Decoded(density=density, raw_density=raw_density, rgb=rgb)

    def _run_layers(self, x: Tensor, encoded: Tensor, start: int, stop: int) -> Tensor:
        """Layers [start, stop) of the base MLP, exactly as ``MLP.pytorch_fwd`` runs them."""
        base = self.field.mlp_base
        last = self._num_layers - 1
        for i in range(start, stop):
            if i in base._skip_connections:
                x = torch.cat([encoded, x], dim=-1)
            x = base.layers[i](x)
            if base.activation is not None and i < last:
                x = base.activation(x)
        if stop == self._num_layers and base.out_activation is not None:
            x = base.out_activation(x)
        return x

    # ---- sampling -----------------------------------------------------------------------
    def sample(self, ray_bundle: RayBundle) -> RaySamples:
        """Coarse uniform samples, then PDF samples from the coarse field (NeRFModel.get_outputs)."""
        model = self.model
        if getattr(model, "collider", None) is not None:
            ray_bundle = model.collider(ray_bundle)
        temporal = getattr(model, "temporal_distortion", None)
        with torch.no_grad():
            uniform = model.sampler_uniform(ray_bundle)
            if temporal is not None:
                self._apply_temporal(temporal, uniform)
            coarse = model.field_coarse.forward(uniform)
            weights = uniform.get_weights(coarse[FieldHeadNames.DENSITY])
            fine = model.sampler_pdf(ray_bundle, uniform, weights)
            if temporal is not None:
                self._apply_temporal(temporal, fine)
        return fine

    @staticmethod
    def _apply_temporal(temporal: nn.Module, ray_samples: RaySamples) -> None:
        offsets = None
        if ray_samples.times is not None:
            offsets = temporal(ray_samples.frustums.get_positions(), ray_samples.times)
        ray_samples.frustums.set_offsets(offsets)

    # ---- parameters ---------------------------------------------------------------------
    def phi1_parameters(self) -> list[nn.Parameter]:
        field = self.field
        params = list(field.position_encoding.parameters())
        for layer in field.mlp_base.layers[: self.split_layer]:
            params += list(layer.parameters())
        return params

    def phi2_parameters(self) -> list[nn.Parameter]:
        field = self.field
        params = []
        for layer in field.mlp_base.layers[self.split_layer :]:
            params += list(layer.parameters())
        params += list(field.field_output_density.parameters())
        params += list(field.direction_encoding.parameters())
        params += list(field.mlp_head.parameters())
        params += list(self._rgb_head.parameters())
        return params
