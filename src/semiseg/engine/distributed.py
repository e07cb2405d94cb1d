"""Data-parallel training across processes (``torchrun --nproc_per_node N -m semiseg train ...``).

The engine does not wrap networks in ``DistributedDataParallel``: a method owns several networks
and calls them directly (students, teachers, discriminators, several forward passes per step), so
the engine averages the gradients of each optimizer's parameters across ranks after the backward
pass instead; this is the same update DDP makes, for every method. Each rank draws its own
batches (the loader seed is offset by the rank), so N ranks train with N times the batch.
Initial weights are broadcast from rank 0. Batch-norm statistics stay per rank (checkpoints hold
rank 0's); validation, logs and checkpoints are rank 0's; decisions that change the control flow
(a skipped non-finite step, early stopping) are agreed by all ranks.

Backends: NCCL on CUDA (one GPU per rank, ``LOCAL_RANK``), Gloo on CPU.
"""

from __future__ import annotations

import os
from typing import Iterable

import torch
import torch.distributed as dist

from semiseg.errors import ConfigError


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def init_from_environment(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); returns this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ConfigError(f"rank with LOCAL_RANK={local} has no GPU: {torch.cuda.device_count()} visible; "
                              "start at most one process per GPU (torchrun --nproc_per_node), or train.device=cpu")
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if is_distributed():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Mean of each gradient over the ranks, in one flattened all-reduce.

    A parameter whose gradient is None on every rank stays None (the optimizer skips it, as it would
    in one process); one that has a gradient on some rank only gets zeros elsewhere first.
    """
    if not is_distributed():
        return
    ps = [p for p in params if p.requires_grad]
    if not ps:
        return
    has = torch.tensor([p.grad is not None for p in ps], dtype=torch.float32, device=ps[0].device)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    live = [p for p, h in zip(ps, has.tolist()) if h > 0]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not live:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in live])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(world_size())
    offset = 0
    for p in live:
        n = p.grad.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
