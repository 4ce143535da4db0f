"""Our patches of nerfstudio 1.1.5 and torch: the ledger (README.md has the same table).

They are installed only by the entry points: nerfstudio's plugin discovery, which imports
``method_configs`` (every ``ns-*`` command, and any code that reads
``nerfstudio.configs.method_configs``), and the ``nerfconvert`` command. Importing a module of the
``nerfconvert`` library patches nothing (``tests/test_compat.py`` checks this in a fresh interpreter).
Library code that needs one fix while it runs calls the narrow function for it
(``checkpoint_globals()``, ``rebind_optimizers``); ``nerfconvert.views.load_run`` and ``load_pipeline``,
which run nerfstudio's model set-up and checkpoint loading, still call ``install()`` when called. Each patch has a test that shows the bug on the
unpatched stack and fails without the patch (``tests/test_compat.py``).

1. Safe checkpoint loading (nerfstudio#3683). Since torch 2.6 ``torch.load`` defaults to
   ``weights_only=True``; nerfstudio 1.1.5 loads its checkpoints without arguments
   (``eval_utils.py:62``, ``trainer.py:432,443``), and they hold numpy scalars (scheduler and
   grad-scaler state): UnpicklingError. Patch: exactly those numpy globals are allow-listed
   (``torch.serialization.add_safe_globals``). Safe loading stays on.
2. Offline LPIPS (no upstream issue: nerfstudio models build torchmetrics' LPIPS in
   ``populate_modules``, which downloads AlexNet's weights; offline, ``ns-train`` dies). Patch:
   ``torchmetrics.image.lpip.LearnedPerceptualImagePatchSimilarity`` degrades to "unavailable" (one
   warning), and each model's ``get_image_metrics_and_images`` leaves the metric out (a hook on
   ``Model.__init_subclass__`` wraps models defined later).
3. Start-up time (no upstream issue): ``ExternalMethodDummyTrainerConfig.__post_init__``
   (``external_methods.py:303``) asks ``inspect.stack()[2]`` who built it, once for each of the
   26 not-installed external methods at every ``ns-*`` start: a walk that reads every frame's
   source, about 3 s of CPU. Patch: the same frame, read with ``sys._getframe(2)``.
4. Splatfacto checkpoints (no upstream issue): ``SplatfactoModel.load_state_dict``
   (``splatfacto.py:380``) puts new ``Parameter`` objects into ``gauss_params``, after the trainer
   built its optimizers around the old ones; a resumed or fine-tuned (``--load-dir``) run trained
   tensors the model no longer used, and the loaded Gaussians did not move until a densification
   rebuilt the optimizers. Patch (``nerfconvert.splat.shim.keep_parameters_on_load``, in the splat
   method's own package): the loaded values go into the model's own Parameters.
5. Splatfacto without CUDA: ``nerfconvert.splat.shim`` (its docstring) routes splatfacto's
   rasterization to a pure-torch rasterizer, and, where torch has no CUDA device, keeps the tensors
   of splatfacto's two ``.cuda()`` calls (``splatfacto.py:261,579``) on the model's device.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from typing import Any, Iterator, List, Optional

import torch
from torch import nn

_installed = False
_quiet_discovery = 0
"""> 0 while a library module loads nerfstudio's method table (see ``table_without_patches``)."""


@contextlib.contextmanager
def table_without_patches() -> Iterator[None]:
    """Load nerfstudio's method table here without installing the patches. ``nerfconvert.distill``
    needs the stock methods' configs at import, and the table's plugin discovery imports our entry
    points (``method_configs``), which install the patches for ``ns-*`` commands; a library import
    must not. Code that needs the patches later calls ``install()`` (the ``nerfconvert`` command, and
    ``nerfconvert.views.load_run``)."""
    global _quiet_discovery
    _quiet_discovery += 1
    try:
        yield
    finally:
        _quiet_discovery -= 1


def install_for_entry_point() -> None:
    """What ``method_configs`` runs when nerfstudio's plugin discovery imports it: ``install()``,
    unless the discovery was started by a library import (``table_without_patches``)."""
    if not _quiet_discovery:
        install()


# ---------------------------------------------------------------------------------------
# 1. torch.load allow-list
# ---------------------------------------------------------------------------------------
def checkpoint_numpy_globals() -> List[Any]:
    """The numpy globals found in nerfstudio 1.1.5 checkpoints, and nothing else.

    nerfstudio's exponential-decay scheduler computes learning rates with numpy, so the
    optimizers' and schedulers' saved state holds ``numpy.float64`` scalars. One pickles as
    ``numpy.core.multiarray.scalar(dtype, bytes)`` (``numpy._core`` in numpy 2) with its
    ``numpy.dtype``, whose rebuilt object is a ``numpy.dtypes.Float64DType`` (numpy >= 1.25).
    """
    import numpy as np

    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import scalar

    found: List[Any] = [scalar, np.dtype]
    if hasattr(np, "dtypes"):
        found.append(np.dtypes.Float64DType)
    return found


