"""EquiReg (Schölin 2020): the loss equals Eq. 7 + lambda * Eq. 9 recomputed by hand, on valid pixels only."""

import pytest
import torch
import torch.nn.functional as F

from semiseg.data.replay import draw_transform, strong_policy, weak_policy
from semiseg.methods import MethodContext, create_method
from semiseg.networks import create_network

C = 3


def make(params):
    ctx = MethodContext(C, 1, 2, 100, lambda: create_network("unet", spatial_dims=2, in_channels=1, num_classes=C,
                                                                features=[4, 8, 16], dropout=0.0))
    torch.manual_seed(0)
    return create_method("equireg", ctx, params).train()


def batches(n_l=2, n_u=3, size=32):
    g = torch.Generator().manual_seed(1)
    lab = {"image": torch.randn(n_l, 1, size, size, generator=g), "label": torch.randint(0, C, (n_l, size, size), generator=g)}
    return lab, {"image": torch.randn(n_u, 1, size, size, generator=g)}


@pytest.mark.parametrize("weak", [False, True])
def test_loss_equals_eq_10_by_hand(monkeypatch, weak):
    m = make({"weight": 0.7, "weak_augmentation": weak})
    monkeypatch.setattr(m, "generator", lambda: torch.Generator().manual_seed(42))
    lab, unl = batches()
    out = m.training_step(lab, unl, 3)
    g = torch.Generator().manual_seed(42)
    x_l, y, x_u = lab["image"], lab["label"], unl["image"]
    if weak:
        t = draw_transform(weak_policy(), 2, (32, 32), g)
        x_l, y = t.apply_image(x_l), t.apply_label(y[:, None])[:, 0]
        x_u = draw_transform(weak_policy(), 3, (32, 32), g).apply_image(x_u)
    strong = draw_transform(strong_policy(), 3, (32, 32), g)
    with torch.no_grad():
        logits = m.network(torch.cat([x_l, x_u, strong.apply_image(x_u)]))
    ce = F.cross_entropy(logits[:2], y)
    target = strong.apply_probabilities(torch.softmax(logits[2:5], 1))
    log_q = torch.log_softmax(logits[5:], 1)
    kl = (target * (torch.log(target.clamp_min(1e-12)) - log_q)).sum(1)
    valid = strong.valid[:, 0]
    er = kl[valid].mean()
    torch.testing.assert_close(out["equivariance"], er)
    torch.testing.assert_close(out["ce"], ce)
    torch.testing.assert_close(out["loss"].detach(), ce + 0.7 * er)
    assert 0 < float(out["valid_fraction"]) < 1


def test_target_is_stop_gradient_and_created_pixels_pass_no_gradient():
    m = make({"ce_weight": 0.0, "weak_augmentation": False})
    monkeypatch_gen = torch.Generator().manual_seed(5)
    m.generator = lambda: monkeypatch_gen  # type: ignore[method-assign]
    captured = {}

    def hook(_module, _inp, output):
        output.retain_grad()
        captured["logits"] = output

    m.network.register_forward_hook(hook)
    lab, unl = batches()
    m.training_step(lab, unl, 0)["loss"].backward()
    grad = captured["logits"].grad
    assert grad[:5].abs().sum() == 0  # labeled (CE weight 0) and the frozen originals get nothing
    strong = draw_transform(strong_policy(), 3, (32, 32), torch.Generator().manual_seed(5))
    aug_grad = grad[5:].abs().sum(1)
    assert (aug_grad[~strong.valid[:, 0]] == 0).all() and (aug_grad[strong.valid[:, 0]] > 0).all()


def test_without_unlabeled_it_is_the_supervised_baseline_and_labeled_can_join():
    m = make({})
    lab, unl = batches()
    out = m.training_step(lab, None, 0)
    assert "equivariance" not in out
    both = make({"labeled_in_unsupervised": True}).training_step(lab, unl, 0)
    assert torch.isfinite(both["equivariance"])
    only_labeled = make({"labeled_in_unsupervised": True}).training_step(lab, None, 0)
    assert torch.isfinite(only_labeled["equivariance"])


@pytest.mark.slow
def test_four_channel_msd_with_regions_end_to_end(tmp_path, capsys):
    """BraTS-like use: 4 sequences via channel_names, FC-DenseNet, equireg, region + equivariance scores."""
    from semiseg.cli import main
    from semiseg.evaluation.scoring import read_csv
    from tests.conftest import tiny_overrides, write_msd

    root = write_msd(tmp_path / "ds", channels=4, unlabeled=2)
    ov = [o for o in tiny_overrides(root) if not o.startswith("network.")] + [
        "network.name=fc_densenet", "network.kwargs={growth_rate: 4, first_channels: 8, down_layers: [1, 2], bottleneck_layers: 2}",
        "method.name=equireg", "split.unlabeled=rest", "train.unlabeled_batch_size=2", "train.iterations=2",
        "train.val_every=2", "eval.select_by=loss"]
    run = tmp_path / "run"
    assert main(["train", "synthbrain2d_supervised", *ov, "--run-dir", str(run)]) == 0
    assert main(["evaluate", str(run), "--equivariance"]) == 0
    out = capsys.readouterr().out
    assert "whole" in out and "equivariance_dice" in out
    summary = read_csv(run / "eval_test" / "summary.csv")
    assert {(r["class"], r["metric"]) for r in summary} >= {("whole", "dice"), ("whole", "equivariance_dice"), ("mean", "dice")}
