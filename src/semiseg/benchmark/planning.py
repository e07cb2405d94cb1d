"""Planning a grid: one job per run, labeled count and seed, in dependency order; when a run counts as complete."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from semiseg.benchmark.schema import BenchmarkConfig, _order


@dataclass(frozen=True)
class Job:
    run: str
    labeled: int | float
    seed: int
    preset: str
    overrides: tuple[str, ...]
    run_dir: Path
    depends: Path | None
    equivariance: bool = False
    postprocess: tuple[str, ...] = ("none",)


def plan(cfg: BenchmarkConfig, output: Path) -> list[Job]:
    """Every run of every cell, dependencies first within a cell; seed by seed (every labeled count of the
    first seed before the second seed's), so a grid that spans sessions has a whole table early."""
    jobs = []
    for seed in cfg.seeds:
        for lab in cfg.labeled:
            cell = output / f"labeled_{lab}" / f"seed_{seed}"
            once = output / "once" / f"seed_{seed}"
            for name in _order(cfg.runs):
                r = cfg.runs[name]
                if lab not in cfg.counts(name):
                    continue
                dep = (once if cfg.runs[r.init_from].once else cell) / r.init_from if r.init_from else None
                ov = list(cfg.overrides) + list(r.overrides) + ([] if r.once else [f"split.labeled={lab}"])
                ov += [f"seed={seed}", f"name={name}"]
                if cfg.vary_split:
                    ov.append(f"split.seed={seed}")
                if dep is not None:
                    ov.append(f"method.init_from={dep}")
                jobs.append(Job(name, lab, seed, r.preset, tuple(ov), (once if r.once else cell) / name, dep, cfg.equivariance,
                                tuple(cfg.postprocess)))
    return jobs


def select(cfg: BenchmarkConfig, jobs: list[Job], runs: list[str] | None = None,
           labeled: list[int | float] | None = None, seeds: list[int] | None = None) -> list[Job]:
    """The jobs of the named runs / labeled counts / seeds (``None``: all of them), plus every job they start from
    (``init_from``, transitively), in plan order: e.g. a method added to a finished grid, trained alone.

    A name, count or seed the file does not have is a :class:`ConfigError` that lists what it has."""
    from semiseg.errors import ConfigError

    for what, asked, has in (("run", runs, list(cfg.runs)), ("labeled count", labeled, cfg.labeled),
                             ("seed", seeds, cfg.seeds)):
        unknown = [x for x in asked or [] if x not in has]
        if unknown:
            raise ConfigError(f"{cfg.name}: no {what} {', '.join(map(str, unknown))} in the benchmark file "
                              f"(it has: {', '.join(map(str, has))})")
    chosen = {j.run_dir for j in jobs if (runs is None or j.run in runs) and (labeled is None or j.labeled in labeled)
              and (seeds is None or j.seed in seeds)}
    if not chosen:
        raise ConfigError(f"{cfg.name}: no run of the benchmark file matches the selection "
                          f"(runs {runs}, labeled {labeled}, seeds {seeds})")
    by_dir = {j.run_dir: j for j in jobs}
    grow = list(chosen)
    while grow:
        dep = by_dir[grow.pop()].depends
        if dep is not None and dep not in chosen:
            chosen.add(dep)
            grow.append(dep)
    return [j for j in jobs if j.run_dir in chosen]


def is_complete(run_dir: Path, equivariance: bool = False, weights_needed: bool = True,
                postprocess: tuple[str, ...] = ("none",)) -> bool:
    """Trained and scored: the final checkpoint and the test evaluation (with the equivariance Dice if asked).

    ``weights_needed=False`` (tabulating): ``benchmark_time.json``, written after a grid run is trained
    and scored, stands in for the checkpoint, so run folders copied back from another machine without
    their weights still make the table.
    """
    trained = (run_dir / "checkpoint_final.pt").is_file() or (
        not weights_needed and (run_dir / "benchmark_time.json").is_file())
    from semiseg.evaluation.run_eval import eval_dir_name

    scored = all((run_dir / eval_dir_name("test", pp) / "summary.csv").is_file() for pp in postprocess)
    return trained and scored and (not equivariance or (run_dir / "eval_test" / "equivariance.csv").is_file())


def matches_plan(run_dir: Path, job: Job) -> bool:
    """The run folder's ``config.yaml`` equals the configuration the grid plans for ``job`` (compared by value
    with the method's params resolved; options added later take their defaults; ``init_from`` by the cell and
    run it names, so a grid copied or resumed under another folder, e.g. from records, still matches). A complete
    run of another configuration -- a preset or a method default changed since it ran -- is stale: it is never
    tabulated or reused as if it were current. So is a run that an earlier revision of its method's code trained
    (``method_revision`` of its ``environment.json`` below :attr:`semiseg.methods.base.Method.revision`)."""
    from semiseg.config import load_config
    from semiseg.engine.run_dir import method_revision_of

    stored = run_dir / "config.yaml"
    if not stored.is_file():
        return True
    try:
        from semiseg.methods.registry import get_method_class, resolved_config

        have, want = (resolved_config(c) for c in (load_config(stored), load_config(job.preset, list(job.overrides))))
    except Exception:  # an unreadable or outdated config is not the planned one
        return False
    if method_revision_of(run_dir) not in (None, get_method_class(want["method"]["name"]).revision):
        return False
    for c in (have, want):  # the run it started from, by its place in the grid (the grid folder may have moved)
        if c["method"].get("init_from"):
            c["method"]["init_from"] = Path(c["method"]["init_from"]).parts[-3:]
    return have == want


def is_current(job: Job, run_dir: Path | None = None, weights_needed: bool = True,
               postprocess: tuple[str, ...] | None = None) -> bool:
    """Complete (:func:`is_complete`) and of the planned configuration (:func:`matches_plan`)."""
    run_dir = job.run_dir if run_dir is None else run_dir
    pp = job.postprocess if postprocess is None else postprocess
    return is_complete(run_dir, job.equivariance, weights_needed, pp) and matches_plan(run_dir, job)


def first_start(run_dir: Path) -> datetime | None:
    """When the run first started training: the first timestamp of its ``train.log`` (records keep the log;
    a resumed run appends to it); None when there is no log to read."""
    log = run_dir / "train.log"
    try:
        with open(log) as f:
            return datetime.strptime(f.readline()[:19], "%Y-%m-%d %H:%M:%S")
    except (OSError, ValueError):
        return None


def from_an_earlier_start(job: Job, run_dir: Path | None = None) -> bool:
    """The run (complete) started from another training of the run it starts from (``init_from``) than the one
    there now: that run was trained again since (a fresh machine retrains a run whose record keeps no weights)
    and did not repeat its trajectory (runs repeat bit for bit only on machines whose kernels round alike).
    Compares the trajectory fingerprint the run recorded at its start (``init_from.json``) with that run's
    current one; a run from before the fingerprint was recorded: whether it started before that run's training
    began (its first ``train.log`` line). False when neither can be read."""
    import json

    from semiseg.engine.run_dir import INIT_FROM, trajectory_fingerprint

    if job.depends is None:
        return False
    run_dir = job.run_dir if run_dir is None else run_dir
    try:
        recorded = json.loads((run_dir / INIT_FROM).read_text()).get("source_trajectory")
    except (OSError, ValueError):
        recorded = None
    if recorded:
        now = trajectory_fingerprint(job.depends)
        return now is not None and now != recorded
    mine, theirs = first_start(run_dir), first_start(job.depends)
    return mine is not None and theirs is not None and mine < theirs