def install_safe_globals() -> None:
    """Allow-list ``checkpoint_numpy_globals()`` for every ``torch.load`` of the process (patch 1)."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:  # torch < 2.4 has no weights_only default to work around
        return
    add(checkpoint_numpy_globals())


def checkpoint_globals() -> contextlib.AbstractContextManager:
    """Within the block, ``torch.load`` (safe) reads nerfstudio checkpoints: patch 1 for our own
    loads only, nothing installed."""
    scoped = getattr(torch.serialization, "safe_globals", None)
    if scoped is None:  # torch < 2.5: no weights_only default to work around either
        return contextlib.nullcontext()
    # torch's block removes its globals at the end, even those allowed before it (patch 1's): only
    # the ones not allowed yet go in
    allowed = torch.serialization.get_safe_globals()
    return scoped([g for g in checkpoint_numpy_globals() if g not in allowed])


# ---------------------------------------------------------------------------------------
# 2. LPIPS that degrades offline
# ---------------------------------------------------------------------------------------
class UnavailableLPIPS(nn.Module):
    """Stands in for torchmetrics' LPIPS when its weights cannot be loaded.

    It returns NaN, and the models' metric dictionaries drop the key (see
    ``_drop_unavailable_lpips``), so ``ns-eval`` reports LPIPS as missing, not as a number.
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__()
        self.reason = reason

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        return torch.tensor(float("nan"), device=img1.device)


_lpips_warned = False
_RealLPIPS = None
_lpips_failed: Optional[tuple] = None
"""(the LPIPS class that failed, why): every model builds LPIPS, and a failed weights download
costs seconds, so a process tries once."""


def offline_safe_lpips(*args: Any, **kwargs: Any) -> nn.Module:
    """Build torchmetrics' LPIPS, or an ``UnavailableLPIPS`` if its weights can't be had."""
    global _lpips_warned, _lpips_failed
    if _lpips_failed is not None and _lpips_failed[0] is _RealLPIPS:
        return UnavailableLPIPS(reason=_lpips_failed[1])
    try:
        # Building it draws AlexNet's random initial weights: the global random state is left as it
        # was, so that a model built next starts from the same weights whether or not this process
        # tried LPIPS before (a run resumed in a new process continues the run it resumes).
        with torch.random.fork_rng(devices=[]):
            return _RealLPIPS(*args, **kwargs)
    except (OSError, RuntimeError, ValueError) as err:  # URLError is an OSError
        _lpips_failed = (_RealLPIPS, str(err))
        if not _lpips_warned:
            _lpips_warned = True
            warnings.warn(
                "LPIPS is unavailable: its AlexNet weights could not be loaded "
                f"({type(err).__name__}: {err}). LPIPS will be reported as missing. To enable it, "
                "put alexnet-owt-7be5be79.pth in $TORCH_HOME/hub/checkpoints (default ~/.cache/torch).",
                RuntimeWarning,
                stacklevel=2,
            )
        return UnavailableLPIPS(reason=str(err))


def _drop_unavailable_lpips(method):
    if getattr(method, "_nerfconvert_wrapped", False):
        return method

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        metrics, images = method(self, *args, **kwargs)
        if isinstance(getattr(self, "lpips", None), UnavailableLPIPS):
            metrics = {k: v for k, v in metrics.items() if "lpips" not in k}
        return metrics, images

    wrapped._nerfconvert_wrapped = True  # type: ignore[attr-defined]
    return wrapped


def _wrap_metrics(cls: type) -> None:
    if "get_image_metrics_and_images" in cls.__dict__:
        cls.get_image_metrics_and_images = _drop_unavailable_lpips(cls.__dict__["get_image_metrics_and_images"])


def install_offline_lpips() -> None:
    global _RealLPIPS
    import torchmetrics.image
    import torchmetrics.image.lpip as lpip_module
    from nerfstudio.models.base_model import Model

    if _RealLPIPS is None:
        _RealLPIPS = lpip_module.LearnedPerceptualImagePatchSimilarity
    # nerfstudio imports the class inside populate_modules, so patching the module attribute
    # reaches every stock model (nerfacto, tensorf, vanilla-nerf, mipnerf, splatfacto, ...).
    lpip_module.LearnedPerceptualImagePatchSimilarity = offline_safe_lpips
    torchmetrics.image.LearnedPerceptualImagePatchSimilarity = offline_safe_lpips

    # Drop the metric from every model class, present and future.
    pending = [Model]
    while pending:
        cls = pending.pop()
        _wrap_metrics(cls)
        pending.extend(cls.__subclasses__())
    if not getattr(Model, "_nerfconvert_subclass_hook", False):
        original_hook = Model.__dict__.get("__init_subclass__")

        def __init_subclass__(cls, **kwargs):
            if original_hook is not None:
                original_hook.__func__(cls, **kwargs)
            else:
                super(Model, cls).__init_subclass__(**kwargs)
            _wrap_metrics(cls)

        Model.__init_subclass__ = classmethod(__init_subclass__)
        Model._nerfconvert_subclass_hook = True


