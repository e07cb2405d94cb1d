"""The run folder: resolved config, splits, environment record, log, metrics, checkpoints."""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from semiseg.errors import ConfigError

FILES = ("config.yaml", "splits.json", "environment.json", "train.log", "metrics.csv")


def prepare_run_dir(path: Path, overwrite: bool) -> Path:
    """Create ``path``; an existing non-empty folder is an error unless ``overwrite`` (then it is emptied)."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise ConfigError(f"run folder '{path}' already exists; use --overwrite to replace it or 'semiseg resume {path}'")
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"'{path}' is not a semiseg run folder (no config.yaml); refusing to delete it")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def git_hash() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


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


def write_environment(path: Path, device: str) -> None:
    (path / "environment.json").write_text(json.dumps(environment_record(device), indent=2))


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
