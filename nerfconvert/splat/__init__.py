"""Gaussian splatting on the CPU: a pure-torch stand-in for ``gsplat.rendering.rasterization``
(:mod:`nerfconvert.splat.raster`) and the shim that routes nerfstudio's ``splatfacto`` to it when
its tensors are on the CPU (:mod:`nerfconvert.splat.shim`)."""

from nerfconvert.splat.raster import rasterization

__all__ = ["rasterization"]