# ---------------------------------------------------------------------------------------
# 3. start-up: nerfstudio's external-method registration without inspect.stack()
# ---------------------------------------------------------------------------------------
def install_fast_external_methods() -> None:
    """``ExternalMethodDummyTrainerConfig.__post_init__`` returns at once when ``get_external_methods``
    builds it (at every ``ns-*`` start, after our entry points are loaded) and otherwise offers to
    install the method. It tells the two apart with ``inspect.stack()[2].function``, which reads the
    source of every frame on the stack; ``sys._getframe(2)`` is the same frame, without the reads."""
    from nerfstudio.configs import external_methods

    cls = external_methods.ExternalMethodDummyTrainerConfig
    original = cls.__post_init__
    if getattr(original, "_nerfconvert_fast", False):
        return

    def __post_init__(self) -> None:
        # frames: 0 this method, 1 the dataclass __init__, 2 whoever built the config
        if sys._getframe(2).f_code.co_name == "get_external_methods":
            return
        original(self)  # built from the command line: nerfstudio's install offer, unchanged

    __post_init__._nerfconvert_fast = True  # type: ignore[attr-defined]
    cls.__post_init__ = __post_init__


# ---------------------------------------------------------------------------------------
# 4. splatfacto's checkpoint loading keeps the model's Parameters
# ---------------------------------------------------------------------------------------
def rebind_optimizers(optimizers: Any, param_groups: dict) -> int:
    """Point every optimizer of ``optimizers`` (nerfstudio's ``Optimizers``) at the parameters of
    ``param_groups`` (a pipeline's ``get_param_groups()``), moving per-parameter state (Adam's
    moments) to the new tensor where its shapes fit. Returns how many parameters were rebound.
    For code that loads a model whose parameters were replaced (patch 4 makes splatfacto's loads
    keep theirs, so this finds nothing to do there)."""
    rebound = 0
    for name, params in param_groups.items():
        optimizer = optimizers.optimizers.get(name)
        if optimizer is None:
            continue
        current = [p for group in optimizer.param_groups for p in group["params"]]
        if len(current) != len(params) or all(a is b for a, b in zip(current, params)):
            continue
        new_params = iter(params)
        for group in optimizer.param_groups:
            for i, old in enumerate(group["params"]):
                new = next(new_params)
                if new is old:
                    continue
                state = optimizer.state.pop(old, None)
                fits = state is not None and all(
                    not torch.is_tensor(v) or v.dim() == 0 or v.shape == new.shape for v in state.values()
                )
                if fits:
                    optimizer.state[new] = state
                group["params"][i] = new
                rebound += 1
    return rebound


def install() -> None:
    """Install the patches 1-5 (idempotent). Called by the entry points only: ``method_configs``
    (nerfstudio's plugin discovery) and ``nerfconvert.cli.main``."""
    global _installed
    if _installed:
        return
    install_safe_globals()
    install_offline_lpips()
    from nerfconvert.splat.shim import install_splatfacto_loading  # the splat method's own package

    install_splatfacto_loading()
    install_fast_external_methods()
    try:  # splatfacto on the CPU (nerfconvert/splat); a gsplat problem must not break other methods
        from nerfconvert.splat.shim import install_cpu_rasterizer

        install_cpu_rasterizer()
    except Exception as err:  # noqa: BLE001
        warnings.warn(f"splatfacto stays GPU-only: the CPU rasterizer shim failed ({type(err).__name__}: {err})", RuntimeWarning)
    _installed = True


# ---------------------------------------------------------------------------------------
# 5. one run's event writers
# ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def own_event_writers() -> Iterator[None]:
    """nerfstudio's event writers are process-global: a run trained in this process (a teacher, an
    earlier stage) would keep receiving every later run's scalars, appended to its tfevents file, so
    a teacher's run directory would change after it was only read. Within this block a run logs to
    its own directory only, and its writers are closed at the end."""
    from nerfstudio.utils import writer

    saved = (list(writer.EVENT_WRITERS), list(writer.EVENT_STORAGE), dict(writer.GLOBAL_BUFFER))
    writer.EVENT_WRITERS.clear()
    writer.EVENT_STORAGE.clear()
    try:
        yield
    finally:
        for w in writer.EVENT_WRITERS:
            tb = getattr(w, "tb_writer", None)
            if tb is not None:
                tb.close()
        writer.EVENT_WRITERS[:] = saved[0]
        writer.EVENT_STORAGE[:] = saved[1]
        writer.GLOBAL_BUFFER.clear()
        writer.GLOBAL_BUFFER.update(saved[2])
