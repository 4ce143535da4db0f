"""Compressed models keep only their ``.ncz`` bytes in nerfstudio checkpoints.

Shared by vq-compression and entropy-compression: ``state_dict()`` packs the model into the file,
``load_state_dict()`` decodes it, so ``ns-viewer``, ``ns-eval`` and ``ns-export`` load the
compressed scene through nerfstudio's own checkpoint loading. Both hold the decoded stock model
as ``self.inner`` and answer for it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar, Dict

import torch
from torch import Tensor

from nerfconvert import NerfconvertError
from nerfconvert.compress import container

NCZ_KEY = "ncz"
"""The one state-dict entry of a compressed model: the .ncz file as a uint8 tensor."""
RESUME_PREFIX = "resume."
"""While fine-tuning, a checkpoint also keeps the full-precision training tensors the file does not
store (``resume_state``), so that ``ns-train --load-dir`` continues where the run was stopped.
Decoders ignore them."""


class NczCheckpointMixin:
    """Put before ``Model`` in the bases; the class provides ``pack() -> bytes`` and ``load_ncz(bytes)``."""

    ncz_method: ClassVar[str]
    """The method named in the error for a checkpoint without the file."""

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        if destination is None:
            destination = OrderedDict()
        data = self.pack()
        destination[prefix + NCZ_KEY] = torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()
        for key, value in self.resume_state().items():
            destination[prefix + RESUME_PREFIX + key] = value.detach().cpu().clone()
        return destination

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if NCZ_KEY not in state_dict:
            raise NerfconvertError(
                f"This checkpoint has no compressed scene (no '{NCZ_KEY}' entry): it was not written by "
                f"{self.ncz_method}. Load it with the method that trained it."
            )
        value = state_dict[NCZ_KEY]
        data = value.cpu().numpy().tobytes() if isinstance(value, Tensor) else bytes(value)
        self.load_ncz(data)
        extras = {k[len(RESUME_PREFIX):]: v for k, v in state_dict.items() if k.startswith(RESUME_PREFIX)}
        if extras:
            self.load_resume_state(extras)

    def resume_state(self) -> Dict[str, Tensor]:
        """Training tensors a checkpoint keeps next to the file while fine-tuning (none by default)."""
        return {}

    def load_resume_state(self, state: Dict[str, Tensor]) -> None:
        """Restore ``resume_state`` after ``load_ncz`` (ignored unless the model is fine-tuning)."""

    def update_to_step(self, step: int) -> None:
        pass  # shapes come from the file

    def __getattr__(self, name: str):
        # tools reach into the model (ns-export reads renderer_rgb): answer for the stock model inside
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("inner")
            if inner is None:
                raise
            return getattr(inner, name)

    def write_outputs(self, run_dir: Path, name: str, data: bytes, report: Dict[str, Any], report_name: str) -> Path:
        """``<run_dir>/<name>`` (atomically) and the run's JSON report of plain values."""
        path = run_dir / name
        container.write_bytes_atomic(path, data)
        plain = {k: v for k, v in report.items() if isinstance(v, (int, float, str))}
        (run_dir / report_name).write_text(json.dumps(plain, indent=2))
        return path
