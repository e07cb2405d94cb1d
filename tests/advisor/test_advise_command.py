"""``semiseg advise`` end to end: on 2D and 3D runs, on a folder of new images, and its errors (issue 15)."""

import csv
import json

import pytest

from semiseg.cli import main
from tests.conftest import tiny_overrides, write_msd

pytestmark = pytest.mark.slow


def _train(tmp_path, preset, method, dims):
    root = write_msd(tmp_path / "ds", n_cases=8, unlabeled=3)
    run = tmp_path / f"run_{method}"
    ov = tiny_overrides(root, dims) + [f"method.name={method}", "split.unlabeled=rest", "train.iterations=4",
                                       "train.val_every=4", "train.checkpoint_every=4"]
    if method != "supervised":
        ov.append("train.unlabeled_batch_size=2")
    assert main(["train", preset, *ov, "--run-dir", str(run)]) == 0
    return root, run


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("dims,preset", [(2, "synthbrain2d_supervised"), (3, "synthbrain3d_supervised")])
def test_every_strategy_ranks_the_runs_unlabeled_cases(tmp_path, capsys, dims, preset):
    root, run = _train(tmp_path, preset, "mean_teacher", dims)
    splits = json.loads((run / "splits.json").read_text())
    for strategy in ("random", "entropy", "disagreement", "tta", "diverse"):
        assert main(["advise", str(run), "--strategy", strategy, "--k", "2"]) == 0, strategy
        out = run / f"advice_{strategy}"
        rows = _rows(out / "advice.csv")
        # every unlabeled case is ranked once, and nothing else: no labeled, validation or test case
        assert sorted(c for r in rows for c in r["cases"].split(";")) == sorted(splits["unlabeled"])
        assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
        if strategy in ("entropy", "disagreement", "tta"):
            scores = [float(r["score"]) for r in rows]
            assert scores == sorted(scores, reverse=True) and scores == [float(r[strategy]) for r in rows]
        top = [c for r in rows[:2] for c in r["cases"].split(";")]
        assert (out / "next_labeled_cases.txt").read_text().split() == sorted(splits["labeled"] + top)
        assert len(list((out / "thumbnails").glob("*.png"))) == 2
        assert "| 1 |" in (out / "advice.md").read_text()
    printed = capsys.readouterr().out
    assert printed.count("score") >= 10
    # the default (auto) is disagreement for a method with a teacher: the same ranking as asking for it
    assert main(["advise", str(run), "--k", "2", "--out", str(tmp_path / "auto")]) == 0
    assert "strategy auto -> disagreement" in capsys.readouterr().err
    assert _rows(tmp_path / "auto" / "advice.csv") == _rows(run / "advice_disagreement" / "advice.csv")
    # earlier advice is not overwritten silently
    assert main(["advise", str(run), "--strategy", "entropy"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["advise", str(run), "--strategy", "entropy", "--overwrite"]) == 0


def test_a_folder_of_new_images_and_the_errors(tmp_path, capsys):
    root, run = _train(tmp_path, "synthbrain2d_supervised", "supervised", 2)
    new = write_msd(tmp_path / "new", n_cases=3, seed=5) / "imagesTr"
    out = tmp_path / "advice"
    assert main(["advise", str(run), "--unlabeled", str(new), "--strategy", "tta", "--out", str(out)]) == 0
    rows = _rows(out / "advice.csv")
    assert sorted(r["subject"] for r in rows) == ["case00", "case01", "case02"]
    assert not (out / "next_labeled_cases.txt").exists()  # new images have no place in the run's split
    # a supervised run has one network: no disagreement, and the message says what to do instead
    assert main(["advise", str(run), "--strategy", "disagreement"]) == 2
    err = capsys.readouterr().err
    assert "supervised" in err and "entropy" in err and "Traceback" not in err
    # the default (auto) falls back to diverse for one network, in the folder named after what it ran
    assert main(["advise", str(run), "--k", "1"]) == 0
    assert "strategy auto -> diverse" in capsys.readouterr().err
    ranked = [c for r in _rows(run / "advice_diverse" / "advice.csv") for c in r["cases"].split(";")]
    assert sorted(ranked) == sorted(json.loads((run / "splits.json").read_text())["unlabeled"])
    assert main(["advise", str(run), "--k", "0"]) == 2
    assert main(["advise", str(tmp_path / "nowhere")]) == 2
    assert main(["advise", str(run), "--unlabeled", str(tmp_path / "nowhere")]) == 2


def test_member_dice_scores_every_network_of_a_run(msd_dataset, tmp_path, monkeypatch, capsys):
    # msd_dataset: 8 labeled training cases (2 labeled, 1 val, 2 test -> 3 with labels in the pool) + 3 unlabeled scans
    """benchmarks/member_dice.py: each network of a two-network run scored on its unlabeled-pool cases."""
    import sys
    from pathlib import Path

    from semiseg.config import load_config
    from semiseg.engine.trainer import Trainer
    from tests.conftest import tiny_overrides

    cfg = load_config("synthbrain2d_supervised", tiny_overrides(msd_dataset) + [
        "method.name=mean_teacher", "train.unlabeled_batch_size=2", "split.unlabeled=rest", "train.iterations=2",
        "train.val_every=2", "train.checkpoint_every=2"])
    Trainer(cfg, tmp_path / "mt").fit()
    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    import member_dice

    monkeypatch.setattr(sys, "argv", ["member_dice.py", str(tmp_path / "mt"), "--cases", "2"])
    member_dice.main()
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines()[1:] if ln.strip()}
    assert {"network", "teacher"} <= set(lines) and "last 2 unlabeled-pool cases with labels" in out
    for name in ("network", "teacher"):
        assert 0.0 <= float(lines[name].split()[1]) <= 1.0 and len(lines[name].split("per case:")[1].split()) == 2
    assert "relative parameter distance network - teacher" in out
