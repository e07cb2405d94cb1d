"""``semiseg benchmark``: a grid that trains, skips complete runs, chains init_from, writes one table."""

import csv
import json

import pytest
import yaml

from semiseg.benchmark import load_benchmark, plan, run_benchmark
from semiseg.errors import ConfigError
from tests.conftest import tiny_overrides


def _write(tmp_path, root, runs, **extra):
    spec = {"name": "tiny", "labeled": [2], "seeds": [0], "jobs": 1, "lower": "lower_bound",
            "overrides": [o for o in tiny_overrides(root) if not o.startswith("split.labeled")] + ["train.iterations=2", "train.val_every=2"],
            "runs": runs, **extra}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_grid_trains_chains_and_skips_complete_runs(msd_dataset, tmp_path):
    runs = {"lower_bound": {"preset": "synthbrain2d_supervised"},
            "roam": {"preset": "synthbrain2d_roam", "init_from": "lower_bound", "overrides": ["train.unlabeled_batch_size=2"]}}
    path = _write(tmp_path, msd_dataset, runs)
    out = tmp_path / "grid"
    said = []
    res = run_benchmark(path, out, say=said.append)
    cell = out / "labeled_2" / "seed_0"
    for r in ("lower_bound", "roam"):
        assert (cell / r / "checkpoint_final.pt").is_file() and (cell / r / "eval_test" / "summary.csv").is_file()
        assert (cell / r / "benchmark_time.json").is_file()
    cfg = yaml.safe_load((cell / "roam" / "config.yaml").read_text())
    assert cfg["method"]["init_from"] == str(cell / "lower_bound")
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["run"] for r in rows] == ["lower_bound", "roam"]
    assert float(rows[0]["ri_dice"]) == 0.0
    assert all(float(r["train_s"]) > 0 for r in rows)
    assert all("commit" in r for r in rows)
    md = (out / "results.md").read_text()
    assert "| roam | roam |" in md and "semiseg benchmark" in md and "commit" in md
    mtime = (cell / "roam" / "checkpoint_final.pt").stat().st_mtime
    said.clear()
    run_benchmark(path, out, say=said.append)
    assert "2 already complete" in said[0]
    assert (cell / "roam" / "checkpoint_final.pt").stat().st_mtime == mtime
    assert len(res["rows"]) == 2
    (cell / "roam" / "eval_test" / "summary.csv").unlink()  # an incomplete run: report only tabulates the rest
    part = run_benchmark(path, out, say=said.append, report_only=True)
    assert [r["run"] for r in part["rows"]] == ["lower_bound"]
    assert "| roam | (pending) |" in (out / "results.md").read_text()
    assert "Table entries complete: 1 of 2" in (out / "results.md").read_text()
    assert not (cell / "roam" / "eval_test" / "summary.csv").exists()  # nothing was run
    # trained, but not scored by the grid (its worker killed while scoring, or trained by `semiseg train`): the
    # grid scores it and takes its training time from the run's checkpoint, not 0 s
    (cell / "roam" / "benchmark_time.json").unlink()
    run_benchmark(path, out, say=said.append)
    from semiseg.engine.checkpoint import load_checkpoint

    final = load_checkpoint(cell / "roam" / "checkpoint_final.pt")
    timing = json.loads((cell / "roam" / "benchmark_time.json").read_text())
    assert final["train_seconds"] > 0 and timing["train_s"] == final["train_seconds"]
    assert 0.05 < final["peak_rss_gib"] < 64 and timing["peak_rss_gib"] == final["peak_rss_gib"]  # the training process's


