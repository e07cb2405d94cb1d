import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from semiseg.cli import main
from tests.conftest import tiny_overrides, write_msd


def test_help_and_list(capsys):
    assert main(["--help"]) == 0
    assert main(["list", "methods"]) == 0
    assert "supervised" in capsys.readouterr().out
    assert main(["list", "networks"]) == 0
    assert capsys.readouterr().out.split() == ["fc_densenet", "fc_densenet103", "unet", "unet_dual_task", "unet_mcnet",
                                               "unet_ssl4mis", "unet_urpc", "vnet", "vnet_dual_task", "vnet_mcnet", "vnet_urpc"]


def test_usage_and_config_errors_exit_2(capsys):
    assert main(["bogus"]) == 2
    assert main(["train", "synthbrain2d_supervised", "optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'optim.lrr'" in err and "Traceback" not in err


def test_budget_simulation_refuses_grid_selections(tmp_path, capsys):
    path = tmp_path / "budget.yaml"
    path.write_text("kind: label_budget\nname: b\npreset: synthbrain2d_mean_teacher\n")
    assert main(["benchmark", str(path), "--runs", "random"]) == 2
    assert "--runs and --labeled do not apply (--seeds does)" in capsys.readouterr().err


def test_verify_exit_codes(tmp_path, capsys):
    root = write_msd(tmp_path / "ds", n_cases=3)
    assert main(["verify", str(root)]) == 0
    assert "ok: every check passed" in capsys.readouterr().out
    (root / "labelsTr" / "case02.nii.gz").unlink()
    assert main(["verify", str(root)]) == 3
    assert "case02" in capsys.readouterr().err


@pytest.mark.slow
def test_train_predict_evaluate_round_trip(tmp_path, capsys):
    root = write_msd(tmp_path / "ds", n_cases=6, spacing=(2.0, 1.0, 0.5))
    run = tmp_path / "run"
    assert main(["train", "synthbrain2d_supervised", *tiny_overrides(root), "--run-dir", str(run)]) == 0
    assert main(["train", "synthbrain2d_supervised", *tiny_overrides(root), "--run-dir", str(run)]) == 2  # exists
    inp = root / "imagesTr"
    assert main(["predict", str(run), str(inp), str(inp / "out")]) == 2  # never into the input folder
    out = tmp_path / "pred"
    assert main(["predict", str(run), str(inp), str(out)]) == 0
    src = nib.load(str(inp / "case00_0000.nii.gz"))
    pred = nib.load(str(out / "case00.nii.gz"))
    assert pred.shape == src.shape
    np.testing.assert_allclose(pred.affine, src.affine)
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2}
    assert main(["predict", str(run), str(inp), str(out)]) == 2  # no silent overwrite
    capsys.readouterr()
    assert main(["evaluate", str(out), str(root / "labelsTr"), "--dataset-json", str(root / "dataset.json"),
                 "--out", str(tmp_path / "ev")]) == 0
    text = capsys.readouterr().out
    assert "outer" in text and "whole" in text and (tmp_path / "ev" / "scores.csv").is_file()
    assert main(["evaluate", str(run)]) == 0
    assert (run / "eval_test" / "summary.csv").is_file()
    assert f"scores: {run / 'eval_test' / 'scores.csv'}" in capsys.readouterr().out
    assert main(["evaluate", str(run)]) == 2  # earlier results are not overwritten silently
    assert main(["evaluate", str(run), "--overwrite"]) == 0
    # one unreadable input: the others are still predicted, the failure is named, the exit code says so
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("case00_0000.nii.gz", "case01_0000.nii.gz"):
        (mixed / name).write_bytes((inp / name).read_bytes())
    (mixed / "case00_0000.nii.gz").write_bytes(b"not a nifti")
    capsys.readouterr()
    assert main(["predict", str(run), str(mixed), str(tmp_path / "pred2")]) == 3
    err = capsys.readouterr().err
    assert "case00_0000.nii.gz" in err and "1 of 2 input(s) could not be predicted (1 written" in err
    assert (tmp_path / "pred2" / "case01.nii.gz").is_file() and not (tmp_path / "pred2" / "case00.nii.gz").exists()
    png = tmp_path / "png"
    png.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(png / "x.png")
    main(["predict", str(run), str(png), str(tmp_path / "pred3")])
    assert "x.png: a 2D image, but the model was trained on volumes (layout msd)" in capsys.readouterr().err


def test_evaluate_png_with_threshold(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    m = np.zeros((10, 10), np.uint8)
    m[2:6, 2:6] = 255
    Image.fromarray(m).save(tmp_path / "g" / "a.png")
    Image.fromarray(m).save(tmp_path / "p" / "a.png")
    assert main(["evaluate", str(tmp_path / "p"), str(tmp_path / "g"), "--threshold", "127", "--out", str(tmp_path / "e")]) == 0
    assert "1.0000" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "p"), str(tmp_path / "g"), "--metrics", "dice,hd100"]) == 2


@pytest.mark.slow
def test_demo_trains_its_rows_and_says_which_beat_the_control(msd_dataset, tmp_path):
    from semiseg.demo import DEMO_RUNS, run_demo
    from tests.conftest import tiny_overrides

    out = tmp_path / "demo"
    said = []
    res = run_demo(out, tiny_overrides(msd_dataset) + ["train.iterations=2", "train.val_every=2"], say=said.append)
    assert [r["run"] for r in res["rows"]] == list(DEMO_RUNS) == ["lower_bound", "lower_bound_continued", "roam", "bcp",
                                                                  "upper_bound"]
    report = (out / "report.md").read_text()
    for name in ("roam", "bcp"):  # a plain verdict against the control, in the report and on the console
        line = next(s for s in said if s.startswith(f"{name} "))
        assert ("beats the control" in line or "does NOT beat the control" in line) and line in report
    for f in ("report.md", "results.csv", "boxplot.png", "overlays.png"):
        assert (out / f).is_file(), f
    import yaml

    assert yaml.safe_load((out / "roam" / "config.yaml").read_text())["method"]["init_from"] == str(out / "lower_bound")
    assert "- roam: roam, 2 labeled, 2 iterations, from lower_bound" in (out / "report.md").read_text()


