"""The run folder: resolved config, splits, environment record, log, metrics, checkpoints."""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from semiseg.errors import ConfigError

FILES = ("config.yaml", "splits.json", "environment.json", "train.log", "metrics.csv")
MARKER = ".semiseg_run"
"""Written first into every run folder: ``--overwrite`` only ever empties folders that carry it."""
INIT_FROM = "init_from.json"
"""Written by a run that starts from another (``method.init_from``): which weights, and that run's trajectory."""
TRAINING_LOCK = ".semiseg_training"
"""Held while a process trains or scores the run (:func:`training_lock`): no other semiseg process deletes,
replaces, resumes or trains the folder meanwhile. Never part of a record."""
OWN_FILES = FILES + (MARKER, "progress.png", "benchmark_time.json", "profile.csv", INIT_FROM, TRAINING_LOCK)
OWN_PATTERNS = ("checkpoint_*.pt", ".checkpoint_*.pt.*", "eval_*", "advice_*", "tensorboard")
"""What semiseg writes into a run folder (checkpoints, their temp files, evaluations, advice, TensorBoard logs)."""


def trajectory_fingerprint(run_dir: Path) -> str | None:
    """The SHA-256 of a run's ``metrics.csv`` (its losses and validation scores at every logged step, no timings),
    or None without one. Two trainings with one fingerprint followed one trajectory: the same model (a run
    repeats bit for bit on machines whose kernels round alike, and a retraining elsewhere shows up here)."""
    import hashlib

    path = Path(run_dir) / "metrics.csv"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def write_init_from(run_dir: Path, init_from: Path, checkpoint: Path, step: int) -> None:
    """Record what a run started from (:data:`INIT_FROM`): the ``init_from`` given, the file loaded, its step, and
    the trajectory fingerprint of the run folder it came from (a benchmark compares it with that run's current one)."""
    init_from = Path(init_from)
    folder = init_from if init_from.is_dir() else init_from.parent
    (Path(run_dir) / INIT_FROM).write_text(json.dumps(
        {"init_from": str(init_from), "checkpoint": Path(checkpoint).name, "step": int(step),
         "source_trajectory": trajectory_fingerprint(folder)}, indent=1))


def foreign_entries(path: Path) -> list[str]:
    """Entries of a run folder that semiseg did not write (the user's own files)."""
    own = set(OWN_FILES) | {p.name for pattern in OWN_PATTERNS for p in path.glob(pattern)}
    return sorted(p.name for p in path.iterdir() if p.name not in own)


