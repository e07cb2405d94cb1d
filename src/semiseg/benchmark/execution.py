"""Running a grid: train and score each job in worker processes, resume, keep run records."""

from __future__ import annotations

import json
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable

from semiseg.benchmark.planning import Job, from_an_earlier_start, is_current, matches_plan, plan, select
from semiseg.benchmark.report import write_results
from semiseg.benchmark.results import collect_results, stale_entries
from semiseg.benchmark.schema import command_line, load_benchmark
from semiseg.engine.run_dir import TRAINING_LOCK, check_not_in_use, lock_holder, training_lock
from semiseg.errors import SemisegError


@dataclass(frozen=True)
class Task:
    """One unit of work for :func:`run_in_workers`: ``fn(*args)`` in a worker process."""

    key: Any
    fn: Callable[..., Any]
    args: tuple[Any, ...]


def die_with_parent() -> None:
    """In a worker process: end when the process that started it ends (Linux ``PR_SET_PDEATHSIG``), so a grid
    stopped with ``kill`` leaves no run training on, and writing into its folder, behind it (a re-run resumes
    that run; a second copy of it would interleave their metrics). Elsewhere a no-op."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


WORKER_DIED = "a worker process died (killed, or out of memory)"
STOPPED = "stopped when a worker process died"


def run_in_workers(jobs: int, pick: Callable[[int], list[Task]], done: Callable[[Task, Any, str | None], None]) -> None:
    """Run tasks ``jobs`` at a time, each in its own spawned process, until ``pick`` has nothing more.

    ``pick(free)``: up to ``free`` tasks to start now (it may return none while others run: tasks waiting for
    a running one). ``done(task, result, error)``: every task ends there once, with ``error`` None or a message.
    A killed worker breaks a process pool and every task in it: those tasks end with an error and the
    rest go on in a new pool (a grid left overnight survives one run killed for memory).
    """

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), max_tasks_per_child=1,
                                   initializer=die_with_parent)

    pool = new_pool()
    running: dict[Future, Task] = {}
    try:
        while True:
            for t in pick(jobs - len(running)) if len(running) < jobs else []:
                running[pool.submit(t.fn, *t.args)] = t
            if not running:
                return
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            broken = False
            for f in finished:
                t = running.pop(f)
                try:
                    result = f.result()
                except BrokenProcessPool:
                    broken = True
                    done(t, None, WORKER_DIED)
                except Exception as exc:  # noqa: BLE001 -- one failed task does not stop those that do not need it
                    done(t, None, f"{type(exc).__name__}: {exc}")
                else:
                    done(t, result, None)
            if broken:  # the pool stopped every task it held; the others go on in a new one
                for t in running.values():
                    done(t, None, STOPPED)
                running.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
    except BaseException:  # interrupted (Ctrl-C, or SIGINT sent to this process alone) or a callback raised
        stop_workers(pool)
        raise
    finally:
        pool.shutdown()


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate ``pool``'s worker processes and drop its queued tasks, so that an interrupted grid stops now
    instead of waiting, maybe hours, for the runs in flight (they resume from their last checkpoint, which is
    written atomically, on the next run of the same command)."""
    terminate = getattr(pool, "terminate_workers", None)  # public from Python 3.14
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown, which forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def execute_job(job: Job) -> dict[str, Any]:
    """Train (or resume) one run, then score its test cases; runs in a worker process. Returns the timing it
    writes to ``benchmark_time.json`` and ``trained_now`` (False: the run was complete and only scored)."""
    import torch

    from semiseg.config import load_config
    from semiseg.engine.phase_timer import peak_rss_gib
    from semiseg.engine.trainer import resolve_device, run_or_resume
    from semiseg.evaluation.run_eval import evaluate_run

    t0 = time.time()
    cfg = load_config(job.preset, list(job.overrides))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    job.run_dir.parent.mkdir(parents=True, exist_ok=True)
    aside = set_aside_if_stale(job)
    with training_lock(job.run_dir):  # no other process replaces the folder while it trains and is scored
        result = run_or_resume(cfg, job.run_dir)
        skipped = result.get("skipped", False)
        train_s = 0.0 if skipped else time.time() - t0
        evaluate_run(job.run_dir, "test", device=str(resolve_device(cfg.train.device)), save_predictions=False,
                     equivariance=job.equivariance or None, postprocess=job.postprocess)  # one prediction, every variant
    timing_path = job.run_dir / "benchmark_time.json"
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {"train_s": 0.0, "eval_s": 0.0}
    # the run's own sum over its resumes (also of parts other processes trained); else (a run from before the
    # checkpoint kept it) this file's sum over the grid's resumes
    timing["train_s"] = float(result["train_seconds"]) if result.get("train_seconds") else timing["train_s"] + train_s
    timing["eval_s"] = time.time() - t0 - train_s
    # this worker process ran only this job (max_tasks_per_child=1): its peak is the job's (training and scoring);
    # the run's checkpoint keeps the peak of the processes that trained earlier parts of it
    peaks = [float(timing.get("peak_rss_gib", 0.0)), float(result.get("peak_rss_gib", 0.0))]
    if not skipped:
        peaks.append(peak_rss_gib())
    if max(peaks) > 0:
        timing["peak_rss_gib"] = max(peaks)
    if torch.cuda.is_available() and str(resolve_device(cfg.train.device)).startswith("cuda") and not skipped:
        timing["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    timing_path.write_text(json.dumps(timing, indent=1))
    return {**timing, "trained_now": not skipped, "set_aside": str(aside) if aside else None}


def set_aside_if_stale(job: Job) -> Path | None:
    """A run folder of another configuration or an earlier method revision than ``job`` plans (a stale run: a
    preset, a default or a method's code changed since) is renamed ``NAME.stale-YYYYmmdd-HHMMSS`` beside it, weights
    and all, so that the job trains afresh and nothing is deleted; returns the new name (None: nothing to move).
    A folder another live process is training is never moved (its lock: :class:`ConfigError`)."""
    from datetime import datetime

    if not (job.run_dir / "config.yaml").is_file() or matches_plan(job.run_dir, job):
        return None
    check_not_in_use(job.run_dir, "set it aside as stale")
    target = job.run_dir.with_name(f"{job.run_dir.name}.stale-{datetime.now():%Y%m%d-%H%M%S}")
    job.run_dir.rename(target)
    return target


RECORD_SKIP = ("checkpoint_*.pt", ".checkpoint_*", "tensorboard", "predictions.npz", TRAINING_LOCK)
"""What a run record leaves out: weights (checkpoints), their temp files, TensorBoard logs, saved
predictions. Weights stay out of the repository; a run others start from is trained again on another machine,
and its trajectory fingerprint tells whether it repeated the training they started from."""


def copy_records(src_root: Path, dst_root: Path, jobs: list[Job], base: Path, replace: bool = False) -> int:
    """Copy the record of each job's run folder (``base/rel``) from ``src_root/rel`` to ``dst_root/rel`` when the
    source is complete and of the planned configuration and the destination is not (absent, interrupted, or a
    stale record of another configuration, which the current run replaces); returns how many.
    ``replace``: also replace a current record (the run was just trained again: the record then describes the
    weights the runs that start from it used)."""
    n = 0
    done: set[Path] = set()
    for job in jobs:
        if job.run_dir in done:
            continue
        done.add(job.run_dir)
        rel = job.run_dir.relative_to(base)
        src, dst = src_root / rel, dst_root / rel
        if not is_current(job, src, weights_needed=False) or (
                not replace and is_current(job, dst, weights_needed=False)):
            continue
        if (dst / "checkpoint_final.pt").is_file():
            continue  # a finished run of another configuration, with its weights: never deleted here
        n += put_record(src, dst)  # over an interrupted run, or a stale record, that the current record supersedes
    return n


def put_record(src: Path, dst: Path) -> bool:
    """Copy run folder ``src`` without :data:`RECORD_SKIP` to ``dst``, replacing what is there, unless a process
    is training ``dst`` (its :data:`~semiseg.engine.run_dir.TRAINING_LOCK`: never replaced under it); whether it
    copied."""
    import shutil

    if lock_holder(dst) is not None:
        return False
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*RECORD_SKIP))
    return True


