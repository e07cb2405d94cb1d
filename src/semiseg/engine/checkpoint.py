"""Atomic checkpoints (temp file + rename) holding everything a run needs to resume exactly."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semiseg.errors import ConfigError

CHECKPOINT_FORMAT = 1


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; checkpoints get the other files' permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint '{path}' does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise ConfigError(f"checkpoint '{path}' cannot be read ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"'{path}' is not a semiseg checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu() if hasattr(state["torch"], "cpu") else state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


def seed_everything(seed: int) -> None:
    """One seed for python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_checkpoint(model: Path, which: str = "best") -> Path:
    """A checkpoint file, or a run folder (its ``checkpoint_{which}.pt``, falling back to final)."""
    model = Path(model)
    if model.is_dir():
        for name in (f"checkpoint_{which}.pt", "checkpoint_final.pt"):
            if (model / name).is_file():
                return model / name
        raise ConfigError(f"run folder '{model}' holds no checkpoint_{which}.pt")
    return model


def non_finite_entries(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold a NaN or an infinity."""
    tensors = [(n, t) for n, t in state.items() if torch.is_tensor(t) and t.is_floating_point()]
    if not tensors:
        return []
    ok = finite_flags([t for _, t in tensors])
    if bool(ok.all()):
        return []
    return [n for (n, _), good in zip(tensors, ok.tolist()) if not good]


def finite_flags(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One flag per tensor: holds no NaN and no infinity.

    Fast path: the 2-norm of every tensor in one ``_foreach_norm`` per device and dtype (about 0.5 ms for
    the two networks of a 2D mean teacher on the CPU, against 7 ms for two operations per tensor); a
    tensor holding a NaN or an infinity has a non-finite norm. Only tensors whose norm is not finite --
    which also happens when a finite tensor's norm overflows -- are then checked exactly.
    """
    flags = torch.ones(len(tensors), dtype=torch.bool)
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, t in enumerate(tensors):
        if t.numel():  # an empty tensor holds nothing non-finite
            groups.setdefault((t.device, t.dtype), []).append(i)
    for idx in groups.values():
        norms = torch.stack(torch._foreach_norm([tensors[i].detach() for i in idx], 2))
        suspects = (~torch.isfinite(norms)).nonzero().flatten().tolist()
        for k in suspects:
            flags[idx[k]] = bool(torch.isfinite(tensors[idx[k]].detach()).all())
    return flags