def lock_holder(run_dir: Path) -> dict | None:
    """The process holding the run folder's :data:`TRAINING_LOCK` (``pid``, ``host``, ``started``), or None when no
    process does: no lock, an unreadable one, or one left by a process of this machine that has ended. A lock
    of another machine (a shared file system) counts as held: its process cannot be checked from here."""
    try:
        info = json.loads((Path(run_dir) / TRAINING_LOCK).read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if info.get("host") == platform.node():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
    return info


def _held_here(info: dict | None) -> bool:
    return info is not None and info.get("host") == platform.node() and int(info["pid"]) == os.getpid()


def check_not_in_use(run_dir: Path, doing: str) -> None:
    """Raise a :class:`ConfigError` naming the process when another process holds the run folder's lock."""
    info = lock_holder(run_dir)
    if info is not None and not _held_here(info):
        raise ConfigError(f"'{run_dir}' is being trained by process {info['pid']} on {info.get('host')} (since "
                          f"{info.get('started')}); refusing to {doing}. Wait for it to end (if that process is gone, "
                          f"delete {Path(run_dir) / TRAINING_LOCK})")


@contextmanager
def training_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s :data:`TRAINING_LOCK` while the block runs (re-entrant in one process; a stale lock of an
    ended process is taken over). Another process holding it: :class:`ConfigError`, nothing touched."""
    run_dir = Path(run_dir)
    if _held_here(lock_holder(run_dir)):
        yield
        return
    check_not_in_use(run_dir, "train it")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / TRAINING_LOCK
    path.unlink(missing_ok=True)  # stale: its process ended
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:  # another process took it just now
        check_not_in_use(run_dir, "train it")
        raise
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"pid": os.getpid(), "host": platform.node(),
                            "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


BEFORE_TRAINING = frozenset({MARKER, "config.yaml", "train.log", "environment.json", "splits.json", TRAINING_LOCK})
"""What a start writes before its data and network are set up: a folder holding only these never trained."""


def failed_start(path: Path) -> bool:
    """A run folder whose start stopped before training (a bad data root, a corrupt case): the marker and
    nothing but the files written before setup, so starting again in it loses nothing."""
    return (path / MARKER).is_file() and {p.name for p in path.iterdir()} <= BEFORE_TRAINING


def prepare_run_dir(path: Path, overwrite: bool) -> Path:
    """Create ``path`` and mark it as a run folder.

    An existing non-empty folder is an error unless ``overwrite`` or it is a :func:`failed_start`; then
    only a folder that carries the run marker and holds nothing but what semiseg writes is emptied (a
    user's files are never deleted).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run folder '{path}' exists and is not a folder")

    def entries() -> list[Path]:  # the folder's content, less this process's own lock (held before setup)
        return [e for e in path.iterdir() if e.name != TRAINING_LOCK or not _held_here(lock_holder(path))]

    if path.exists() and entries() and not overwrite and failed_start(path):
        overwrite = True  # the same command works again once the input is fixed
    if path.exists() and entries():
        check_not_in_use(path, "replace it")
        if not overwrite:
            raise ConfigError(f"run folder '{path}' already exists; use --overwrite to replace it or 'semiseg resume {path}'")
        if not (path / MARKER).is_file():
            raise ConfigError(f"'{path}' is not a folder semiseg created (no {MARKER} marker); refusing to delete anything in it")
        foreign = foreign_entries(path)
        if foreign:
            raise ConfigError(f"'{path}' holds files semiseg did not write ({', '.join(foreign[:5])}"
                              f"{', ...' if len(foreign) > 5 else ''}); move them or choose another run folder")
        for entry in entries():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text(json.dumps({"semiseg_run": 1}) + "\n")
    return path


def remove_orphan_temp_files(path: Path) -> list[str]:
    """Delete checkpoint temp files left by a process killed while writing; returns their names."""
    gone = []
    for tmp in Path(path).glob(".checkpoint_*.pt.*"):
        tmp.unlink(missing_ok=True)
        gone.append(tmp.name)
    return gone


def git_hash() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The processor's name (Linux: /proc/cpuinfo's ``model name``; elsewhere what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment_record(device: str) -> dict:
    import numpy
    import torch

    import semiseg

    rec = {
        "semiseg": semiseg.__version__,
        "git": git_hash(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "device": device,
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        # the kernels torch picks (AVX2, AVX512...): CPUs that differ here round differently, so a long run's
        # result differs between machines although each machine repeats its own bit for bit
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import monai

        rec["monai"] = monai.__version__
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        rec["cuda"] = torch.version.cuda
        rec["gpu"] = torch.cuda.get_device_name(0)
    return rec


def write_environment(path: Path, device: str, method_revision: int = 0) -> None:
    """The machine and software a run trained with, and its method's code revision (:attr:`Method.revision`)."""
    rec = {**environment_record(device), "method_revision": method_revision}
    (path / "environment.json").write_text(json.dumps(rec, indent=2))


def method_revision_of(run_dir: Path) -> int | None:
    """The method revision a run was trained with (0: recorded before revisions were, or unreadable); None when
    the run has no ``environment.json`` yet (it never reached its training setup)."""
    path = Path(run_dir) / "environment.json"
    if not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text()).get("method_revision", 0))
    except (OSError, ValueError, AttributeError):
        return 0


def is_main_process() -> bool:
    """Rank 0 under torchrun (RANK from the environment), always true single-process."""
    return int(os.environ.get("RANK", "0")) == 0


def setup_logger(run_dir: Path, name: str = "semiseg") -> logging.Logger:
    """Log to ``train.log`` (append) and to the console; only rank 0 logs."""
    logger = logging.getLogger(f"{name}.{run_dir.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        if is_main_process():
            fh = logging.FileHandler(run_dir / "train.log")
            fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger.addHandler(fh)
            ch = logging.StreamHandler(sys.stderr)
            ch.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(ch)
        else:
            logger.addHandler(logging.NullHandler())
    return logger


def close_logger(logger: logging.Logger) -> None:
    for h in list(logger.handlers):
        h.close()
        logger.removeHandler(h)