@pytest.mark.slow
def test_once_runs_train_once_and_both_postprocessings_are_tabulated(msd_dataset, tmp_path):
    runs = {"lower_bound": {"preset": "synthbrain2d_supervised"},
            "upper_bound": {"preset": "synthbrain2d_supervised", "once": True, "overrides": ["split.all_labeled=true"]}}
    path = _write(tmp_path, msd_dataset, runs, labeled=[1, 2], upper="upper_bound",
                  postprocess=["none", "largest_component"])
    out = tmp_path / "grid"
    said, kept_before = [], {}
    early = tmp_path / "early_records"

    def say(line: str) -> None:  # which records exist when each later run starts: kept run by run, not at the end
        said.append(line)
        if "start" in line:
            kept_before[line.split()[-1]] = sorted(str(p.parent.relative_to(early)) for p in early.rglob("benchmark_time.json"))

    res = run_benchmark(path, out, say=say, records=early)
    assert "3 runs, 0 already complete" in said[0]
    last = [line.split()[-1] for line in said if "start" in line][-1]
    assert len(kept_before[last]) == 2, kept_before
    assert sum("start  once/seed_0/upper_bound" in line for line in said) == 1  # trained once, shown in both cells
    once = out / "once" / "seed_0" / "upper_bound"
    assert (once / "eval_test" / "summary.csv").is_file() and (once / "eval_test_lcc" / "summary.csv").is_file()
    assert not (out / "labeled_1" / "seed_0" / "upper_bound").exists()
    rows = res["rows"]
    assert len(rows) == 2 * 2 * 2  # labeled counts x runs x post-processing
    assert {r["postprocess"] for r in rows} == {"none", "largest_component"}
    assert all(r["peak_rss_gib"] > 0 for r in rows)
    md = (out / "results.md").read_text()
    assert "### 1 labeled, largest connected component kept" in md and "peak RSS" in md and "Jaccard mean" in md
    # records: run folders without weights; a fresh output resumes from them without training again
    rec = tmp_path / "records"
    run_benchmark(path, out, say=said.append, report_only=True, records=rec)
    assert (rec / "once" / "seed_0" / "upper_bound" / "eval_test_lcc" / "summary.csv").is_file()
    assert not list(rec.rglob("*.pt"))
    said.clear()
    again = run_benchmark(path, tmp_path / "fresh", say=said.append, records=rec)
    assert "copied 3 run record(s)" in said[0] and "3 already complete" in said[1]
    assert not any("start" in line for line in said)
    assert len(again["rows"]) == 8
    # a run whose configuration is no longer the planned one (a preset changed since) is stale: not tabulated
    cfg_file = tmp_path / "fresh" / "once" / "seed_0" / "upper_bound" / "config.yaml"
    cfg_file.write_text(cfg_file.read_text().replace("iterations: 2", "iterations: 3"))
    stale = run_benchmark(path, tmp_path / "fresh", say=said.append, report_only=True)
    assert len(stale["rows"]) == 4 and {r["run"] for r in stale["rows"]} == {"lower_bound"}
    md = (tmp_path / "fresh" / "results.md").read_text()  # the table says why the row is missing
    assert "| upper_bound | (stale) |" in md and "| upper_bound | (pending) |" not in md and "trains them again" in md
    # a stale record is replaced by the current run's record (not kept because it is complete)
    rec_cfg = rec / "once" / "seed_0" / "upper_bound" / "config.yaml"
    rec_cfg.write_text(rec_cfg.read_text().replace("iterations: 2", "iterations: 3"))
    run_benchmark(path, tmp_path / "fresh2", say=said.append, report_only=True, records=rec)  # stale in records only
    assert "| upper_bound | (stale) |" in (tmp_path / "fresh2" / "results.md").read_text()
    run_benchmark(path, out, say=said.append, report_only=True, records=rec)
    assert "iterations: 2" in rec_cfg.read_text() and "iterations: 3" not in rec_cfg.read_text()
    # a finished run of another configuration, with its weights, is never deleted to make room for a record
    out_cfg = once / "config.yaml"
    out_cfg.write_text(out_cfg.read_text().replace("iterations: 2", "iterations: 3"))
    said.clear()
    run_benchmark(path, out, say=said.append, report_only=True, records=rec)
    assert "iterations: 3" in out_cfg.read_text() and (once / "checkpoint_final.pt").is_file()
    assert not any("copied" in line for line in said)
    with pytest.raises(ConfigError, match="cannot start from"):
        load_benchmark(_write(tmp_path, msd_dataset, {"lower_bound": {"preset": "synthbrain2d_supervised"},
                                                      "u": {"preset": "synthbrain2d_supervised", "once": True,
                                                            "init_from": "lower_bound"}}))


def test_bad_benchmark_files(tmp_path, msd_dataset):
    with pytest.raises(ConfigError, match="not a run of this benchmark"):
        load_benchmark(_write(tmp_path, msd_dataset, {"a": {"preset": "synthbrain2d_supervised", "init_from": "b"}}))
    with pytest.raises(ConfigError, match="cycle"):
        load_benchmark(_write(tmp_path, msd_dataset, {"a": {"preset": "x", "init_from": "b"}, "b": {"preset": "x", "init_from": "a"}},
                                     lower=None))
    with pytest.raises(ConfigError, match="does not exist"):
        load_benchmark(tmp_path / "missing.yaml")
    # a bad override in any run fails before anything trains
    path = _write(tmp_path, msd_dataset, {"lower_bound": {"preset": "synthbrain2d_supervised", "overrides": ["train.nope=1"]}})
    with pytest.raises(ConfigError, match="nope"):
        run_benchmark(path, tmp_path / "g", say=lambda s: None)
    assert not (tmp_path / "g" / "labeled_2").exists()


