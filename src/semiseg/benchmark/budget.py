"""A label-budget simulation (``kind: label_budget``): does choosing what to label beat choosing at random? (issue 15)

For each seed, a start model is trained on ``start`` labeled subjects drawn with that seed
(``start_preset``, e.g. the supervised lower bound, then ``preset``, the semi-supervised method,
from it). Then, per strategy, ``rounds`` times: ``semiseg advise`` ranks the current run's
unlabeled subjects, the labels of the top ``add`` are revealed (the dataset's own labels, read only
for the chosen cases: ``split.labeled_cases``), and ``preset`` trains again from the previous
round's model with the larger labeled set. Candidates are only ever the run's unlabeled cases:
never a validation or test case. Every round of every strategy trains the same number of
iterations, so the strategies differ only in which subjects were labeled.

Layout of the output folder::

    seed_<s>/start/lower_bound, seed_<s>/start/round_0      shared by every strategy
    seed_<s>/<strategy>/round_<r>/advice                    the advice that chose round r's new subjects
    seed_<s>/<strategy>/round_<r>/run                       the run trained with them

Re-running resumes (complete runs skipped, interrupted ones resumed, advice kept). With ``records`` each
round's record (no weights) is kept as soon as it is scored; on another machine a seed whose chains are all
complete there is not trained again, and a seed with some chains missing trains its start again: if the start
repeats its recorded trajectory bit for bit (machines whose kernels round alike), the complete strategies stand,
else every strategy of the seed trains again (a seed's strategies share one start model), so a seed is best
finished on one machine (``seeds``: train one at a time). ``results.md``:
test mean Dice per strategy and labeled count (mean over seeds, 95% bootstrap interval over seeds and
test cases) and each strategy's paired difference from ``random``; ``results.png``: the budget curve.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, field_validator

from semiseg.benchmark.execution import Task, execute_job, put_record, run_in_workers
from semiseg.benchmark.planning import Job, is_complete
from semiseg.config.schema import _Strict
from semiseg.engine.run_dir import check_not_in_use
from semiseg.errors import ConfigError, SemisegError, validation_summary


class BudgetConfig(_Strict):
    kind: Literal["label_budget"]
    name: str
    description: str = ""
    output: str | None = None
    preset: str
    """The semi-supervised method every round trains (from the previous round's model)."""
    start_preset: str | None = None
    """Trained first on the start set (e.g. the supervised lower bound); round 0 of ``preset`` starts from it."""
    start_overrides: list[str] = Field(default_factory=list)
    start: int = Field(3, ge=1)
    """Labeled subjects at round 0, drawn with each seed (``split.seed``)."""
    add: int = Field(2, ge=1)
    """Subjects labeled per round."""
    rounds: int = Field(2, ge=1)
    strategies: list[str] = Field(default_factory=lambda: ["random", "entropy", "disagreement", "tta", "diverse"])
    base: str = "entropy"
    """The signal the ``diverse`` strategy weights its picks by."""
    seeds: list[int] = Field(default_factory=lambda: [0])
    jobs: int = Field(1, ge=1)
    overrides: list[str] = Field(default_factory=list)
    results: str = "results"

    @field_validator("strategies")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        from semiseg.advisor.selection import STRATEGIES

        bad = [s for s in v if s not in STRATEGIES]
        if bad or not v:
            raise ValueError(f"unknown strategies {bad}; choose from {', '.join(STRATEGIES)}")
        return v


def is_budget_file(path: Path) -> bool:
    """Whether a benchmark YAML describes a label-budget simulation (``kind: label_budget``)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and raw.get("kind") == "label_budget"


def load_budget(path: Path, extra: list[str] | None = None) -> BudgetConfig:
    try:
        cfg = BudgetConfig.model_validate(yaml.safe_load(Path(path).read_text()) or {})
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    except ValidationError as exc:
        raise ConfigError(f"{path}: {validation_summary(exc)}") from None
    cfg.overrides = list(cfg.overrides) + list(extra or [])
    return cfg


@dataclass(frozen=True)
class Round:
    """One trained point of the budget curve."""

    seed: int
    strategy: str  # "start" for the shared round 0
    index: int
    labeled: int  # labeled subjects
    job: Job
    advice: Path | None  # the advice folder that chose this round's labeled set (None: round 0)
    previous: "Round | None"


def plan_budget(cfg: BudgetConfig, out: Path) -> dict[int, dict[str, list[Round]]]:
    """Per seed, per strategy: its rounds 0..R (round 0, and the start run before it, shared)."""
    plans: dict[int, dict[str, list[Round]]] = {}
    for s in cfg.seeds:
        base = list(cfg.overrides) + [f"seed={s}", f"split.seed={s}"]
        start_split = [f"split.labeled={cfg.start}", "split.labeled_selection=random"]
        start_dir = out / f"seed_{s}" / "start"
        first: Round | None = None
        if cfg.start_preset:
            j = Job("lower_bound", cfg.start, s, cfg.start_preset,
                    tuple(base + start_split + list(cfg.start_overrides) + ["name=lower_bound"]), start_dir / "lower_bound", None)
            first = Round(s, "start", -1, cfg.start, j, None, None)
        ov0 = base + start_split + ["name=round_0"] + ([f"method.init_from={first.job.run_dir}"] if first else [])
        r0 = Round(s, "start", 0, cfg.start, Job("round_0", cfg.start, s, cfg.preset, tuple(ov0), start_dir / "round_0",
                                                  first.job.run_dir if first else None), None, first)
        plans[s] = {}
        for strategy in cfg.strategies:
            chain, prev = [r0], r0
            for r in range(1, cfg.rounds + 1):
                d = out / f"seed_{s}" / strategy / f"round_{r}"
                n = cfg.start + r * cfg.add
                # the labeled cases are known once the advice is written: the job's overrides are completed then
                job = Job(f"{strategy}_round_{r}", n, s, cfg.preset,
                          tuple(base + [f"name={strategy}_round_{r}", f"method.init_from={prev.job.run_dir}"]),
                          d / "run", prev.job.run_dir)
                prev = Round(s, strategy, r, n, job, d / "advice", prev)
                chain.append(prev)
            plans[s][strategy] = chain
    return plans


def _with_labeled(rnd: Round) -> Job:
    """The round's job with ``split.labeled_cases`` from its advice (``next_labeled_cases.txt``)."""
    if rnd.advice is None:
        return rnd.job
    cases = (rnd.advice / "next_labeled_cases.txt").read_text().split()
    return Job(**{**rnd.job.__dict__, "overrides": rnd.job.overrides + (f"split.labeled_cases=[{','.join(cases)}]",)})


def _round_done(rnd: Round, weights_needed: bool) -> bool:
    if rnd.advice is not None and not (rnd.advice / "next_labeled_cases.txt").is_file():
        return False
    return is_complete(rnd.job.run_dir, weights_needed=weights_needed)


def _ensure(rnd: Round) -> None:
    """Train (or resume) ``rnd`` and score it, after whatever it starts from; its weights exist afterwards."""
    if is_complete(rnd.job.run_dir):  # trained (its final checkpoint) and scored
        return
    if rnd.previous is not None:
        _ensure(rnd.previous)
    execute_job(_with_labeled(rnd))


def execute_chain(chain: list[Round], cfg_dump: dict[str, Any], out: Path | None = None,
                  records: Path | None = None) -> list[str]:
    """One strategy's rounds 1..R of one seed, in order: advise on the previous run, then train; in a worker process.
    A complete round is skipped unless the next round's advice still needs its weights. ``records``: each round's
    record (run folder without weights, and its advice) is kept there as soon as the round is scored, so a
    simulation killed later (a session's end) loses no finished round (``out``: the simulation's output folder)."""
    import torch

    from semiseg.advisor import advise

    cfg = BudgetConfig.model_validate(cfg_dump)
    done = []
    for i, rnd in enumerate(chain[1:], start=1):
        later_needs_weights = i < len(chain) - 1 and not (chain[i + 1].advice / "next_labeled_cases.txt").is_file()  # type: ignore[operator]
        if _round_done(rnd, weights_needed=later_needs_weights):
            continue
        assert rnd.advice is not None and rnd.previous is not None
        if not (rnd.advice / "next_labeled_cases.txt").is_file():
            again = rnd.previous.index > 0 and not is_complete(rnd.previous.job.run_dir)  # a record: trained again
            _ensure(rnd.previous)
            if again and records is not None and out is not None:  # the weights this round starts from
                copy_round_record(rnd.previous, out, Path(records), replace=True)
            torch.set_num_threads(1)
            advise(rnd.previous.job.run_dir, rnd.strategy, cfg.add, base=cfg.base, out_dir=rnd.advice, which="best",
                   seed=1000 * rnd.seed + rnd.index, overwrite=True, say=lambda m: None)
        _ensure(rnd)
        _check_same_test(chain[0].job.run_dir, rnd.job.run_dir)
        if records is not None and out is not None:
            copy_round_record(rnd, out, Path(records))
        done.append(str(rnd.job.run_dir))
    return done


def _check_same_test(first: Path, later: Path) -> None:
    a = json.loads((first / "splits.json").read_text())
    b = json.loads((later / "splits.json").read_text())
    if a["test"] != b["test"] or a["val"] != b["val"]:
        raise SemisegError(f"{later}: its validation/test cases differ from {first}'s; the dataset must name them "
                           "(list files, imagesTs) for a label-budget simulation")


def copy_round_record(rnd: Round, src: Path, dst: Path, replace: bool = False) -> bool:
    """Copy one complete round (its run folder without weights, and its advice) from the output folder ``src``
    to ``dst`` (or back) where ``dst`` lacks it, or always with ``replace``; whether it copied."""
    run = rnd.job.run_dir
    rel = run.relative_to(dst if run.is_relative_to(dst) else src)
    s_run, d_run = src / rel, dst / rel
    s_adv = s_run.parent / "advice"
    if not is_complete(s_run, weights_needed=False) or (is_complete(d_run, weights_needed=False) and not replace):
        return False
    if rnd.advice is not None and not (s_adv / "next_labeled_cases.txt").is_file():
        return False
    if not put_record(s_run, d_run):
        return False
    if rnd.advice is not None:
        shutil.copytree(s_adv, d_run.parent / "advice", dirs_exist_ok=True)
    return True


def _all_rounds(chains: dict[str, list[Round]]) -> list[Round]:
    """Every round of one seed once: the start run, round 0 and each strategy's rounds."""
    seen: dict[Path, Round] = {}
    for chain in chains.values():
        for rnd in ([chain[0].previous] if chain[0].previous else []) + chain:
            seen.setdefault(rnd.job.run_dir, rnd)
    return list(seen.values())


def copy_budget_records(src: Path, dst: Path, plans: dict[int, dict[str, list[Round]]]) -> int:
    """Copy each complete round (its run folder without weights, and its advice) from ``src`` to ``dst`` where
    ``dst`` lacks it; returns how many."""
    return sum(copy_round_record(rnd, src, dst) for chains in plans.values() for rnd in _all_rounds(chains))


def _start_rounds(chains: dict[str, list[Round]]) -> list[Round]:
    """A seed's shared start: the start run (if any) and round 0."""
    r0 = next(iter(chains.values()))[0]
    return ([r0.previous] if r0.previous else []) + [r0]


def _retrain_starts_without_weights(plans: dict[int, dict[str, list[Round]]],
                                    pending: list[tuple[int, str, list[Round]]], out: Path,
                                    say: Callable[[str], None]) -> dict[int, dict[Path, str | None]]:
    """Seeds with chains to train whose round 0 is only a record (no weights: another machine trained it): their
    start is trained again here (its record folders leave the output folder). Returns, per such seed, the
    trajectory fingerprints of the start's records, which decide after the retraining whether the seed's complete
    strategies still share its start (:func:`_after_retrained_start`)."""
    from semiseg.engine.run_dir import trajectory_fingerprint

    redo: dict[int, dict[Path, str | None]] = {}
    for s in sorted({c[0] for c in pending}):
        start = _start_rounds(plans[s])
        r0 = start[-1].job.run_dir
        if is_complete(r0) or not is_complete(r0, weights_needed=False):
            continue
        redo[s] = {r.job.run_dir: trajectory_fingerprint(r.job.run_dir) for r in start}
        for r in start:
            if not is_complete(r.job.run_dir):
                check_not_in_use(r.job.run_dir, "train it again")
                shutil.rmtree(r.job.run_dir)
        say(f"seed {s}: its start was trained on another machine (records keep no weights): trained again here; "
            "its complete strategies stand if the start repeats its trajectory bit for bit, else they train again "
            "(a seed's strategies start from one model)")
    return redo


def _after_retrained_start(seed: int, chains: dict[str, list[Round]], before: dict[Path, str | None], out: Path,
                           records: Path | None) -> bool:
    """After a seed's start was trained again: whether it repeated the recorded trajectory (same fingerprints).
    If not, every strategy's rounds of the seed leave the output folder and the records (they started from the
    earlier start), to be trained again from the new one. The start's new records replace the old either way."""
    from semiseg.engine.run_dir import trajectory_fingerprint

    same = all(fp is not None and trajectory_fingerprint(d) == fp for d, fp in before.items())
    if not same:
        for strategy in chains:
            for root in [out] + ([Path(records)] if records is not None else []):
                shutil.rmtree(root / f"seed_{seed}" / strategy, ignore_errors=True)
    if records is not None:
        for rnd in _start_rounds(chains):
            copy_round_record(rnd, out, Path(records), replace=True)
    return same


def run_budget(config: Path, output: Path | None = None, overrides: list[str] | None = None, jobs: int | None = None,
               say: Callable[[str], None] = print, report_only: bool = False, records: Path | None = None,
               seeds: list[int] | None = None) -> dict[str, Any]:
    """Run (or resume) the simulation; write ``results.csv/.md/.png`` (every seed's complete rounds).

    ``records``: a folder of round records (run folders without weights, and the advice), e.g. committed from an
    earlier machine: complete rounds there are copied in first, and each round's record is kept there as soon
    as it is scored. ``seeds``: train only these seeds."""
    from semiseg.benchmark.schema import command_line
    from semiseg.config import load_config

    cfg = load_budget(config, overrides)
    if jobs:
        cfg.jobs = jobs
    out = Path(output or cfg.output or Path("runs") / "benchmarks" / cfg.name)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_budget(cfg, out)
    if records is not None and Path(records).is_dir():
        n = copy_budget_records(Path(records), out, plans)
        if n:
            say(f"copied {n} round record(s) from {records}")
    for j in [cfg.preset] + ([cfg.start_preset] if cfg.start_preset else []):
        load_config(j, list(cfg.overrides))  # configuration errors before any training
    command = command_line(config, overrides, output, jobs)
    chains = [(s, st, ch) for s, by in plans.items() for st, ch in by.items()]
    if seeds is not None and set(seeds) - set(plans):
        raise ConfigError(f"{config}: seeds {sorted(set(seeds) - set(plans))} are not in the file's seeds {sorted(plans)}")

    def still_pending() -> list[tuple[int, str, list[Round]]]:
        return [c for c in chains if (seeds is None or c[0] in seeds)
                and not all(_round_done(r, weights_needed=False) for r in c[2][1:])]

    pending = still_pending()
    redo = _retrain_starts_without_weights(plans, pending, out, say) if not report_only and pending else {}
    n_done = sum(all(_round_done(r, weights_needed=False) for r in c[2][1:]) for c in chains)
    say(f"label-budget simulation {cfg.name}: {len(cfg.seeds)} seed(s) x {len(cfg.strategies)} strategies x "
        f"{cfg.rounds} round(s); {n_done} of {len(chains)} chains complete"
        + (f", {len(pending)} to train (seeds {sorted(seeds)})" if seeds is not None else "") + f"; output {out}")
    failed: dict[str, str] = {}
    if not report_only and pending:
        t0 = time.time()
        # the shared start of each seed first (two chains must not train it at once), then the chains
        # (only where a chain still needs the start run's weights: for its first advice, or to train round 1)
        starts = {s: by[cfg.strategies[0]][0] for s, by in plans.items()
                  if s in redo or any(c[0] == s and not _round_done(c[2][1], weights_needed=False) for c in pending)}
        waiting = list(pending)
        ready: set[int] = {s for s in plans if s not in starts}

        def label(task: Task) -> str:
            kind, what = task.key
            return f"seed {what} start" if kind == "start" else f"seed {what[0]} {what[1]}"

        def pick(free: int) -> list[Task]:
            start = [Task(("start", s), _ensure, (r0,)) for s, r0 in list(starts.items())[:free]]
            for t in start:
                del starts[t.key[1]]
            for c in list(waiting):
                if len(start) >= free:
                    break
                if c[0] in ready:
                    waiting.remove(c)
                    start.append(Task(("chain", c), execute_chain, (c[2], cfg.model_dump(), out, records)))
            for t in start:
                say(f"[{time.time() - t0:7.0f} s] start  {label(t)}")
            return start

        def done(task: Task, result: Any, error: str | None) -> None:
            kind, what = task.key
            if error is None:
                say(f"[{time.time() - t0:7.0f} s] done   {label(task)}")
                if kind == "start":
                    ready.add(what)
                    if what in redo and not _after_retrained_start(what, plans[what], redo[what], out, records):
                        say(f"seed {what}: the retrained start took another trajectory; every strategy of the seed "
                            "trains again from it")
                        waiting.extend(c for c in chains if c[0] == what and c not in waiting)
                    elif what in redo:
                        say(f"seed {what}: the retrained start repeated its trajectory bit for bit; its complete "
                            "strategies stand")
                    elif records is not None:  # kept at once, as each chain's rounds are (execute_chain)
                        for rnd in _start_rounds(plans[what]):
                            copy_round_record(rnd, out, Path(records))
                return
            failed[label(task)] = error
            say(f"[{time.time() - t0:7.0f} s] FAILED {label(task)}: {error}")
            if kind == "start":
                waiting[:] = [c for c in waiting if c[0] != what]
                failed.update({f"seed {what} {st}": "its start failed" for s2, st, _ in pending if s2 == what})

        run_in_workers(cfg.jobs, pick, done)
        failed.update({f"seed {s} start": "not started" for s in starts})
        failed.update({f"seed {c[0]} {c[1]}": "not started" for c in waiting if f"seed {c[0]} {c[1]}" not in failed})
    rows = collect_budget(cfg, plans)
    write_budget_results(cfg, rows, out, command)
    if records is not None:
        Path(records).mkdir(parents=True, exist_ok=True)
        copy_budget_records(out, Path(records), plans)
    if failed:
        raise SemisegError(f"{len(failed)} chain(s) did not complete ({'; '.join(f'{k}: {v}' for k, v in failed.items())}); "
                           "re-run the same command to resume")
    say(f"results: {out / (cfg.results + '.md')}")
    return {"rows": rows, "output": out}


def collect_budget(cfg: BudgetConfig, plans: dict[int, dict[str, list[Round]]]) -> list[dict[str, Any]]:
    """One row per seed, strategy and round whose run is scored: test mean Dice and its per-case values."""
    from semiseg.benchmark.results import case_mean_dice
    from semiseg.evaluation.scoring import read_csv

    rows = []
    seen: set[Path] = set()
    for s, by in plans.items():
        for strategy, chain in by.items():
            for rnd in chain:
                run = rnd.job.run_dir
                if run in seen or not is_complete(run, weights_needed=False):
                    continue
                seen.add(run)
                summary = read_csv(run / "eval_test" / "summary.csv")
                classes = [c for c in dict.fromkeys(str(r["class"]) for r in summary) if c != "mean"]
                mean = next(float(r["mean"]) for r in summary if r["class"] == "mean" and r["metric"] == "dice")
                splits = json.loads((run / "splits.json").read_text())
                subjects = sorted({splits["subjects"][c] for c in splits["labeled"]})
                rows.append({"seed": s, "strategy": strategy if rnd.index else "start", "round": rnd.index,
                             "labeled": len(subjects), "dice_mean": mean, "labeled_subjects": " ".join(subjects),
                             "_cases": case_mean_dice(run / "eval_test" / "scores.csv", classes)})
    return rows


def budget_table(cfg: BudgetConfig, rows: list[dict[str, Any]]) -> str:
    """Strategy x labeled count: mean test Dice over seeds [95% CI], and the paired difference from random."""
    from semiseg.evaluation.statistics import bootstrap_ci

    counts = [cfg.start + r * cfg.add for r in range(cfg.rounds + 1)]

    def cell(strategy: str, n: int) -> list[dict[str, Any]]:
        return [r for r in rows if r["labeled"] == n and (r["strategy"] == strategy or r["round"] == 0)]

    def grid(rs: list[dict[str, Any]], cases: list[str]) -> np.ndarray:
        return np.array([[r["_cases"].get(c, np.nan) for c in cases] for r in sorted(rs, key=lambda r: r["seed"])])

    head = ["strategy"] + [f"{n} labeled" for n in counts] + ([f"vs random at {counts[-1]}"] if "random" in cfg.strategies else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for st in cfg.strategies:
        cells = [st]
        for n in counts:
            rs = cell(st, n)
            if not rs:
                cells.append("(pending)")
                continue
            cases = sorted(set().union(*(r["_cases"] for r in rs)))
            lo, hi = bootstrap_ci(grid(rs, cases))
            cells.append(f"{np.mean([r['dice_mean'] for r in rs]):.4f} [{lo:.3f}, {hi:.3f}] (n={len(rs)})")
        if "random" in cfg.strategies:
            a, b = cell(st, counts[-1]), cell("random", counts[-1])
            seeds = sorted({r["seed"] for r in a} & {r["seed"] for r in b})
            if st == "random" or not seeds:
                cells.append("-")
            else:
                a = [r for r in a if r["seed"] in seeds]
                b = [r for r in b if r["seed"] in seeds]
                cases = sorted(set().union(*(r["_cases"] for r in a + b)))
                diff = grid(a, cases) - grid(b, cases)
                lo, hi = bootstrap_ci(diff)
                cells.append(f"{np.nanmean(diff):+.4f} [{lo:+.3f}, {hi:+.3f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


ONE_SEED_CAVEAT = (
    "**One seed so far.** Its intervals resample the test cases only: they leave out the run-to-run noise of "
    "training (another seed, or another pick of nearly equal score, can move a cell by more than its interval), "
    "so a difference here is not yet evidence that one strategy beats another.")


def write_budget_results(cfg: BudgetConfig, rows: list[dict[str, Any]], out: Path, command: str) -> None:
    import platform

    from semiseg import __version__
    from semiseg.engine.run_dir import git_hash
    from semiseg.evaluation.scoring import write_csv

    if rows:
        write_csv([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], out / f"{cfg.results}.csv")
        _plot(cfg, rows, out / f"{cfg.results}.png")
    total = len(cfg.seeds) * (1 + len(cfg.strategies) * cfg.rounds)
    md = [f"# Label-budget simulation `{cfg.name}`", "", *([cfg.description.strip(), ""] if cfg.description.strip() else []),
          f"Command: `{command}`", "",
          f"semiseg {__version__}, commit {git_hash() or 'unknown'}, {platform.platform()}. Runs complete: {len(rows)} of {total}.", "",
          f"Start: {cfg.start} labeled subjects drawn per seed; {cfg.rounds} round(s) of +{cfg.add} subjects chosen by each "
          f"strategy from the run's unlabeled subjects (never validation or test); method `{cfg.preset}`, each round from the "
          "previous round's model with the same number of iterations. Test mean Dice (foreground classes, per volume, "
          "then averaged) over seeds, 95% percentile-bootstrap interval resampling seeds and test cases (n = seeds). "
          "'vs random': the paired difference from the random strategy (same seeds, same test cases) with its interval. "
          "Model selection on validation cases only.", "",
          *([ONE_SEED_CAVEAT, ""] if rows and len({r["seed"] for r in rows}) < 2 else []),
          *([f"![test Dice against labeled subjects]({cfg.results}.png)", ""] if rows else []),
          budget_table(cfg, rows) if rows else "(no complete runs yet)"]
    (out / f"{cfg.results}.md").write_text("\n".join(md) + "\n")


def _plot(cfg: BudgetConfig, rows: list[dict[str, Any]], path: Path) -> None:
    from semiseg.benchmark.report import curve_plot
    from semiseg.benchmark.results import dice_interval

    series: dict[str, list[tuple[float, float, float, float]]] = {}
    for st in cfg.strategies:
        for n in [cfg.start + r * cfg.add for r in range(cfg.rounds + 1)]:
            rs = [r for r in rows if r["labeled"] == n and (r["strategy"] == st or r["round"] == 0)]
            if rs:
                series.setdefault(st, []).append((n, float(np.mean([r["dice_mean"] for r in rs])), *dice_interval(rs)))
    curve_plot(series, path, "labeled subjects", cfg.name, band_alpha=0.12)
