"""One optimizer entry as nerfstudio's ``TrainerConfig.optimizers`` wants it, shared by our method configs."""

from __future__ import annotations

from typing import Dict

from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig


def adam_exponential(lr: float, lr_final: float, max_steps: int, eps: float = 1e-15) -> Dict:
    """Adam at ``lr``, decayed exponentially to ``lr_final`` over ``max_steps``."""
    return {
        "optimizer": AdamOptimizerConfig(lr=lr, eps=eps),
        "scheduler": ExponentialDecaySchedulerConfig(lr_final=lr_final, max_steps=max_steps),
    }
