"""Every method trains end to end through the engine, and resumes exactly (methods with extra state)."""

import pytest
import torch

from semiseg.config import load_config
from semiseg.engine.checkpoint import load_checkpoint
from semiseg.engine.trainer import Trainer
from semiseg.methods import get_method_class
from tests.methods.test_contract import builtin_methods
from tests.conftest import crash_then_resume, tiny_overrides

pytestmark = pytest.mark.slow


def _cfg(root, method, extra=()):
    return load_config("synthbrain2d_supervised", tiny_overrides(root) + [
        f"method.name={method}", "train.unlabeled_batch_size=2", "split.unlabeled=rest"] + list(extra))


@pytest.mark.parametrize("method", [m for m in builtin_methods() if m != "supervised"])
def test_method_trains_through_the_engine_and_its_run_predicts(msd_dataset, tmp_path, method):
    """Trains; the run folder then loads as a model (``predict``, ``evaluate``, the benchmark's scoring) that
    computes what the method's inference network computes, training-only heads (SDF, extra decoders) dropped."""
    from semiseg.evaluation.run_eval import load_model

    cfg = _cfg(msd_dataset, method, ["train.iterations=4", "train.val_every=4", "train.checkpoint_every=4"])
    trainer = Trainer(cfg, tmp_path / method)
    result = trainer.fit()
    assert result["step"] == 4 and 0.0 <= result["best_metric"] <= 1.0
    model = load_model(tmp_path / method, "cpu", "final")
    x = torch.randn(2, model.info.in_channels, *cfg.data.patch_size)
    with torch.no_grad():
        torch.testing.assert_close(model.network(x), trainer.method.inference_network().cpu().eval()(x))


def test_init_from_a_run_folder(msd_dataset, tmp_path):
    Trainer(_cfg(msd_dataset, "supervised", ["train.iterations=2", "train.val_every=2"]), tmp_path / "lb").fit()
    lb = load_checkpoint(tmp_path / "lb" / "checkpoint_best.pt")["inference_state"]
    cfg = _cfg(msd_dataset, "mean_teacher", ["train.iterations=1", "train.val_every=1", f"method.init_from={tmp_path / 'lb'}"])
    trainer = Trainer(cfg, tmp_path / "mt")
    trainer._setup()
    for k, v in lb.items():
        torch.testing.assert_close(trainer.method.network.state_dict()[k].cpu(), v.cpu())
        torch.testing.assert_close(trainer.method.teacher.state_dict()[k].cpu(), v.cpu())


@pytest.mark.parametrize("method", ["roam", "adversarial", "pseudo_label", "equireg", "hybrid_colearning", "voxel_adversarial", "bcp", "sassnet", "ssnet"])
def test_resume_equals_uninterrupted(msd_dataset, tmp_path, monkeypatch, method):
    extra = ["method.params={rounds: 2}"] if method == "pseudo_label" else []
    Trainer(_cfg(msd_dataset, method, extra), tmp_path / "straight").fit()
    assert crash_then_resume(get_method_class(method), lambda: _cfg(msd_dataset, method, extra), tmp_path / "part", monkeypatch) == 3
    a = load_checkpoint(tmp_path / "straight" / "checkpoint_final.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoint_final.pt")
    for k, v in a["method_state"].items():
        torch.testing.assert_close(b["method_state"][k], v, rtol=0, atol=0, msg=k)
    assert set(a["optimizers"]) == set(b["optimizers"])