def test_select_takes_the_named_runs_and_what_they_start_from(tmp_path, msd_dataset):
    from semiseg.benchmark.planning import select

    runs = {"a": {"preset": "p"}, "b": {"preset": "p", "init_from": "a"}, "c": {"preset": "p", "init_from": "b"},
            "d": {"preset": "p"}}
    cfg = load_benchmark(_write(tmp_path, msd_dataset, runs, lower=None, labeled=[2, 3], seeds=[0, 1]))
    jobs = plan(cfg, tmp_path)
    picked = select(cfg, jobs, runs=["c"], labeled=[3], seeds=[1])
    assert [(j.run, j.labeled, j.seed) for j in picked] == [("a", 3, 1), ("b", 3, 1), ("c", 3, 1)]
    assert {(j.run, j.labeled) for j in select(cfg, jobs, runs=["d"], seeds=[0])} == {("d", 2), ("d", 3)}
    assert len(select(cfg, jobs, labeled=[2])) == 8
    with pytest.raises(ConfigError, match=r"no run e .*it has: a, b, c, d"):
        select(cfg, jobs, runs=["e"])
    with pytest.raises(ConfigError, match=r"no labeled count 5 .*it has: 2, 3"):
        select(cfg, jobs, labeled=[5])


@pytest.mark.slow
def test_a_selected_run_trains_with_its_init_from_run_and_nothing_else(msd_dataset, tmp_path, capsys):
    from semiseg.cli import main

    runs = {"lower_bound": {"preset": "synthbrain2d_supervised"},
            "continued": {"preset": "synthbrain2d_supervised", "init_from": "lower_bound"},
            "other": {"preset": "synthbrain2d_supervised"}}
    path = _write(tmp_path, msd_dataset, runs)
    out = tmp_path / "grid"
    assert main(["benchmark", str(path), "--output", str(out), "--runs", "continued", "--labeled", "2", "--seeds", "0"]) == 0
    cell = out / "labeled_2" / "seed_0"
    assert (cell / "continued" / "checkpoint_final.pt").is_file() and (cell / "lower_bound" / "checkpoint_final.pt").is_file()
    assert not (cell / "other").exists()
    assert "3 runs, 2 selected, 0 of them already complete" in capsys.readouterr().out
    assert "| other | (pending) |" in (out / "results.md").read_text()
    assert main(["benchmark", str(path), "--output", str(out), "--seeds", "0,x"]) == 2
    # from records (no weights): a run others start from is trained again only when one of them must train
    import shutil

    from semiseg.engine.run_dir import trajectory_fingerprint

    rec = tmp_path / "records"
    run_benchmark(path, out, say=lambda s: None, report_only=True, records=rec)
    assert not list((rec / "labeled_2" / "seed_0" / "lower_bound").glob("*.pt"))  # records keep no weights
    said = []
    run_benchmark(path, tmp_path / "fresh", say=said.append, records=rec, only={"runs": ["continued"]})
    assert "2 of them already complete" in said[1] and not any("start" in line for line in said)
    shutil.rmtree(rec / "labeled_2" / "seed_0" / "continued")
    log = rec / "labeled_2" / "seed_0" / "lower_bound" / "train.log"
    log.write_text(log.read_text() + "MARKER of the earlier record\n")
    said.clear()
    run_benchmark(path, tmp_path / "fresh2", say=said.append, records=rec, only={"runs": ["continued"]})
    started = [line.split()[-1] for line in said if "start" in line]
    assert started == ["labeled_2/seed_0/lower_bound", "labeled_2/seed_0/continued"]
    # the retrained run's record replaces the earlier one: it describes the weights `continued` started from
    assert "MARKER" not in log.read_text()
    assert (rec / "labeled_2" / "seed_0" / "continued" / "benchmark_time.json").is_file()
    begun = json.loads((tmp_path / "fresh2" / "labeled_2" / "seed_0" / "continued" / "init_from.json").read_text())
    assert begun["source_trajectory"] == trajectory_fingerprint(tmp_path / "fresh2" / "labeled_2" / "seed_0" / "lower_bound")
    # a run that another process is training (its lock) is never replaced by its record, e.g. by a report-only
    # call beside a running grid (it once deleted a training run's files under it)
    import os
    import platform

    from semiseg.engine.run_dir import TRAINING_LOCK

    busy = tmp_path / "busy" / "labeled_2" / "seed_0" / "continued"
    busy.mkdir(parents=True)
    (busy / "train.log").write_text("in training\n")
    (busy / TRAINING_LOCK).write_text(json.dumps({"pid": os.getppid(), "host": platform.node(), "started": "now"}))
    run_benchmark(path, tmp_path / "busy", say=lambda s: None, report_only=True, records=rec)
    assert (busy / "train.log").read_text() == "in training\n" and not (busy / "metrics.csv").exists()
    assert (tmp_path / "busy" / "labeled_2" / "seed_0" / "lower_bound" / "metrics.csv").is_file()  # others copied
    assert not list(rec.rglob(TRAINING_LOCK))  # never part of a record

