"""A child ``ns-train``: ``python sigkill_train.py <config.yml> <step>`` trains the saved config
through nerfstudio's ``train.main`` and SIGKILLs itself right after the checkpoint of ``step`` is
on disk, as an out-of-memory kill or a lost machine would end a run in the middle of fine-tuning."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import yaml


def main() -> None:
    config_path, kill_step = Path(sys.argv[1]), int(sys.argv[2])
    from nerfstudio.engine.trainer import Trainer
    from nerfstudio.scripts import train

    save = Trainer.save_checkpoint

    def save_then_die(self, step: int) -> None:
        save(self, step)
        if step == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)

    Trainer.save_checkpoint = save_then_die
    train.main(yaml.load(config_path.read_text(), Loader=yaml.Loader))


if __name__ == "__main__":
    main()
