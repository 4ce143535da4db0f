"""Route nerfstudio 1.1.5's ``splatfacto`` to the pure-torch rasterizer when its tensors are on the CPU.

``install_cpu_rasterizer()`` patches ``nerfstudio.models.splatfacto`` (now if it is imported, else
as soon as it is):

* ``rasterization`` (the name splatfacto imported from ``gsplat.rendering``): CPU tensors go to
  :func:`nerfconvert.splat.raster.rasterization`, anything else to gsplat's CUDA original;
* ``get_viewmat`` is ``torch.compile``d; on the CPU that costs ~20 s of inductor compilation per
  process for a 4x4 matrix product, so CPU inputs call the uncompiled function;
* ``SplatfactoModel.populate_modules`` and ``.get_outputs`` call ``.cuda()`` on a tensor (the
  seed-point SH coefficients, the intrinsics). Where torch has no CUDA device, ``Tensor.cuda``
  called from within those two methods puts the tensor on the model's device instead (a
  thread-local switch: the viewer renders from another thread); everywhere else it is torch's own.
  With a CUDA device nothing of this is installed: the calls work as written.

``gsplat.strategy.DefaultStrategy`` needs nothing: its ops (duplicate, split, remove, reset_opa)
are plain torch, and its ``torch.cuda.empty_cache()`` is a no-op without CUDA. The MCMC strategy's
relocation is a CUDA kernel, but splatfacto in nerfstudio 1.1.5 does not use it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import sys
import threading
from typing import Any, Optional

import torch

SPLATFACTO = "nerfstudio.models.splatfacto"
_MARK = "_nerfconvert_cpu_rasterizer"
_local = threading.local()


def _target_device() -> Optional[torch.device]:
    return getattr(_local, "device", None)


class _CudaRedirect:
    """Within the block, ``Tensor.cuda()`` in this thread returns the tensor on ``device``."""

    def __init__(self, device: Optional[torch.device]) -> None:
        self.device = device

    def __enter__(self) -> None:
        self.saved = _target_device()
        _local.device = self.device

    def __exit__(self, *exc: Any) -> None:
        _local.device = self.saved


def _install_tensor_cuda_redirect() -> None:
    original = torch.Tensor.cuda
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def cuda(self, *args, **kwargs):
        device = _target_device()
        if device is not None:
            return self.to(device)
        return original(self, *args, **kwargs)

    setattr(cuda, _MARK, True)
    torch.Tensor.cuda = cuda  # type: ignore[method-assign]


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
    _install_tensor_cuda_redirect()
    populate_modules = model_cls.populate_modules
    get_outputs = model_cls.get_outputs

    @functools.wraps(populate_modules)
    def populate_modules_cpu(self, *args, **kwargs):
        with _CudaRedirect(torch.device("cpu")):  # parameters are built on the CPU
            return populate_modules(self, *args, **kwargs)

    @functools.wraps(get_outputs)
    def get_outputs_cpu(self, *args, **kwargs):
        with _CudaRedirect(self.means.device):
            return get_outputs(self, *args, **kwargs)

    model_cls.populate_modules = populate_modules_cpu
    model_cls.get_outputs = get_outputs_cpu


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches splatfacto right after its module body runs (the first ``import``)."""

    def find_spec(self, fullname, path, target=None):  # type: ignore[override]
        if fullname != SPLATFACTO:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch_or_warn(module)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


_finder = _PatchOnImport()


def _patch_or_warn(module: Any) -> None:
    try:
        _patch(module)
    except Exception as err:  # noqa: BLE001 - a gsplat problem must not break other methods
        import warnings

        warnings.warn(
            f"splatfacto stays GPU-only: nerfconvert's CPU rasterizer could not be installed ({type(err).__name__}: {err})",
            RuntimeWarning,
            stacklevel=2,
        )


def install_cpu_rasterizer(now: bool = False) -> None:
    """Make splatfacto render on the CPU (idempotent). Patches ``nerfstudio.models.splatfacto`` at
    once if it is imported (or ``now``: import it), otherwise when it is first imported, so that
    processes that never use splatfacto do not pay for importing it."""
    module = sys.modules.get(SPLATFACTO)
    if module is None and now:
        module = importlib.import_module(SPLATFACTO)
    if module is not None:
        _patch(module)
    elif _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)

