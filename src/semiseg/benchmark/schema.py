"""The benchmark file: its schema (runs, labeled counts, seeds, post-processing), loading and the command line it records."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from semiseg.config.schema import _Strict
from semiseg.errors import ConfigError, validation_summary


class BenchmarkRun(_Strict):
    preset: str
    overrides: list[str] = Field(default_factory=list)
    init_from: str | None = None
    labeled: list[int | float] | None = None
    """Only these of the file's labeled counts (default: every one); e.g. baselines a paper reports at 8 and 16
    labeled only."""
    once: bool = False
    """Train once per seed and show it in every labeled count's table (a run whose split does not depend on
    the labeled count, e.g. the upper bound with ``split.all_labeled=true``); lives in ``OUTPUT/once/seed_<s>/``."""


class BenchmarkConfig(_Strict):
    name: str
    description: str = ""
    output: str | None = None
    labeled: list[int | float]
    seeds: list[int] = Field(default_factory=lambda: [0])
    jobs: int = 1
    overrides: list[str] = Field(default_factory=list)
    runs: dict[str, BenchmarkRun]
    lower: str | None = None
    upper: str | None = None
    vary_split: bool = False
    """Seeds also draw the split (``split.seed``): other labeled cases per seed, as EquiReg's three patient selections."""
    equivariance: bool = False
    """Also score the equivariance Dice of every run's test cases (EquiReg); complete runs without it are re-scored."""
    postprocess: list[Literal["none", "largest_component"]] = Field(default_factory=lambda: ["none"])
    """Score every run's test cases as predicted (``none``) and/or after keeping each class's largest
    connected component; one table per choice."""
    results: str = "results"
    """Stem of the result files in the output folder (``results.md/.csv/.png``); grids that share an output
    folder, and so reuse each other's complete runs, need their own stems."""

    def counts(self, run: str) -> set[int | float]:
        """The labeled counts ``run`` is trained at (its ``labeled``, else every count of the file)."""
        r = self.runs[run]
        return set(self.labeled if r.labeled is None else r.labeled)

    def entries(self) -> int:
        """Table entries per post-processing choice: runs x their labeled counts x seeds."""
        return len(self.seeds) * sum(len(self.counts(n)) for n in self.runs)

    @model_validator(mode="after")
    def _check(self) -> "BenchmarkConfig":
        names = set(self.runs)
        for n, r in self.runs.items():
            if r.init_from is not None and r.init_from not in names:
                raise ValueError(f"run '{n}': init_from '{r.init_from}' is not a run of this benchmark ({', '.join(sorted(names))})")
            if r.once and r.init_from is not None and not self.runs[r.init_from].once:
                raise ValueError(f"run '{n}' is trained once per seed, so it cannot start from '{r.init_from}', "
                                 "which depends on the labeled count")
        for n, r in self.runs.items():
            if r.labeled is None:
                continue
            extra = [x for x in r.labeled if x not in self.labeled]
            if extra:
                raise ValueError(f"run '{n}': labeled {extra} is not among the file's labeled counts {self.labeled}")
            if r.once:
                raise ValueError(f"run '{n}' is trained once per seed; its labeled counts cannot be chosen")
        for n, r in self.runs.items():
            if r.init_from is None or self.runs[r.init_from].once:
                continue
            lacking = self.counts(n) - self.counts(r.init_from)
            if lacking:
                raise ValueError(f"run '{n}' starts from '{r.init_from}', which is not trained at labeled {sorted(lacking)}")
        for role in ("lower", "upper"):
            v = getattr(self, role)
            if v is not None and v not in names:
                raise ValueError(f"{role} '{v}' is not a run of this benchmark")
        if self.jobs < 1:
            raise ValueError("jobs must be >= 1")
        _order(self.runs)  # fails on a cycle
        return self


def _order(runs: dict[str, BenchmarkRun]) -> list[str]:
    """Runs in dependency order (a run after the one it starts from)."""
    done: list[str] = []
    pending = dict(runs)
    while pending:
        ready = [n for n, r in pending.items() if r.init_from is None or r.init_from in done]
        if not ready:
            raise ValueError(f"init_from forms a cycle among {', '.join(sorted(pending))}")
        for n in ready:
            done.append(n)
            del pending[n]
    return done


def load_benchmark(path: Path, extra_overrides: list[str] | None = None) -> BenchmarkConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"benchmark file '{path}' does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        cfg = BenchmarkConfig.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_summary(exc)}") from None
    if extra_overrides:
        cfg.overrides = list(cfg.overrides) + list(extra_overrides)
    return cfg


def command_line(config: Path, extra: list[str] | None, output: Path | None, jobs: int | None) -> str:
    parts = ["semiseg benchmark", str(config)] + list(extra or [])
    if output:
        parts.append(f"--output {output}")
    if jobs:
        parts.append(f"--jobs {jobs}")
    return " ".join(parts)
