"""URPC: the uncertainty weights and the rectified consistency on hand-made predictions."""

import math

import pytest
import torch

from semiseg.methods.urpc import uncertainty_rectified_consistency


def test_uncertainty_weights_and_rectified_loss_by_hand():
    a = torch.log(torch.tensor([[[[0.8]], [[0.2]]]]))  # two outputs of one voxel, 2 classes
    b = torch.log(torch.tensor([[[[0.4]], [[0.6]]]]))
    loss, kl = uncertainty_rectified_consistency([a, b])
    mean = torch.tensor([0.6, 0.4])
    expected, kls = [], []
    for p in (torch.tensor([0.8, 0.2]), torch.tensor([0.4, 0.6])):
        d = float((mean * torch.log(mean / p)).sum())  # KL(mean || p_s), the uncertainty
        w = math.exp(-d)
        dist = float(((mean - p) ** 2).mean())  # mean over classes of the squared difference
        expected.append(dist * w / (w + 1e-8) + d)
        kls.append(d)
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-5)
    assert kl.item() == pytest.approx(sum(kls) / 2, rel=1e-5)


def test_saturated_outputs_give_a_finite_loss_and_gradient():
    """A class whose softmax probability underflows to 0 in one output (logit gap > ~104 in float32) still
    gives a finite KL and finite gradients (the ratio p_bar / p_s would be inf there)."""
    a = torch.tensor([[[[200.0]], [[0.0]]]], requires_grad=True)  # p = (1, 0) exactly in float32
    b = torch.tensor([[[[0.0]], [[200.0]]]], requires_grad=True)
    loss, kl = uncertainty_rectified_consistency([a, b])
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(kl) and torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    # D = sum_c p_bar log(p_bar / p_s) with p_bar = (0.5, 0.5): 0.5 log 0.5 + 0.5 (log 0.5 + 200) per output
    assert kl.item() == pytest.approx(math.log(0.5) + 100.0, rel=1e-5)


def test_agreeing_outputs_cost_nothing_and_uncertain_voxels_weigh_less():
    same = torch.randn(2, 3, 4, 4)
    loss, kl = uncertainty_rectified_consistency([same, same.clone()])
    assert loss.item() == pytest.approx(0.0, abs=1e-5) and kl.item() == pytest.approx(0.0, abs=1e-5)
    # a voxel where the outputs disagree strongly gets a smaller weight exp(-D) than one where they nearly agree
    near = torch.log(torch.tensor([[[[0.55, 0.9]], [[0.45, 0.1]]]]))
    far = torch.log(torch.tensor([[[[0.5, 0.1]], [[0.5, 0.9]]]]))
    probs = [torch.softmax(x, 1) for x in (near, far)]
    mean = (probs[0] + probs[1]) / 2
    d = (mean * torch.log(mean / probs[0])).sum(1)[0, 0]
    assert torch.exp(-d[1]) < torch.exp(-d[0])


def test_urpc_loss_is_half_ce_half_dice_per_output_plus_the_ramped_consistency():
    """The SSL4MIS URPC scripts (2D and 3D): ``(sum CE + sum Dice) / 2S + w * consistency``."""
    import torch.nn.functional as F

    from semiseg.losses import dice_loss
    from semiseg.methods import create_method
    from tests.conftest import tiny_unet_context

    torch.manual_seed(0)
    ctx = tiny_unet_context(2, 100, classes=3)
    m = create_method("urpc", ctx, {"consistency_rampup": "none"})
    m.eval()
    lab = {"image": torch.randn(2, 1, 16, 16), "label": torch.randint(0, 3, (2, 16, 16))}
    unl = {"image": torch.randn(2, 1, 16, 16)}
    out = m.training_step(lab, unl, 0)
    heads = m.network.forward_heads(torch.cat([lab["image"], unl["image"]]))
    outs = [heads["seg"]] + [v for k, v in heads.items() if k.startswith("pyramid")]
    assert len(outs) >= 2
    ce = sum(F.cross_entropy(o[:2], lab["label"]) for o in outs)
    dice = sum(dice_loss(torch.softmax(o[:2], 1), lab["label"]) for o in outs)
    cons, _ = uncertainty_rectified_consistency([o[2:] for o in outs])
    torch.testing.assert_close(out["loss"], (ce + dice) / (2 * len(outs)) + 0.1 * cons, rtol=1e-5, atol=1e-6)