@pytest.mark.slow
def test_predict_2d_images_writes_png_of_the_input_size(tmp_path):
    from tests.data.test_h5_folder2d import make_drive_like

    root = tmp_path / "drive"
    make_drive_like(root)
    run = tmp_path / "run"
    ov = ["data.layout=folder2d", f"data.root={root}", "data.folder2d.images=images", "data.folder2d.labels=manual",
          r"data.folder2d.id_regex=^(\d+)_", "data.folder2d.label_values={0: 0, 255: 1}", "data.patch_size=[16,16]",
          "network.kwargs={features: [4, 8, 16]}", "split.labeled=1", "split.val=1", "split.test=1", "split.unlabeled=none",
          "train.iterations=2", "train.val_every=2", "train.batch_size=2", "train.progress=off",
          "data.preprocessing.normalize=zscore"]
    assert main(["train", "synthbrain2d_supervised", *ov, "--run-dir", str(run)]) == 0
    out = tmp_path / "pred"
    assert main(["predict", str(run), str(root / "images"), str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["21_training.png", "22_training.png", "23_training.png"]
    mask = np.asarray(Image.open(out / "21_training.png"))
    assert mask.shape == (10, 12) and set(np.unique(mask)) <= {0, 255}


def test_version(capsys):
    from semiseg import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"semiseg {__version__}"


def test_relative_data_root_in_a_yaml_is_relative_to_the_yaml(tmp_path, monkeypatch, capsys):
    """Issue 11, defect 6: a relative data.root in a user's YAML resolved against the current directory."""
    import yaml

    write_msd(tmp_path / "project" / "data" / "ds")
    (tmp_path / "project" / "configs").mkdir()
    (tmp_path / "project" / "configs" / "base.yaml").write_text(yaml.safe_dump(
        {"extends": "synthbrain2d_supervised", "data": {"root": "../data/ds"}}))
    (tmp_path / "project" / "configs" / "mine.yaml").write_text(yaml.safe_dump({"extends": "base.yaml", "name": "mine"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["verify", str(tmp_path / "project" / "configs" / "mine.yaml")]) == 0
    assert str(tmp_path / "project" / "data" / "ds") in capsys.readouterr().out


@pytest.mark.slow
def test_supervised_method_with_an_unlabeled_batch_warns_and_loads_none(tmp_path, capsys):
    root = write_msd(tmp_path / "ds", unlabeled=2)
    run = tmp_path / "run"
    assert main(["train", "synthbrain2d_supervised", *tiny_overrides(root), "train.iterations=2", "train.val_every=2",
                 "train.unlabeled_batch_size=2", "--run-dir", str(run)]) == 0
    assert "does not use unlabeled data; train.unlabeled_batch_size = 2 is ignored" in (run / "train.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("dims", [2, 3])
def test_exported_model_gives_the_same_prediction(tmp_path, capsys, dims):
    import torch

    from semiseg.evaluation.inference import predict_probabilities
    from semiseg.evaluation.run_eval import load_model

    root = write_msd(tmp_path / "ds")
    run = tmp_path / "run"
    preset = "synthbrain2d_supervised" if dims == 2 else "synthbrain3d_supervised"
    assert main(["train", preset, *tiny_overrides(root, dims), "train.iterations=2", "--run-dir", str(run)]) == 0
    assert main(["export", str(run), str(tmp_path / "exp")]) == 0
    assert main(["export", str(run), str(tmp_path / "exp")]) == 2  # no silent overwrite
    exported = torch.export.load(str(tmp_path / "exp" / "model.pt2")).module()  # no semiseg code involved
    meta = json.loads((tmp_path / "exp" / "preprocessing.json").read_text())
    assert meta["output"]["classes"] == ["background", "outer", "core"] and meta["input"]["channels"] == 1
    model = load_model(run)
    image = np.random.default_rng(0).normal(size=(1, 12, 32, 32)).astype(np.float32)
    args = (image, dims, model.cfg.data.patch_size, model.cfg.eval)
    torch.testing.assert_close(predict_probabilities(exported, *args), predict_probabilities(model.network, *args))


def test_control_verdicts_compare_test_dice_per_case():
    from types import SimpleNamespace

    from semiseg.demo import control_verdicts

    def res(dices):
        rows = [{"case": f"c{i}", "class": cls, "dice": d} for i, pair in enumerate(dices) for cls, d in zip(("a", "b"), pair)]
        return {"rows": rows, "model": SimpleNamespace(info=SimpleNamespace(class_names=["background", "a", "b"]))}

    results = {"ctl": res([(0.5, 0.5), (0.6, 0.6)]), "good": res([(0.7, 0.5), (0.5, 0.6)]), "bad": res([(0.4, 0.4), (0.6, 0.6)])}
    good, bad = control_verdicts(results, "ctl", ("good", "bad"))
    assert good == "good beats the control (ctl): mean Dice +0.0250, better on 1 of 2 test cases"
    assert bad == "bad does NOT beat the control (ctl): mean Dice -0.0500, better on 0 of 2 test cases"