def _fake_complete_run(run_dir, started, dice, metrics="step,split,name,value\n50,train,loss,0.5\n", source=None):
    """A scored run record (no weights) whose training first started at ``started``; ``source``: the trajectory
    fingerprint it recorded for the run it started from (``init_from.json``)."""
    (run_dir / "eval_test").mkdir(parents=True)
    (run_dir / "benchmark_time.json").write_text('{"train_s": 60.0}')
    (run_dir / "metrics.csv").write_text(metrics)
    (run_dir / "train.log").write_text(f"{started},000 INFO semiseg 0.1.0: method 'supervised'\n")
    (run_dir / "eval_test" / "summary.csv").write_text(
        "class,metric,mean\nfg,dice,{0}\nmean,dice,{0}\n".format(dice))
    (run_dir / "eval_test" / "scores.csv").write_text(f"case,class,dice\nc0,fg,{dice}\n")
    if source is not None:
        (run_dir / "init_from.json").write_text(json.dumps({"source_trajectory": source}))


def test_a_run_from_an_earlier_training_of_its_start_is_marked_and_trains_again(tmp_path, monkeypatch):
    """The run others start from was trained again after them (a fresh machine, a record without weights) and
    took another trajectory: the table marks them, and selecting them trains them again from the start the
    table shows. A retraining that repeated the trajectory bit for bit marks nothing."""
    from semiseg.benchmark import BenchmarkConfig, write_results
    from semiseg.benchmark.execution import runs_to_train
    from semiseg.benchmark.planning import from_an_earlier_start
    from semiseg.benchmark.results import collect_results
    from semiseg.engine.run_dir import trajectory_fingerprint

    cfg = BenchmarkConfig(name="t", labeled=[2], seeds=[0], lower="lower_bound",
                          runs={"lower_bound": {"preset": "p"}, **{n: {"preset": "p", "init_from": "lower_bound"}
                                                                    for n in ("old", "reproduced", "legacy", "new")}})
    todo = plan(cfg, tmp_path)
    cell = tmp_path / "labeled_2" / "seed_0"
    _fake_complete_run(cell / "lower_bound", "2026-12-07 01:16:43", 0.5)
    now = trajectory_fingerprint(cell / "lower_bound")
    assert now is not None and trajectory_fingerprint(cell / "old") is None
    _fake_complete_run(cell / "old", "2026-12-03 19:30:31", 0.7, source="0" * 64)  # another trajectory
    _fake_complete_run(cell / "reproduced", "2026-12-03 19:40:00", 0.65, source=now)  # the same one, trained earlier
    _fake_complete_run(cell / "legacy", "2026-12-03 19:50:00", 0.66)  # no fingerprint: started before its start
    _fake_complete_run(cell / "new", "2026-12-07 02:10:00", 0.6, source=now)
    (cell / "lower_bound" / "checkpoint_final.pt").write_bytes(b"x")  # its weights are here
    by = {j.run: j for j in todo}
    assert [n for n in by if from_an_earlier_start(by[n])] == ["old", "legacy"]
    assert [j.run for j in runs_to_train(todo, todo)] == ["old", "legacy"]  # their start is kept: not trained again
    monkeypatch.setattr("semiseg.benchmark.results._method_of", lambda run_dir: "supervised")  # no config.yaml here
    rows = collect_results(cfg, todo)
    write_results(cfg, rows, tmp_path, "semiseg benchmark t.yaml")
    md = (tmp_path / "results.md").read_text()
    assert "| old † |" in md and "| legacy † |" in md and "| new |" in md and "| reproduced |" in md
    assert "† old (seed 0) started from another training of `lower_bound` than the one in this table" in md
    (cell / "legacy" / "train.log").write_text("")  # neither a fingerprint nor a time to compare: not marked
    assert not from_an_earlier_start(by["legacy"])


