"""What a run needs to resume after it was killed (SIGKILL, out of memory, a lost machine).

1. Checkpoints are written atomically. nerfstudio's trainer writes ``step-N.ckpt`` in place, and
   ``--load-dir`` takes the highest step it finds, so a kill while a checkpoint was written left a
   torn file that the resumed run could not load (and, with ``save_only_latest_checkpoint``, the
   previous one may already be gone by then). Here a checkpoint is written to a temporary file next
   to the checkpoint folder, synced, and renamed into place: ``nerfstudio_models`` holds whole
   checkpoints only, and the older ones are deleted after the new one is in place.
2. Checkpoints keep the random state (torch, numpy, Python; CUDA where there is one) as it is at
   the end of their step, and a resumed run starts from it: the rays it samples and the noise it
   draws are those the uninterrupted run would have drawn next (one process: a run on several GPUs
   keeps each rank's own seed).
3. A resumed run knows where it starts. nerfstudio counts ``--max-num-iterations`` from the
   checkpoint's step (a run resumed at step k trains steps k .. k + max - 1), so the run a schedule
   has to fit ends at ``resume_step + max_num_iterations``, not at ``max_num_iterations``
   (``run_end``): learning-rate decay, plenoxels' upsampling and pruning, pvd-al's stages.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from nerfstudio.engine.trainer import Trainer
from nerfstudio.utils.decorators import check_main_thread

CHECKPOINT_NAME = re.compile(r"^step-(\d+)\.ckpt$")


def checkpoint_to_load(config: Any) -> Optional[Path]:
    """The checkpoint a run of ``config`` resumes from (``--load-dir`` with or without ``--load-step``,
    or ``--load-checkpoint``), chosen as nerfstudio's trainer chooses it; None for a fresh run, or when
    there is none (the trainer then says why)."""
    load_dir = getattr(config, "load_dir", None)
    if load_dir is not None:
        step = getattr(config, "load_step", None)
        if step is None:
            try:
                steps = [int(m.group(1)) for m in map(CHECKPOINT_NAME.match, os.listdir(load_dir)) if m]
            except OSError:
                return None
            if not steps:
                return None
            step = max(steps)
        path = Path(load_dir) / f"step-{int(step):09d}.ckpt"
        return path if path.is_file() else None
    checkpoint = getattr(config, "load_checkpoint", None)
    return Path(checkpoint) if checkpoint is not None and Path(checkpoint).is_file() else None


def resume_step(config: Any) -> int:
    """The first step of a run of ``config``: the step after its checkpoint, 0 for a fresh run."""
    path = checkpoint_to_load(config)
    if path is None:
        return 0
    match = CHECKPOINT_NAME.match(path.name)
    if match:
        return int(match.group(1)) + 1
    try:
        return int(torch.load(path, map_location="cpu", mmap=True)["step"]) + 1
    except Exception:  # noqa: BLE001 - the trainer reports an unreadable checkpoint
        return 0


def run_end(config: Any) -> int:
    """The step a run of ``config`` ends at (exclusive): its first step plus ``--max-num-iterations``."""
    return resume_step(config) + int(config.max_num_iterations)


def save_atomic(obj: Any, path: Path, tmp_dir: Optional[Path] = None) -> None:
    """``torch.save(obj, path)``, all or nothing: a temporary file in ``tmp_dir`` (default: next to
    ``path``; same file system), flushed, synced and renamed onto ``path``."""
    path = Path(path)
    tmp_dir = Path(tmp_dir) if tmp_dir is not None else path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def random_states() -> Dict[str, Any]:
    """Every global random generator's state, as tensors and numbers (safe loading reads them)."""
    import random

    import numpy as np

    kind, key, pos, has_gauss, cached = np.random.get_state()
    states: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": rng_state(random),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: Dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    set_rng_state(random, states["python"])
    cuda = states.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class ResumableTrainer(Trainer):
    """nerfstudio's Trainer with atomic checkpoints that keep the random state, and a resume that
    restores it (see the module docstring). The rest of the checkpoint is nerfstudio's."""

    def _load_checkpoint(self) -> None:
        super()._load_checkpoint()
        path = checkpoint_to_load(self.config)
        if path is None or self.world_size > 1:
            return
        states = torch.load(path, map_location="cpu", mmap=True).get("random")
        if states is not None:
            set_random_states(states)

    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        ckpt_path: Path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        state: Dict[str, Any] = {
            "step": step,
            "pipeline": pipeline.state_dict(),
            "optimizers": {k: v.state_dict() for (k, v) in self.optimizers.optimizers.items()},
            "schedulers": {k: v.state_dict() for (k, v) in self.optimizers.schedulers.items()},
            "scalers": self.grad_scaler.state_dict(),
            "random": random_states(),  # at the end of this step: what the next one starts from
        }
        # the temporary file lives next to the checkpoint folder, not in it: --load-dir reads every
        # name in that folder as step-<N>.ckpt
        save_atomic(state, ckpt_path, tmp_dir=self.checkpoint_dir.parent)
        if self.config.save_only_latest_checkpoint:
            for f in self.checkpoint_dir.glob("*.ckpt"):
                if f != ckpt_path:
                    f.unlink()


class OptionalExtraState(torch.nn.Module):
    """A module whose ``get_extra_state`` goes into checkpoints (what training needs to continue
    where it stopped, e.g. a data stream's random state) while a checkpoint written without it
    still loads, strictly or not: its state then starts afresh, as it did before."""

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        key = prefix + torch.nn.modules.module._EXTRA_STATE_KEY_SUFFIX
        if key not in state_dict and key in missing_keys:
            missing_keys.remove(key)


def rng_state(rng: Any) -> Dict[str, Any]:
    """A ``random.Random``'s state as a checkpoint keeps it (tensors and numbers: safe loading)."""
    version, internal, gauss = rng.getstate()
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def set_rng_state(rng: Any, state: Dict[str, Any]) -> None:
    rng.setstate((int(state["version"]), tuple(int(v) for v in state["internal"].tolist()), state["gauss"]))
