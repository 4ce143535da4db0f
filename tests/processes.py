"""Servers the tests start (ns-viewer, nerfconvert view) run in a session of their own and are
stopped with everything they spawned: a tensorf run's ParallelDataManager workers would
otherwise outlive a terminated viewer and hold about 1 GB each until the machine restarts."""

from __future__ import annotations

import os
import signal
import subprocess


def start_group(command, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(command, start_new_session=True, **kwargs)


def stop_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        # the leader is gone; make sure no worker of its group survives it
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return