def test_plan_orders_dependencies_first(tmp_path, msd_dataset):
    cfg = load_benchmark(_write(tmp_path, msd_dataset, {"b": {"preset": "p", "init_from": "a"}, "a": {"preset": "p"}}, lower=None))
    assert [j.run for j in plan(cfg, tmp_path)] == ["a", "b"]


def test_table_has_bootstrap_interval_equivariance_and_plot(tmp_path):
    from semiseg.benchmark import BenchmarkConfig, write_results

    cfg = BenchmarkConfig(name="t", labeled=[2, 4], seeds=[0, 1], lower="base", upper="full",
                          runs={"base": {"preset": "p"}, "equireg": {"preset": "p"}, "full": {"preset": "p"}})
    rows = []
    for lab in (2, 4):
        for seed in (0, 1):
            for run, level in (("base", 0.5), ("equireg", 0.6), ("full", 0.8)):
                cases = {f"c{i}": level + 0.01 * lab + 0.02 * seed + 0.01 * i for i in range(5)}
                rows.append({"run": run, "method": "equireg", "labeled": lab, "seed": seed, "dice_fg": 0.0,
                             "dice_mean": sum(cases.values()) / 5, "equivariance_dice_mean": 0.9, "ri_dice": 0.1,
                             "bridging": 0.5, "train_s": 60.0, "_cases": cases})
    write_results(cfg, rows, tmp_path, "semiseg benchmark t.yaml")
    md = (tmp_path / "results.md").read_text()
    assert "| 95% CI |" in md and "equivariance Dice" in md and "results.png" in md
    line = next(x for x in md.splitlines() if x.startswith("| equireg |"))
    lo, hi = (float(v) for v in line.split("[")[1].split("]")[0].split(","))
    assert lo < 0.6 + 0.02 + 0.01 + 0.02 < hi  # the labeled-2 mean over seeds and cases lies inside
    assert (tmp_path / "results.png").stat().st_size > 1000
    assert "_cases" not in (tmp_path / "results.csv").read_text()


def test_a_run_restricted_to_some_labeled_counts_is_planned_and_tabulated_only_there(tmp_path):
    from semiseg.benchmark import BenchmarkConfig, write_results

    cfg = BenchmarkConfig(name="t", labeled=[4, 8, 16], runs={"lower": {"preset": "p"}, "base": {"preset": "p", "labeled": [8, 16]},
                                                              "up": {"preset": "p", "once": True}})
    assert [(j.run, j.labeled) for j in plan(cfg, tmp_path)] == [
        ("lower", 4), ("up", 4), ("lower", 8), ("base", 8), ("up", 8), ("lower", 16), ("base", 16), ("up", 16)]
    assert cfg.entries() == 3 + 2 + 3
    rows = [{"run": "base", "method": "m", "labeled": 8, "seed": 0, "dice_fg": 0.5, "dice_mean": 0.5, "train_s": 1.0, "ri_dice": 0.0,
             "bridging": 0.0,
             "_cases": {"c": 0.5}}]
    write_results(cfg, rows, tmp_path, "semiseg benchmark t.yaml")
    md = (tmp_path / "results.md").read_text()
    assert "Table entries complete: 1 of 8" in md
    assert "| base | (pending)" not in md.split("### 8 labeled")[0]  # not planned at 4 labeled: no row there
    for bad, msg in (({"a": {"preset": "p", "labeled": [5]}}, "not among the file's labeled counts"),
                     ({"a": {"preset": "p", "labeled": [8]}, "b": {"preset": "p", "init_from": "a"}}, "not trained at labeled \\[4\\]"),
                     ({"a": {"preset": "p", "labeled": [8], "once": True}}, "once per seed")):
        with pytest.raises(ValueError, match=msg):
            BenchmarkConfig(name="t", labeled=[4, 8], runs=bad)


def test_vary_split_sets_the_split_seed_per_seed(tmp_path):
    from semiseg.benchmark import BenchmarkConfig

    cfg = BenchmarkConfig(name="t", labeled=[2], seeds=[0, 3], vary_split=True, runs={"a": {"preset": "p"}})
    assert [("split.seed=%d" % j.seed) in j.overrides for j in plan(cfg, tmp_path)] == [True, True]
    cfg.vary_split = False
    assert not any(o.startswith("split.seed") for j in plan(cfg, tmp_path) for o in j.overrides)


