"""Schedules that follow the run's length.

Users on a CPU run short (``--max-num-iterations 150`` is common), so nothing of ours is
scheduled at an absolute step by default: stage boundaries, upsampling and pruning points are
fractions of the run, and every learning-rate scheduler decays over the run's actual length.
Absolute steps stay available as explicit options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple, Type

from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig

from nerfconvert.resume import ResumableTrainer, run_end


def adam_exponential(lr: float, lr_final: float, max_steps: int, eps: float = 1e-15) -> Dict:
    """Adam at ``lr``, decayed exponentially to ``lr_final`` over ``max_steps``."""
    return {
        "optimizer": AdamOptimizerConfig(lr=lr, eps=eps),
        "scheduler": ExponentialDecaySchedulerConfig(lr_final=lr_final, max_steps=max_steps),
    }


def fit_schedulers(optimizers: Dict, max_steps: int) -> None:
    """Every scheduler with a ``max_steps`` (and its warm-up, if longer) ends with the run."""
    for group in optimizers.values():
        scheduler = group.get("scheduler") if isinstance(group, dict) else None
        if scheduler is None or not hasattr(scheduler, "max_steps"):
            continue
        scheduler.max_steps = max(1, int(max_steps))
        if getattr(scheduler, "warmup_steps", 0) and scheduler.warmup_steps >= scheduler.max_steps:
            scheduler.warmup_steps = scheduler.max_steps // 10


def steps_at(fractions: Sequence[float], total: int) -> Tuple[int, ...]:
    """Fractions of a run of ``total`` steps -> step numbers (rounded, strictly inside the run)."""
    return tuple(int(round(float(f) * total)) for f in fractions)


def distinct_increasing(steps: Sequence[int]) -> Tuple[int, ...]:
    """Steps made strictly increasing (a very short run may round two fractions to one step)."""
    out = []
    for s in steps:
        out.append(s if not out or s > out[-1] else out[-1] + 1)
    return tuple(out)


def run_length(training_callback_attributes, default: int) -> int:
    """The step the trainer's run ends at, as seen from a model's training callbacks: its
    ``--max-num-iterations`` counted from the step it starts at (a run resumed from a checkpoint
    continues the schedule of the whole run; ``nerfconvert.resume``)."""
    trainer = getattr(training_callback_attributes, "trainer", None)
    config = getattr(trainer, "config", None)
    total: Optional[int] = getattr(config, "max_num_iterations", None)
    return int(getattr(trainer, "_start_step", 0) or 0) + int(total) if total else default


@dataclass
class RunLengthTrainerConfig(TrainerConfig):
    """A TrainerConfig whose learning-rate schedules end with the run, whatever
    ``--max-num-iterations`` says. ``ns-train`` calls ``set_timestamp`` before it saves the
    config, so the saved ``config.yml`` shows the schedule that ran. A run resumed with
    ``--load-dir`` ends ``--max-num-iterations`` steps after its checkpoint, and so do its
    schedules; its checkpoints are written atomically (``nerfconvert.resume``)."""

    _target: Type = field(default_factory=lambda: ResumableTrainer)
    min_schedule_steps: int = 0
    """Learning rates decay over the run, but over at least this many steps: a short run keeps
    the larger rates of the method's reference schedule instead of decaying ten times faster."""

    def run_end(self) -> int:
        """The step this run ends at (exclusive), counted from its checkpoint when it resumes."""
        return run_end(self)

    def fit_to_run_length(self) -> None:
        fit_schedulers(self.optimizers, max(self.run_end(), int(self.min_schedule_steps)))

    def set_timestamp(self) -> None:
        self.fit_to_run_length()
        super().set_timestamp()
