"""A child ``ns-train``: ``python sigkill_train.py <config.yml> <step> [after|during]`` trains the
saved config through nerfstudio's ``train.main`` and SIGKILLs itself as an out-of-memory kill or a
lost machine would end a run in the middle of training:

- ``after`` (default): right after the checkpoint of ``step`` is on disk;
- ``during``: halfway through writing the checkpoint of ``step`` (half of its bytes are written and
  synced to wherever the trainer writes it, then the process dies).

``tests/processes.py``'s ``train_until_killed`` runs it."""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path

import yaml


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    config_path, kill_step = Path(sys.argv[1]), int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "after"
    assert mode in ("after", "during"), mode
    import torch
    from nerfstudio.engine.trainer import Trainer
    from nerfstudio.scripts import train

    config = yaml.load(config_path.read_text(), Loader=yaml.Loader)  # imports the run's trainer class
    if mode == "after":
        classes, todo = set(), [Trainer]
        while todo:  # nerfstudio's Trainer and every subclass that writes checkpoints its own way
            cls = todo.pop()
            classes.add(cls)
            todo.extend(cls.__subclasses__())
        for cls in classes:
            if "save_checkpoint" not in vars(cls):
                continue

            def save_then_die(self, step: int, _save=vars(cls)["save_checkpoint"]) -> None:
                _save(self, step)
                if step == kill_step:
                    die()

            cls.save_checkpoint = save_then_die
    else:
        real_save = torch.save

        def torn_save(obj, f, *args, **kwargs):
            if not (isinstance(obj, dict) and obj.get("step") == kill_step and "optimizers" in obj):
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            half = buffer.getvalue()[: len(buffer.getvalue()) // 2]
            if isinstance(f, (str, os.PathLike)):
                with open(f, "wb") as out:
                    out.write(half)
                    out.flush()
                    os.fsync(out.fileno())
            else:
                f.write(half)
                f.flush()
                os.fsync(f.fileno())
            die()

        torch.save = torn_save
    train.main(config)


if __name__ == "__main__":
    main()