@pytest.mark.parametrize("path", sorted((__import__("pathlib").Path(__file__).parents[1] / "benchmarks").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_shipped_benchmark_files_load_with_every_run_config(path, tmp_path):
    """Every run of every committed grid builds a valid configuration (a typo fails here, not hours in)."""
    from semiseg.benchmark.budget import is_budget_file, load_budget, plan_budget
    from semiseg.config import load_config
    from semiseg.methods.registry import validate_method_params

    if is_budget_file(path):  # a label-budget simulation: its start run and every round's run
        budget = load_budget(path)
        rounds = [r for by in plan_budget(budget, tmp_path).values() for ch in by.values() for r in ch + ([ch[0].previous] if ch[0].previous else [])]
        for r in rounds:
            cfg = load_config(r.job.preset, [o for o in r.job.overrides if not o.startswith("method.init_from=")])
            validate_method_params(cfg.method.name, cfg.method.params)
        return
    cfg = load_benchmark(path)
    jobs = plan(cfg, tmp_path)
    assert len(jobs) == cfg.entries()

    for j in jobs:
        cfg = load_config(j.preset, [o for o in j.overrides if not o.startswith("method.init_from=")])
        validate_method_params(cfg.method.name, cfg.method.params)  # params merged from a base preset fit the method


@pytest.mark.parametrize("table", ["acdc", "la"])
def test_the_gpu_file_of_a_table_has_the_rows_of_its_cpu_file(table):
    """The paper-scale file (``*_gpu.yaml``) and the CPU protocol (``*_cpu.yaml``) of one table list the same runs,
    so a method added to the CPU table is not missing at paper scale."""
    from pathlib import Path

    bench = Path(__file__).parents[1] / "benchmarks"
    cpu, gpu = (load_benchmark(bench / f"{table}_{kind}.yaml") for kind in ("cpu", "gpu"))
    assert set(gpu.runs) == set(cpu.runs)
    assert {n: r.preset for n, r in gpu.runs.items()} == {n: r.preset for n, r in cpu.runs.items()}


def test_equivariance_grids_rescore_complete_runs_without_it(tmp_path):
    from semiseg.benchmark import is_complete

    run = tmp_path / "r"
    (run / "eval_test").mkdir(parents=True)
    (run / "checkpoint_final.pt").write_bytes(b"x")
    (run / "eval_test" / "summary.csv").write_text("class,metric,mean\n")
    assert is_complete(run) and not is_complete(run, equivariance=True)
    (run / "eval_test" / "equivariance.csv").write_text("case,class,equivariance_dice\n")
    assert is_complete(run, equivariance=True)


def test_a_run_copied_back_without_weights_is_tabulated_not_skipped(tmp_path):
    from semiseg.benchmark import is_complete

    run = tmp_path / "r"
    (run / "eval_test").mkdir(parents=True)
    (run / "eval_test" / "summary.csv").write_text("class,metric,mean\n")
    assert not is_complete(run, weights_needed=False)  # scored mid-training by hand: not a grid result
    (run / "benchmark_time.json").write_text("{}")
    assert is_complete(run, weights_needed=False) and not is_complete(run)


@pytest.mark.slow
def test_every_step_time_row_takes_a_step():
    """benchmarks/step_time.py --all: every preset's method/network pair builds and trains one step (tiny sizes)."""
    import sys

    import torch

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "benchmarks"))
    import step_time

    rows = [r for r in step_time.SPECS + step_time.preset_specs() if not r.gpu_only]
    assert any(r.row.startswith("ACDC CPU: acdc2d_bcp") for r in rows) and any(r.row.startswith("LA CPU: la3d_ssnet") for r in rows)
    assert any("112x112x80" in r.row for r in rows)
    for r in rows:
        tiny = r._replace(patch=32, network_kwargs={**r.network_kwargs, **(
            {"n_filters": 2} if r.network.startswith("vnet") else {})})
        if r.network.startswith("fc_densenet"):
            continue  # FC-DenseNet's own rows run at full size in the benchmark
        assert step_time.time_step(tiny, torch.device("cpu"), warmup=0, steps=1) > 0, r.row


def _die_or_mark(job):
    """Stands in for execute_job in the grid's worker processes: the run named 'die' kills its worker."""
    import os

    if job.run == "die":
        os._exit(3)
    job.run_dir.mkdir(parents=True, exist_ok=True)
    (job.run_dir / "ran.txt").write_text("ran")
    return {"train_s": 0.0}


