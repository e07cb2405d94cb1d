"""The label-budget simulation (``kind: label_budget``) end to end on a tiny dataset (issue 15)."""

import csv
import json
import shutil

import pytest

from semiseg.benchmark.budget import load_budget, plan_budget, run_budget
from semiseg.errors import ConfigError
from tests.conftest import tiny_overrides, write_msd

pytestmark = pytest.mark.slow


def _dataset(tmp_path):
    root = write_msd(tmp_path / "ds", n_cases=10)
    (root / "imagesTs").mkdir()
    (root / "labelsTs").mkdir()
    for c in ("case08", "case09"):  # a test set the dataset names, as ACDC's test.list does
        shutil.move(root / "imagesTr" / f"{c}_0000.nii.gz", root / "imagesTs" / f"{c}_0000.nii.gz")
        shutil.move(root / "labelsTr" / f"{c}.nii.gz", root / "labelsTs" / f"{c}.nii.gz")
    return root


def _write(tmp_path, root, strategies=("random", "entropy", "disagreement")):
    ov = [o for o in tiny_overrides(root) if not o.startswith(("split.val", "split.test", "split.labeled"))]
    ov += ["split.val=0", "eval.select_by=last", "train.unlabeled_batch_size=2", "train.iterations=2",
           "train.val_every=2", "train.checkpoint_every=2"]
    text = {
        "kind": "label_budget", "name": "tiny_budget", "output": str(tmp_path / "out"),
        "preset": "synthbrain2d_supervised", "start_preset": "synthbrain2d_supervised",
        "start": 2, "add": 1, "rounds": 2, "strategies": list(strategies), "seeds": [0, 1], "jobs": 2,
        "overrides": ov + ["method.name=mean_teacher"], "start_overrides": ["method.name=supervised"],
    }
    path = tmp_path / "budget.yaml"
    path.write_text(json.dumps(text))
    return path


def test_budget_rounds_add_the_advised_subjects_and_resume(tmp_path):
    root = _dataset(tmp_path)
    path = _write(tmp_path, root)
    lines = []
    records = tmp_path / "records"
    run_budget(path, say=lines.append, records=records)
    out = tmp_path / "out"
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 * (1 + 3 * 2)  # per seed: round 0 and 3 strategies x 2 rounds
    for s in (0, 1):
        r0 = json.loads((out / f"seed_{s}" / "start" / "round_0" / "splits.json").read_text())
        assert len(r0["labeled"]) == 2
        for strategy in ("random", "entropy", "disagreement"):
            prev = r0
            for r in (1, 2):
                d = out / f"seed_{s}" / strategy / f"round_{r}"
                sp = json.loads((d / "run" / "splits.json").read_text())
                advice = list(csv.DictReader(open(d / "advice" / "advice.csv")))
                chosen = advice[0]["cases"].split(";")
                # the new labeled set is the previous one plus the top advised subject, chosen among its unlabeled cases
                assert sorted(sp["labeled"]) == sorted(prev["labeled"] + chosen)
                assert set(chosen) <= set(prev["unlabeled"]) and not set(chosen) & set(prev["test"])
                assert sp["test"] == r0["test"] == ["case08", "case09"]
                prev = sp
    assert (out / "results.md").read_text().count("| random |") == 1 and (out / "results.png").is_file()
    assert "vs random" in (out / "results.md").read_text()
    # a second call trains nothing; a fresh output folder resumes from the records alone
    lines.clear()
    run_budget(path, say=lines.append)
    assert "6 of 6 chains complete" in lines[0]
    fresh = tmp_path / "fresh"
    lines.clear()
    run_budget(path, output=fresh, say=lines.append, records=records, report_only=True)
    assert any("copied 16 round record(s)" in m for m in lines), lines  # per seed: lower bound, round 0, 6 rounds
    assert len(list(csv.DictReader(open(fresh / "results.csv")))) == 14
    # another machine (records, no weights) with one strategy of seed 1 missing: seed 1's start trains again; it
    # repeats its trajectory bit for bit (one machine here), so seed 1's complete strategies stand
    kept = records / "seed_1" / "random" / "round_1" / "run" / "benchmark_time.json"
    before = kept.stat().st_mtime_ns
    shutil.rmtree(records / "seed_1" / "entropy")
    other = tmp_path / "other"
    lines.clear()
    run_budget(path, output=other, say=lines.append, records=records, seeds=[1])
    text = "\n".join(lines)
    assert "seed 1: its start was trained on another machine" in text and "5 of 6 chains complete, 1 to train (seeds [1])" in text
    assert "seed 1: the retrained start repeated its trajectory bit for bit" in text
    assert [m.split()[-1] for m in lines if "] start " in m] == ["start", "entropy"]
    assert not (other / "seed_0" / "start" / "round_0" / "checkpoint_final.pt").exists()
    assert (other / "seed_1" / "start" / "round_0" / "checkpoint_final.pt").is_file()
    assert kept.stat().st_mtime_ns == before and (records / "seed_1" / "entropy" / "round_2" / "advice").is_dir()
    assert len(list(csv.DictReader(open(other / "results.csv")))) == 14
    # the same, but the recorded start took another trajectory (another machine's rounding): every strategy of
    # seed 1 trains again from the new start, its records replaced
    metrics = records / "seed_1" / "start" / "round_0" / "metrics.csv"
    metrics.write_text(metrics.read_text() + "99,train,loss,0.1\n")
    shutil.rmtree(records / "seed_1" / "entropy")
    lines.clear()
    run_budget(path, output=tmp_path / "third", say=lines.append, records=records, seeds=[1])
    assert "seed 1: the retrained start took another trajectory" in "\n".join(lines)
    assert sorted(m.split()[-1] for m in lines if "] start " in m) == ["disagreement", "entropy", "random", "start"]
    assert kept.stat().st_mtime_ns > before and "99,train" not in metrics.read_text()
    with pytest.raises(ConfigError, match=r"seeds \[5\] are not in the file's seeds \[0, 1\]"):
        run_budget(path, output=other, say=lines.append, seeds=[5])


