"""Multi-process training on CPU through nerfstudio's own ``--machine.num-devices``.

nerfstudio 1.1.5 already picks the gloo backend for non-CUDA devices, but its spawned worker
asserts that CUDA is available and that there are as many GPUs as processes, and its
VanillaPipeline passes ``device_ids`` to DDP (GPU only). ``DistillNerfPipeline`` wraps DDP
itself; this module swaps in a worker without the CUDA assertions for CPU runs. CUDA runs keep
nerfstudio's worker unchanged.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any, Callable

_original_worker = None


def _worker(local_rank: int, main_func: Callable, world_size: int, num_devices_per_machine: int, machine_rank: int,
            dist_url: str, config: Any, timeout: timedelta = timedelta(minutes=30), device_type: str = "cuda") -> Any:
    if device_type == "cuda" and _original_worker is not None:
        return _original_worker(local_rank, main_func, world_size, num_devices_per_machine, machine_rank, dist_url,
                                config, timeout, device_type)
    import torch.distributed as dist
    from nerfstudio.utils import comms

    global_rank = machine_rank * num_devices_per_machine + local_rank
    dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size, rank=global_rank,
                            timeout=timeout)
    for i in range(world_size // num_devices_per_machine):
        group = dist.new_group(list(range(i * num_devices_per_machine, (i + 1) * num_devices_per_machine)))
        if i == machine_rank:
            comms.LOCAL_PROCESS_GROUP = group
    output = main_func(local_rank, world_size, config, global_rank)
    comms.synchronize()
    dist.destroy_process_group()
    return output


def enable_cpu_workers() -> None:
    """Point ``ns-train``'s launcher at :func:`_worker` (idempotent). Only once
    nerfstudio.scripts.train has finished importing: patching it mid-import would be undone."""
    global _original_worker
    train = sys.modules.get("nerfstudio.scripts.train")
    if train is None or not hasattr(train, "launch") or not hasattr(train, "_distributed_worker"):
        return
    if train._distributed_worker is _worker:
        return
    _original_worker = train._distributed_worker
    train._distributed_worker = _worker
