import csv
import json
import math

import pytest
import torch

from semiseg.config import load_config
from semiseg.engine.checkpoint import load_checkpoint
from semiseg.engine.trainer import Trainer, TrainingAborted
from semiseg.errors import ConfigError, DatasetError
from semiseg.methods import register_method
from semiseg.methods.supervised import Supervised
from tests.conftest import crash_then_resume, tiny_overrides, write_msd

pytestmark = pytest.mark.slow


def _cfg(root, extra=(), preset="synthbrain2d_supervised", dims=2):
    return load_config(preset, tiny_overrides(root, dims) + list(extra))


def test_a_run_resumed_under_another_thread_count_takes_it(msd_dataset, tmp_path, monkeypatch):
    """run_or_resume (the grid's path) resumes an interrupted run with the caller's ``train.threads`` and progress
    display, written to its config.yaml; the stored values are not kept in force."""
    import yaml

    from semiseg.engine.trainer import run_or_resume

    threads = torch.get_num_threads()
    original = Supervised.training_step

    def crash(self, labeled, unlabeled, step):
        if step == 4:
            raise KeyboardInterrupt("simulated crash")
        return original(self, labeled, unlabeled, step)

    run = tmp_path / "run"
    try:
        monkeypatch.setattr(Supervised, "training_step", crash)
        with pytest.raises(KeyboardInterrupt):
            run_or_resume(_cfg(msd_dataset, ["train.threads=1"]), run)
        monkeypatch.setattr(Supervised, "training_step", original)
        assert (run / "checkpoint_latest.pt").is_file() and not (run / "checkpoint_final.pt").is_file()
        run_or_resume(_cfg(msd_dataset, ["train.threads=2", "train.profile=off"]), run)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    stored = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (stored["threads"], stored["profile"], stored["progress"]) == (2, "off", "off")
    assert (run / "checkpoint_final.pt").is_file()


def test_train_2d_writes_complete_run_folder(msd_dataset, tmp_path):
    run = tmp_path / "run"
    result = Trainer(_cfg(msd_dataset), run).fit()
    for name in ("config.yaml", "splits.json", "environment.json", "train.log", "metrics.csv", "progress.png",
                 "checkpoint_latest.pt", "checkpoint_best.pt", "checkpoint_final.pt"):
        assert (run / name).is_file(), name
    assert result["step"] == 6 and 0.0 <= result["best_metric"] <= 1.0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert {r["name"] for r in rows if r["split"] == "train"} >= {"loss", "ce", "dice", "lr"}
    assert [int(r["step"]) for r in rows if r["split"] == "val" and r["name"] == "dice"] == [3, 6]
    ck = load_checkpoint(run / "checkpoint_final.pt")
    assert ck["step"] == 6 and ck["dataset"]["num_classes"] == 3 and "inference_state" in ck
    assert ck["optimizers"]["main"]["state"]  # Adam moments saved
    env = json.loads((run / "environment.json").read_text())
    assert env["cpu_model"] and env["cpu_capability"] and env["torch"] == torch.__version__
    assert env["method_revision"] == 0  # the supervised method's code revision (grids compare it)


def test_train_3d_runs(msd_dataset, tmp_path):
    cfg = _cfg(msd_dataset, ["train.iterations=2", "train.val_every=2", "train.checkpoint_every=2"],
               preset="synthbrain3d_supervised", dims=3)
    assert Trainer(cfg, tmp_path / "run3d").fit()["step"] == 2