def test_each_round_is_kept_in_the_records_as_it_is_scored(tmp_path, monkeypatch):
    """A simulation killed in a chain's second round (a session's end) has kept the first round's record."""
    import torch

    import semiseg.benchmark.budget as budget

    path = _write(tmp_path, _dataset(tmp_path), strategies=("random",))
    cfg = load_budget(path)
    out, records = tmp_path / "out", tmp_path / "records"
    chain = plan_budget(cfg, out)[0]["random"]
    budget._ensure(chain[0])
    real = budget._ensure

    def dies_in_round_2(rnd):
        if rnd.index == 2:
            raise KeyboardInterrupt("the session ended")
        real(rnd)

    monkeypatch.setattr(budget, "_ensure", dies_in_round_2)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(KeyboardInterrupt):
            budget.execute_chain(chain, cfg.model_dump(), out, records)
    finally:
        torch.set_num_threads(threads)
    kept = records / "seed_0" / "random"
    assert (kept / "round_1" / "run" / "eval_test" / "summary.csv").is_file()
    assert (kept / "round_1" / "advice" / "next_labeled_cases.txt").is_file()
    assert not list((kept / "round_1" / "run").glob("checkpoint_*.pt"))  # a record keeps no weights
    assert not (kept / "round_2").exists()


def test_budget_file_errors(tmp_path):
    root = _dataset(tmp_path)
    path = _write(tmp_path, root, strategies=("random", "oracle"))
    with pytest.raises(ConfigError, match="oracle"):
        load_budget(path)
    cfg = load_budget(_write(tmp_path, root))
    plans = plan_budget(cfg, tmp_path / "out")
    assert [r.labeled for r in plans[0]["entropy"]] == [2, 3, 4]


def _start_dies_for_seed_0(rnd):
    """Stands in for the budget's _ensure in its workers: seed 0's shared start kills its worker process."""
    import os

    if rnd.seed == 0:
        os._exit(3)
    rnd.job.run_dir.mkdir(parents=True, exist_ok=True)


def _chain_marks(chain, cfg_dump, out=None, records=None):
    chain[-1].job.run_dir.mkdir(parents=True, exist_ok=True)
    (chain[-1].job.run_dir / "ran.txt").write_text("ran")
    return []


def test_a_killed_worker_fails_its_seed_and_the_other_seeds_go_on(tmp_path, monkeypatch):
    import semiseg.benchmark.budget as budget
    from semiseg.errors import SemisegError

    monkeypatch.setattr(budget, "_ensure", _start_dies_for_seed_0)  # pickled by reference: workers import this module
    monkeypatch.setattr(budget, "execute_chain", _chain_marks)
    monkeypatch.setattr(budget, "collect_budget", lambda cfg, plans: [])
    monkeypatch.setattr(budget, "write_budget_results", lambda *a, **k: None)
    path = _write(tmp_path, _dataset(tmp_path), strategies=("random", "entropy"))
    said = []
    with pytest.raises(SemisegError, match="worker process died") as err:
        run_budget(path, jobs=1, say=said.append)
    plans = plan_budget(load_budget(path), tmp_path / "out")
    assert all((c[-1].job.run_dir / "ran.txt").is_file() for c in plans[1].values())  # seed 1 trained in a new pool
    assert not any((c[-1].job.run_dir / "ran.txt").exists() for c in plans[0].values())
    assert "seed 0 random: its start failed" in str(err.value) and "re-run the same command" in str(err.value)


def test_results_with_one_seed_say_that_the_intervals_leave_out_training_noise(tmp_path):
    from semiseg.benchmark.budget import ONE_SEED_CAVEAT, write_budget_results

    cfg = load_budget(_write(tmp_path, tmp_path / "ds"))
    cases = {"case08": 0.5, "case09": 0.7}
    rows = [{"seed": s, "strategy": st, "round": r, "labeled": 2 + r, "dice_mean": 0.6, "labeled_subjects": "",
             "_cases": cases} for s in (0, 1) for st, r in [("start", 0), ("random", 1), ("random", 2)]]
    write_budget_results(cfg, [r for r in rows if r["seed"] == 0], tmp_path, "cmd")
    assert ONE_SEED_CAVEAT in (tmp_path / "results.md").read_text()
    write_budget_results(cfg, rows, tmp_path, "cmd")
    assert "One seed" not in (tmp_path / "results.md").read_text()
