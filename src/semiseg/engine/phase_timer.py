"""Where a run's time goes: wall time per phase of the training loop (issue 13).

Phases nest (a network's forward inside the training step, the backward pass a method starts with
``optimize`` inside its training step); each phase's time is *exclusive*: a nested phase's time is
taken out of the phase around it, so the phases add up to the loop's time. The forward passes of a
method's networks are timed by hooks while the training step runs (not during validation, which is
its own phase). On CUDA every boundary synchronises the device, so profiling is off there by default
(``train.profile: auto``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from torch import nn


class PhaseTimer:
    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._sync = sync
        self._stack: list[list[Any]] = []  # [name, start, seconds of nested phases]
        self._forwards_on = False

    def start(self, name: str) -> None:
        if self._sync:
            self._sync()
        self._stack.append([name, time.perf_counter(), 0.0])

    def stop(self) -> None:
        if self._sync:
            self._sync()
        name, t0, nested = self._stack.pop()
        elapsed = time.perf_counter() - t0
        self.seconds[name] += elapsed - nested
        self.calls[name] += 1
        if self._stack:
            self._stack[-1][2] += elapsed

    @contextmanager
    def phase(self, name: str, forwards: bool = False) -> Iterator[None]:
        """Time ``name``; ``forwards``: time the hooked networks' forward passes inside it."""
        self.start(name)
        was, self._forwards_on = self._forwards_on, forwards or self._forwards_on
        try:
            yield
        finally:
            self._forwards_on = was
            self.stop()

    def hook_forwards(self, networks: dict[str, nn.Module]) -> list[Any]:
        """Time each network's forward pass (phase ``forward <name>``) inside phases opened with ``forwards``."""
        handles = []
        for name, net in networks.items():
            label = f"forward {name}"

            def pre(_m: nn.Module, _a: Any, label: str = label) -> None:
                if self._forwards_on:
                    self.start(label)

            def post(_m: nn.Module, _a: Any, _o: Any, label: str = label) -> None:
                if self._forwards_on and self._stack and self._stack[-1][0] == label:
                    self.stop()

            handles += [net.register_forward_pre_hook(pre), net.register_forward_hook(post)]
        return handles

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": dict(self.seconds), "calls": dict(self.calls)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seconds = defaultdict(float, state.get("seconds", {}))
        self.calls = defaultdict(int, state.get("calls", {}))

    def rows(self, steps: int) -> list[dict[str, Any]]:
        """Per phase: seconds, milliseconds per training step and share of the timed total, largest first."""
        total = sum(self.seconds.values()) or 1.0
        return [{"phase": n, "seconds": round(s, 3), "ms_per_step": round(1000 * s / max(steps, 1), 2),
                 "share": round(s / total, 4), "calls": self.calls[n]}
                for n, s in sorted(self.seconds.items(), key=lambda kv: -kv[1])]


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, GiB (``getrusage``; 0.0, "unknown", where the platform has none)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return 0.0
    import sys

    scale = 2**30 if sys.platform == "darwin" else 2**20  # macOS reports bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