def test_resume_equals_uninterrupted(msd_dataset, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    Trainer(_cfg(msd_dataset), straight).fit()
    part = tmp_path / "part"
    assert crash_then_resume(Supervised, lambda: _cfg(msd_dataset), part, monkeypatch) == 3
    a = load_checkpoint(straight / "checkpoint_final.pt")
    b = load_checkpoint(part / "checkpoint_final.pt")
    assert a["step"] == b["step"] == 6
    for k, v in a["method_state"].items():
        torch.testing.assert_close(b["method_state"][k], v, rtol=0, atol=0, msg=k)
    sa, sb = a["optimizers"]["main"]["state"], b["optimizers"]["main"]["state"]
    for k in sa:
        torch.testing.assert_close(sb[k]["exp_avg"], sa[k]["exp_avg"], rtol=0, atol=0)
    assert a["best_metric"] == b["best_metric"]
    assert b["train_seconds"] > load_checkpoint(part / "checkpoint_best.pt")["train_seconds"] > 0  # summed over the resume
    rows = [r for r in csv.DictReader((part / "metrics.csv").open()) if r["split"] == "val"]
    assert [int(r["step"]) for r in rows if r["name"] == "dice"] == [3, 6]  # no duplicated rows


def test_existing_run_folder_is_not_overwritten(msd_dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "mine.txt").write_text("precious")
    with pytest.raises(ConfigError, match="already exists"):
        Trainer(_cfg(msd_dataset), run)
    with pytest.raises(ConfigError, match="refusing"):
        Trainer(_cfg(msd_dataset), run, overwrite=True)
    assert (run / "mine.txt").read_text() == "precious"


def test_bad_dataset_stops_before_training(tmp_path):
    import nibabel as nib
    import numpy as np

    root = write_msd(tmp_path / "ds", n_cases=6)
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), str(root / "labelsTr" / "case01.nii.gz"))
    run = tmp_path / "run"
    with pytest.raises(DatasetError, match="case01"):
        Trainer(_cfg(root), run).fit()
    assert not (run / "checkpoint_latest.pt").exists()
    # once the input is fixed, the same command starts in the folder of the failed start
    fixed = write_msd(tmp_path / "fixed", n_cases=6)
    assert Trainer(_cfg(fixed), run).fit()["step"] > 0
    with pytest.raises(ConfigError, match="already exists"):  # a folder that trained is never replaced silently
        Trainer(_cfg(fixed), run)


class _NaNMethod(Supervised):
    name = "test_nan"

    def training_step(self, labeled, unlabeled, step):
        out = super().training_step(labeled, unlabeled, step)
        if step in (1, 3, 4, 5, 6, 7):
            out["ce"] = out["ce"] * math.nan
            out["loss"] = out["loss"] * math.nan
        return out


register_method(_NaNMethod)


def test_non_finite_loss_skips_step_and_aborts(msd_dataset, tmp_path, caplog):
    cfg = _cfg(msd_dataset, ["method.name=test_nan", "train.max_bad_steps=3", "train.iterations=10"])
    trainer = Trainer(cfg, tmp_path / "run")
    with pytest.raises(TrainingAborted, match="3 steps in a row"):
        trainer.fit()
    log = (tmp_path / "run" / "train.log").read_text()
    assert "step 2: non-finite value in loss, ce; step skipped (1 in a row)" in log
    assert "(1 in a row)" in log and "(3 in a row)" in log