def runs_to_train(train: list[Job], todo: list[Job]) -> list[Job]:
    """The runs of ``train`` to train, once each, in ``train``'s order: those not complete in their planned
    configuration (a record -- a run folder without weights, e.g. copied back from another machine or session
    -- is enough) or complete from an earlier training of the run they start from (:func:`from_an_earlier_start`:
    trained again, they start from the model the table shows), and a run that a run to train starts from
    (``init_from``) when its weights are not here."""
    unique: dict[Path, Job] = {}
    for j in todo:  # a run trained once per seed appears in every cell of that seed
        unique.setdefault(j.run_dir, j)
    chosen = {j.run_dir for j in train}
    pend = {d for d in chosen if not is_current(unique[d], weights_needed=False) or from_an_earlier_start(unique[d])}
    grew = True
    while grew:
        grew = False
        for d in list(pend):
            start = unique[d].depends
            if start is not None and start not in pend and not is_current(unique[start], weights_needed=True):
                pend.add(start)
                grew = True
    pending, seen = [], set()
    for j in train:
        if j.run_dir in pend and j.run_dir not in seen:
            pending.append(j)
            seen.add(j.run_dir)
    return pending


def run_benchmark(config: Path, output: Path | None = None, overrides: list[str] | None = None,
                  jobs: int | None = None, say: Callable[[str], None] = print, report_only: bool = False,
                  records: Path | None = None, only: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """Train every missing run of the grid (``jobs`` side by side), score it, write the tables.

    ``only``: train just the runs chosen by ``runs`` / ``labeled`` / ``seeds`` (lists; a key left out: all) and
    the runs they start from (:func:`~semiseg.benchmark.planning.select`); the tables still show every
    complete run of the grid.
    ``report_only``: train nothing; write the tables from the runs complete so far (others "pending").
    ``records``: a folder of run records (run folders without weights, e.g. committed from an earlier
    machine): complete runs there are copied into the grid first and are not trained again (a run others
    start from is trained again when a run that starts from it must train), and the record of each run is written there as soon as it is
    scored (and of every complete run at the end). A run that started from an earlier training of the run
    it starts from (:func:`~semiseg.benchmark.planning.from_an_earlier_start`) trains again when selected.
    """
    cfg = load_benchmark(config, overrides)
    if jobs:
        cfg.jobs = jobs
    command = command_line(config, overrides, output, jobs)
    out = Path(output or cfg.output or Path("runs") / "benchmarks" / cfg.name)
    out.mkdir(parents=True, exist_ok=True)
    todo = plan(cfg, out)
    if records is not None and Path(records).is_dir():
        n = copy_records(Path(records), out, todo, out)
        if n:
            say(f"copied {n} run record(s) from {records}")
    # configuration errors of any run surface before the first one trains
    from semiseg.config import load_config

    from semiseg.methods.registry import validate_method_params

    for j in todo:
        run_cfg = load_config(j.preset, [o for o in j.overrides if not o.startswith("method.init_from=")])
        validate_method_params(run_cfg.method.name, run_cfg.method.params)
    train = select(cfg, todo, **only) if only else todo
    pending = runs_to_train(train, todo)
    n_runs = len({j.run_dir for j in todo})
    n_train = len({j.run_dir for j in train})
    say(f"benchmark {cfg.name}: {n_runs} runs, " + (f"{n_train} selected, " if only else "")
        + f"{n_train - len(pending)} {'of them ' if only else ''}already complete; output {out}")
    if report_only:
        rows = collect_results(cfg, todo)
        write_results(cfg, rows, out, command, trained_now=False, stale=stale_entries(todo, out, records))
        if records is not None:
            copy_records(out, Path(records), todo, out)
        done = sum(1 for r in rows if r.get("postprocess", "none") == cfg.postprocess[0])
        say(f"results so far ({done} of {len(todo)} table entries): {out / (cfg.results + '.md')}")
        return {"rows": rows, "output": out}
    failed: dict[Path, str] = {}
    t0 = time.time()

    def pick(free: int) -> list[Task]:
        start = []
        for j in list(pending):
            if len(start) >= free:
                break
            if j.depends is not None and j.depends in failed:
                failed[j.run_dir] = f"its init_from run {j.depends} failed"
                pending.remove(j)
                continue
            if j.depends is not None and not (j.depends / "checkpoint_final.pt").is_file():
                continue
            pending.remove(j)
            say(f"[{time.time() - t0:7.0f} s] start  {j.run_dir.relative_to(out)}")
            start.append(Task(j, execute_job, (j,)))
        return start

    def done(task: Task, result: Any, error: str | None) -> None:
        j = task.key
        if error is None:
            aside = f"; the stale run it replaces kept as {Path(result['set_aside']).name}" if result.get("set_aside") else ""
            say(f"[{time.time() - t0:7.0f} s] done   {j.run_dir.relative_to(out)} (train {result['train_s']:.0f} s{aside})")
            if records is not None:  # kept at once: a grid killed later (a session's end) loses no finished run
                copy_records(out, Path(records), [j], out, replace=result["trained_now"])
        else:
            failed[j.run_dir] = error
            say(f"[{time.time() - t0:7.0f} s] FAILED {j.run_dir.relative_to(out)}: {error}")

    run_in_workers(cfg.jobs, pick, done)
    for j in pending:
        failed.setdefault(j.run_dir, "not started")
    rows = collect_results(cfg, todo)
    write_results(cfg, rows, out, command, stale=stale_entries(todo, out, records))
    if records is not None:
        copy_records(out, Path(records), todo, out)
    if failed:
        lines = "; ".join(f"{p.relative_to(out)}: {m}" for p, m in failed.items())
        raise SemisegError(f"{len(failed)} run(s) did not complete ({lines}); re-run the same command to resume")
    say(f"results: {out / (cfg.results + '.md')}")
    return {"rows": rows, "output": out}
