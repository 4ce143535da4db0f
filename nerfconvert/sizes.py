"""How big a trained run is, as the compression papers measure it (the "size before" of
``nerfconvert convert`` and of the vq / entropy benchmarks)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import torch


def zipped_checkpoint_bytes(config_path: Path, weights_only: bool = True) -> int:
    """Size of the run's latest checkpoint as the papers measure a model: saved, zipped (deflate).

    nerfstudio checkpoints also hold the optimizers' Adam moments (twice the weights); those are
    not part of the model, so by default only the pipeline state is saved and zipped."""
    ckpt = sorted((Path(config_path).parent / "nerfstudio_models").glob("step-*.ckpt"))[-1]
    raw = ckpt.read_bytes()
    if weights_only:
        from nerfconvert import compat

        with compat.checkpoint_globals():  # nerfstudio checkpoints hold numpy scalars
            state = torch.load(io.BytesIO(raw), map_location="cpu")
        buffer = io.BytesIO()
        torch.save(state["pipeline"], buffer)
        raw = buffer.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.ckpt", raw)
    return len(out.getvalue())
