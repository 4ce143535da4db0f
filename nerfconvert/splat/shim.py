"""Route nerfstudio 1.1.5's ``splatfacto`` to the pure-torch rasterizer when its tensors are on the CPU
(``nerfconvert.compat``'s patch 5; installed by the entry points only, with the other patches).

``install_cpu_rasterizer()`` patches ``nerfstudio.models.splatfacto`` (importing it):

* ``rasterization`` (the name splatfacto imported from ``gsplat.rendering``): CPU tensors go to
  :func:`nerfconvert.splat.raster.rasterization`, anything else to gsplat's CUDA original;
* ``get_viewmat`` is ``torch.compile``d; on the CPU that costs ~20 s of inductor compilation per
  process for a 4x4 matrix product, so CPU inputs call the uncompiled function;
* ``SplatfactoModel.populate_modules`` and ``.get_outputs`` call ``.cuda()`` on a tensor (the
  seed-point SH coefficients, the intrinsics), which fails where torch has no CUDA device. There,
  those two methods run under a torch function mode that turns ``Tensor.cuda()`` into a move to the
  model's device. The mode is active only inside the two calls and only in their thread (the viewer
  renders from another one); ``torch.Tensor`` itself is not patched. With a CUDA device nothing of
  this is installed: the calls work as written.

``gsplat.strategy.DefaultStrategy`` needs nothing: its ops (duplicate, split, remove, reset_opa)
are plain torch, and its ``torch.cuda.empty_cache()`` is a no-op without CUDA. The MCMC strategy's
relocation is a CUDA kernel, but splatfacto in nerfstudio 1.1.5 does not use it.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

SPLATFACTO = "nerfstudio.models.splatfacto"
_MARK = "_nerfconvert_cpu_rasterizer"


class CudaCallsTo(TorchFunctionMode):
    """Within the block, in this thread, ``tensor.cuda()`` returns ``tensor.to(device)``; every other
    torch call runs unchanged."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.cuda:
            return args[0].to(self.device)
        return func(*args, **(kwargs or {}))


def dispatching_rasterization(original: Any) -> Any:
    """gsplat's ``rasterization`` for CUDA tensors, ours for CPU ones."""

    @functools.wraps(original if original is not None else dispatching_rasterization)
    def rasterization(*args, **kwargs):
        means = kwargs["means"] if "means" in kwargs else args[0]
        if means.device.type == "cpu" or original is None:
            from nerfconvert.splat.raster import rasterization as cpu_rasterization

            return cpu_rasterization(*args, **kwargs)
        return original(*args, **kwargs)

    rasterization.gsplat_rasterization = original  # type: ignore[attr-defined]
    setattr(rasterization, _MARK, True)
    return rasterization


def _patch(module: Any) -> None:
    if getattr(module, _MARK, False):
        return
    # fail here, at install, rather than at the first render, if gsplat's torch helpers moved
    from nerfconvert.splat.raster import _gsplat_torch_impl

    _gsplat_torch_impl()

    module.rasterization = dispatching_rasterization(getattr(module, "rasterization", None))

    compiled = module.get_viewmat
    eager = getattr(compiled, "_torchdynamo_orig_callable", None) or getattr(compiled, "__wrapped__", None)
    if eager is not None:

        @functools.wraps(eager)
        def get_viewmat(optimized_camera_to_world):
            if optimized_camera_to_world.device.type == "cpu":
                return eager(optimized_camera_to_world)
            return compiled(optimized_camera_to_world)

        module.get_viewmat = get_viewmat

    if not torch.cuda.is_available():
        _redirect_cuda_calls(module.SplatfactoModel)
    setattr(module, _MARK, True)


def _redirect_cuda_calls(model_cls: Any) -> None:
    """Without CUDA, splatfacto's ``.cuda()`` calls keep the tensor on the model's device. (With
    CUDA they work as written: the pipeline moves the model to its device afterwards, and the
    rasterizer takes the intrinsics to the device of the means.)"""
    populate_modules = model_cls.populate_modules
    get_outputs = model_cls.get_outputs

    @functools.wraps(populate_modules)
    def populate_modules_cpu(self, *args, **kwargs):
        with CudaCallsTo(torch.device("cpu")):  # parameters are built on the CPU
            return populate_modules(self, *args, **kwargs)

    @functools.wraps(get_outputs)
    def get_outputs_cpu(self, *args, **kwargs):
        with CudaCallsTo(self.means.device):
            return get_outputs(self, *args, **kwargs)

    model_cls.populate_modules = populate_modules_cpu
    model_cls.get_outputs = get_outputs_cpu


def install_cpu_rasterizer() -> None:
    """Make splatfacto render on the CPU (idempotent); imports ``nerfstudio.models.splatfacto``
    (nerfstudio's method table, which every entry point loads, imports it anyway)."""
    _patch(importlib.import_module(SPLATFACTO))


# ---- patch 4 of nerfconvert/compat.py (the ledger): loaded Gaussians stay in the optimizers' Parameters

def keep_parameters_on_load(load_state_dict: Any) -> Any:
    """Splatfacto's ``load_state_dict``, resized Gaussians included, with the values in the model's
    own ``Parameter`` objects (the ones the optimizers hold) instead of new ones."""
    if getattr(load_state_dict, "_nerfconvert_keeps_parameters", False):
        return load_state_dict

    @functools.wraps(load_state_dict)
    def wrapped(self, state_dict, **kwargs):
        before = dict(self.gauss_params.items())
        result = load_state_dict(self, state_dict, **kwargs)
        for name, old in before.items():
            new = self.gauss_params[name]
            if new is not old:
                old.data = new.data  # a Parameter's data may change shape; the object stays
                self.gauss_params[name] = old
        return result

    wrapped._nerfconvert_keeps_parameters = True  # type: ignore[attr-defined]
    return wrapped


def install_splatfacto_loading() -> None:
    from nerfstudio.models.splatfacto import SplatfactoModel

    SplatfactoModel.load_state_dict = keep_parameters_on_load(SplatfactoModel.load_state_dict)