def test_unknown_method_param_rejected_before_work(msd_dataset, tmp_path):
    expected = "ce_wieght: Extra inputs are not permitted; valid params: ce_weight, dice_background, dice_squared, dice_weight"
    with pytest.raises(ConfigError, match=expected):
        Trainer(_cfg(msd_dataset, ["method.params={ce_wieght: 1}"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_select_by_validation_loss_and_early_stop(msd_dataset, tmp_path, monkeypatch):
    """EquiReg's protocol: keep the lowest validation cross-entropy; stop after `patience` validations without one."""
    losses = iter([0.9, 0.5, 0.7, 0.8, 0.6, 0.1])

    def fake_validate(self):
        return {"dice": 0.5, "loss": next(losses)}

    monkeypatch.setattr(Trainer, "validate", fake_validate)
    cfg = _cfg(msd_dataset, ["eval.select_by=loss", "train.early_stop_patience=2", "train.val_every=1",
                             "train.iterations=20", "train.checkpoint_every=5"])
    run = tmp_path / "early"
    result = Trainer(cfg, run).fit()
    assert result["best_step"] == 2 and result["best_metric"] == -0.5
    assert result["stopped_early"] and result["step"] == 4  # validations at 3 and 4 were not better than step 2
    assert load_checkpoint(run / "checkpoint_best.pt")["step"] == 2
    assert load_checkpoint(run / "checkpoint_final.pt")["stopped_early"] is True
    again = Trainer.resume(run).fit()  # an early-stopped run is complete
    assert again["step"] == 4


def test_validation_cross_entropy_by_hand():
    import numpy as np

    from semiseg.engine.trainer import validation_cross_entropy

    probs = torch.tensor([[[0.8, 0.4]], [[0.2, 0.6]]])  # (C=2, 1, 2)
    label = np.array([[0, 1]])
    assert validation_cross_entropy(probs, label) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert validation_cross_entropy(probs, label, np.array([[False, True]])) == pytest.approx(-math.log(0.6))


def test_run_or_resume_accepts_a_folder_written_before_new_options(msd_dataset, tmp_path):
    """A config.yaml without options added later (they take their defaults) is the same configuration."""
    import yaml

    from semiseg.engine.trainer import run_or_resume

    cfg = _cfg(msd_dataset, ["train.iterations=2", "train.val_every=2", "train.checkpoint_every=2"])
    run = tmp_path / "old"
    run_or_resume(cfg, run)
    stored = yaml.safe_load((run / "config.yaml").read_text())
    del stored["train"]["early_stop_patience"], stored["eval"]["select_by"]
    (run / "config.yaml").write_text(yaml.safe_dump(stored))
    assert run_or_resume(cfg, run)["skipped"] is True
    with pytest.raises(ConfigError, match="another configuration"):
        run_or_resume(_cfg(msd_dataset, ["train.iterations=3"]), run)


def test_2d_patch_mode_trains_and_evaluates_at_full_resolution(msd_dataset, tmp_path):
    from semiseg.evaluation.run_eval import evaluate_run

    cfg = _cfg(msd_dataset, ["data.slice_mode=patch", "data.patch_size=[16,16]", "train.iterations=2", "train.val_every=2"])
    Trainer(cfg, tmp_path / "p").fit()
    res = evaluate_run(tmp_path / "p", "test", save_predictions=False)
    pred = next(iter(res["predictions"].values()))
    assert pred.shape == (12, 32, 32)  # the volume's own grid, not the 16x16 patches


def test_overwrite_only_empties_folders_semiseg_made_and_never_a_users_file(msd_dataset, tmp_path):
    """Issue 11, defect 1: --overwrite deleted any folder holding a config.yaml, with the user's files in it."""
    user = tmp_path / "mydata"
    user.mkdir()
    (user / "config.yaml").write_text("my own notes\n")  # a config.yaml alone does not make a run folder
    (user / "scan.nii.gz").write_bytes(b"\x00\x01")
    with pytest.raises(ConfigError, match="not a folder semiseg created"):
        Trainer(_cfg(msd_dataset), user, overwrite=True)
    assert (user / "config.yaml").read_text() == "my own notes\n" and (user / "scan.nii.gz").read_bytes() == b"\x00\x01"
    run = tmp_path / "run"
    Trainer(_cfg(msd_dataset, ["train.iterations=2", "train.val_every=2"]), run).fit()
    assert (run / ".semiseg_run").is_file()
    (run / "notes.txt").write_text("keep me")  # the user's note inside a real run folder
    with pytest.raises(ConfigError, match="notes.txt"):
        Trainer(_cfg(msd_dataset), run, overwrite=True)
    assert (run / "notes.txt").read_text() == "keep me" and (run / "checkpoint_final.pt").is_file()
    (run / "notes.txt").unlink()
    Trainer(_cfg(msd_dataset, ["train.iterations=2", "train.val_every=2"]), run, overwrite=True)
    assert not (run / "checkpoint_final.pt").exists() and (run / ".semiseg_run").is_file()


def test_checkpoints_get_the_permissions_of_the_other_files(msd_dataset, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        Trainer(_cfg(msd_dataset, ["train.iterations=2", "train.val_every=2"]), tmp_path / "run").fit()
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "run" / "checkpoint_final.pt") == mode(tmp_path / "run" / "config.yaml") == 0o644


def test_resume_restarts_a_run_killed_before_its_first_checkpoint_and_drops_orphan_temp_files(msd_dataset, tmp_path):
    run = tmp_path / "run"
    cfg = _cfg(msd_dataset, ["train.iterations=2", "train.val_every=2"])
    trainer = Trainer(cfg, run)  # folder prepared, config written ... then the process died
    del trainer
    (run / ".checkpoint_latest.pt.abc123").write_bytes(b"half a checkpoint")
    result = Trainer.resume(run).fit()
    assert result["step"] == 2 and (run / "checkpoint_final.pt").is_file()
    assert not list(run.glob(".checkpoint_*"))


class _Explode(Supervised):
    """A finite loss, but from step 3 on a buffer holds infinity (as batch-norm statistics did under Adam at lr 1e6)."""

    name = "test_explode"

    def __init__(self, ctx, params):
        super().__init__(ctx, params)
        self.register_buffer("running_probe", torch.zeros(3))

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        if step >= 2:
            self.running_probe.fill_(math.inf)
        return super().training_step(labeled, unlabeled, step)


register_method(_Explode)


def test_non_finite_weights_stop_the_run_before_anything_is_saved_and_predict_refuses_them(msd_dataset, tmp_path):
    """Issue 11, defect 3: the loss stayed finite, BatchNorm buffers became Inf, and that model was saved as best."""
    from semiseg.evaluation.run_eval import load_model

    cfg = _cfg(msd_dataset, ["method.name=test_explode", "train.iterations=6", "train.val_every=1", "train.checkpoint_every=1"])
    with pytest.raises(TrainingAborted, match="step 3: parameters or buffers became non-finite \\(running_probe\\)"):
        Trainer(cfg, tmp_path / "run").fit()
    assert load_checkpoint(tmp_path / "run" / "checkpoint_latest.pt")["step"] == 2  # the last good state
    assert not (tmp_path / "run" / "checkpoint_final.pt").exists()
    best = load_checkpoint(tmp_path / "run" / "checkpoint_best.pt")
    assert all(torch.isfinite(v).all() for v in best["inference_state"].values() if v.is_floating_point())
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint_latest.pt")
    key = next(k for k in ckpt["inference_state"] if k.endswith("running_var"))
    ckpt["inference_state"][key].fill_(math.nan)
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="non-finite weights"):
        load_model(tmp_path / "bad.pt")


def test_progress_lines_with_eta_when_not_on_a_terminal(msd_dataset, tmp_path):
    Trainer(_cfg(msd_dataset, ["train.iterations=8", "train.log_every=2", "train.val_every=4"]), tmp_path / "run").fit()
    lines = [line for line in (tmp_path / "run" / "train.log").read_text().splitlines() if "ETA" in line]
    assert len(lines) == 2 and "step 4/8  loss" in lines[0] and "it/s" in lines[0]


def test_config_yaml_writes_the_methods_resolved_params(msd_dataset, tmp_path):
    """A later change of a method default must show as another configuration (benchmark staleness, resume)."""
    import yaml

    from semiseg.methods.registry import resolved_config

    cfg = _cfg(msd_dataset, ["method.name=mean_teacher"])
    Trainer(cfg, tmp_path / "run")
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert stored["method"]["params"]["ema_decay"] == 0.99 and "consistency_on" in stored["method"]["params"]
    assert resolved_config(load_config(tmp_path / "run" / "config.yaml")) == resolved_config(cfg)
    changed = _cfg(msd_dataset, ["method.name=mean_teacher", "method.params={ema_decay: 0.999}"])
    assert resolved_config(load_config(tmp_path / "run" / "config.yaml")) != resolved_config(changed)