@pytest.mark.slow
def test_a_killed_worker_fails_its_runs_and_the_grid_goes_on(msd_dataset, tmp_path, monkeypatch):
    import semiseg.benchmark.execution as execution
    from semiseg.errors import SemisegError

    monkeypatch.setattr(execution, "execute_job", _die_or_mark)  # pickled by reference: the workers import this module
    runs = {"die": {"preset": "synthbrain2d_supervised"}, "lower_bound": {"preset": "synthbrain2d_supervised"},
            "after": {"preset": "synthbrain2d_supervised"}}
    path = _write(tmp_path, msd_dataset, runs, jobs=1)
    said = []
    with pytest.raises(SemisegError, match="a worker process died") as err:
        run_benchmark(path, tmp_path / "grid", say=said.append)
    cell = tmp_path / "grid" / "labeled_2" / "seed_0"
    # the runs after the dead worker still ran, in a new pool; the message says to re-run
    assert (cell / "lower_bound" / "ran.txt").is_file() and (cell / "after" / "ran.txt").is_file()
    assert "re-run the same command" in str(err.value) and any("FAILED" in s and "die" in s for s in said)


def _die_or_return(name):
    """A worker task for run_in_workers: 'die' kills its worker process, 'fail' raises, others return their name."""
    import os

    if name == "die":
        os._exit(3)
    if name == "fail":
        raise RuntimeError("bad run")
    return name


@pytest.mark.slow
def test_run_in_workers_reports_every_task_once_and_survives_a_killed_worker():
    from semiseg.benchmark.execution import WORKER_DIED, Task, run_in_workers

    todo = ["a", "die", "fail", "b"]
    ended: dict[str, tuple] = {}

    def pick(free):
        start = [Task(n, _die_or_return, (n,)) for n in todo[:free]]
        del todo[:free]
        return start

    run_in_workers(1, pick, lambda t, result, error: ended.setdefault(t.key, (result, error)))
    assert ended == {"a": ("a", None), "die": (None, WORKER_DIED), "fail": (None, "RuntimeError: bad run"), "b": ("b", None)}


def _sleep_forever(path):
    import time

    path.write_text("started")
    time.sleep(600)


def _grid_with_one_sleeping_worker(flag):
    """A process running ``run_in_workers`` with one task that sleeps 600 s, and the pids of its workers (Linux)."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    code = ("from pathlib import Path\nfrom semiseg.benchmark.execution import Task, run_in_workers\n"
            "from tests.test_benchmark import _sleep_forever\n"
            f"todo = [Task('x', _sleep_forever, (Path({str(flag)!r}),))]\n"
            "run_in_workers(1, lambda free: [todo.pop()] if todo else [], lambda *a: None)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[1], stderr=subprocess.PIPE)
    for _ in range(300):
        if flag.is_file():
            break
        time.sleep(0.1)
    assert flag.is_file(), "the worker never started"
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:  # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after its ')'
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent.pid and "spawn_main" in (stat.parent / "cmdline").read_text():
                workers.append(stat.parent.name)
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            continue
    assert workers
    return parent, workers


def _assert_ended(workers, what):
    import os
    import time

    for _ in range(100):
        if not any(os.path.exists(f"/proc/{w}") and open(f"/proc/{w}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
                   for w in workers):
            return
        time.sleep(0.1)
    raise AssertionError(f"worker(s) {workers} outlived {what}")


@pytest.mark.slow
@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_grid_takes_its_workers_with_it(tmp_path):
    """The benchmark process killed (``kill PID``): its worker ends too instead of training on unsupervised."""
    import os
    import signal

    parent, workers = _grid_with_one_sleeping_worker(tmp_path / "started.txt")
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    _assert_ended(workers, "the killed grid process")


@pytest.mark.slow
@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="/proc is Linux's")
def test_an_interrupted_grid_stops_its_workers_instead_of_waiting_for_them(tmp_path):
    """SIGINT sent to the benchmark process alone (``kill -INT PID``; Ctrl-C reaches every process of the
    terminal's group): it ends its workers and exits now, not after the run in flight (hours) has finished."""
    import os
    import signal

    parent, workers = _grid_with_one_sleeping_worker(tmp_path / "started.txt")
    os.kill(parent.pid, signal.SIGINT)
    try:
        _, err = parent.communicate(timeout=30)
    finally:
        parent.kill()
    assert b"KeyboardInterrupt" in err
    _assert_ended(workers, "the interrupted grid process")


def test_a_run_of_an_earlier_method_revision_is_stale(tmp_path, msd_dataset, monkeypatch):
    """A fix that no option shows (Method.revision raised) makes earlier runs of that method stale."""
    from semiseg.benchmark.planning import matches_plan
    from semiseg.config import dump_config, load_config
    from semiseg.engine.run_dir import method_revision_of, write_environment
    from semiseg.methods.registry import get_method_class

    path = _write(tmp_path, msd_dataset, {"lower_bound": {"preset": "synthbrain2d_supervised"}})
    job = plan(load_benchmark(path), tmp_path / "grid")[0]
    job.run_dir.mkdir(parents=True)
    (job.run_dir / "config.yaml").write_text(dump_config(load_config(job.preset, list(job.overrides))))
    assert matches_plan(job.run_dir, job)  # no environment.json yet: judged by its configuration
    write_environment(job.run_dir, "cpu")  # revision 0, as every run recorded before revisions were
    assert method_revision_of(job.run_dir) == 0 and matches_plan(job.run_dir, job)
    monkeypatch.setattr(get_method_class("supervised"), "revision", 1)
    assert not matches_plan(job.run_dir, job)
    write_environment(job.run_dir, "cpu", 1)
    assert method_revision_of(job.run_dir) == 1 and matches_plan(job.run_dir, job)


def test_threads_and_progress_do_not_make_a_run_stale(tmp_path, msd_dataset):
    """A grid resumed with another thread count or progress display reuses its runs; a changed training setting
    (here the batch size) still makes them stale, and `semiseg train` still refuses that folder."""
    from semiseg.benchmark.planning import matches_plan
    from semiseg.config import dump_config, load_config
    from semiseg.engine.trainer import run_or_resume

    path = _write(tmp_path, msd_dataset, {"lower_bound": {"preset": "synthbrain2d_supervised"}})
    job = plan(load_benchmark(path), tmp_path / "grid")[0]
    job.run_dir.mkdir(parents=True)
    planned = load_config(job.preset, list(job.overrides))
    ran = load_config(job.preset, [*job.overrides, "train.threads=2", "train.progress=on", "train.profile=off"])
    assert ran.train.threads == 2 and planned.train.threads != 2
    (job.run_dir / "config.yaml").write_text(dump_config(ran))
    assert matches_plan(job.run_dir, job)
    other = load_config(job.preset, [*job.overrides, f"train.batch_size={planned.train.batch_size + 1}"])
    (job.run_dir / "config.yaml").write_text(dump_config(other))
    assert not matches_plan(job.run_dir, job)
    with pytest.raises(ConfigError, match="holds a run with another configuration"):
        run_or_resume(planned, job.run_dir)


def test_a_run_folder_of_an_earlier_revision_is_refused_by_train(tmp_path, msd_dataset, monkeypatch):
    """`semiseg train` into a folder that an earlier revision of the method trained: an error, nothing touched."""
    from semiseg.config import dump_config, load_config
    from semiseg.engine.run_dir import write_environment
    from semiseg.engine.trainer import run_or_resume
    from semiseg.methods.registry import get_method_class
    from tests.conftest import tiny_overrides

    cfg = load_config("synthbrain2d_supervised", tiny_overrides(msd_dataset))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(cfg))
    write_environment(run, "cpu", 0)
    monkeypatch.setattr(get_method_class("supervised"), "revision", 1)
    with pytest.raises(ConfigError, match="revision 0 of method 'supervised'.*revision 1"):
        run_or_resume(cfg, run)
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "environment.json"]


@pytest.mark.slow
def test_the_grid_sets_a_stale_run_aside_and_trains_it_again(msd_dataset, tmp_path):
    path = _write(tmp_path, msd_dataset, {"lower_bound": {"preset": "synthbrain2d_supervised"}})
    out = tmp_path / "grid"
    run_benchmark(path, out, say=lambda _: None)
    run = out / "labeled_2" / "seed_0" / "lower_bound"
    cfg_file = run / "config.yaml"
    cfg_file.write_text(cfg_file.read_text().replace("iterations: 2", "iterations: 3"))  # a preset changed since
    said = []
    run_benchmark(path, out, say=said.append)
    aside = [p for p in run.parent.iterdir() if p.name.startswith("lower_bound.stale-")]
    assert len(aside) == 1 and (aside[0] / "checkpoint_final.pt").is_file()  # kept, weights and all
    assert "iterations: 3" in (aside[0] / "config.yaml").read_text()
    assert "iterations: 2" in cfg_file.read_text() and (run / "checkpoint_final.pt").is_file()  # trained again
    assert any("stale run it replaces kept as lower_bound.stale-" in line for line in said)
