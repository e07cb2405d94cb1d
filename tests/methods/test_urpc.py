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
        d = float((mean * torch.log(1e-6 + mean / p)).sum())  # KL(mean || p_s), the uncertainty
        w = math.exp(-d)
        dist = float(((mean - p) ** 2).mean())  # mean over classes of the squared difference
        expected.append(dist * w / (w + 1e-8) + d)
        kls.append(d)
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-5)
    assert kl.item() == pytest.approx(sum(kls) / 2, rel=1e-5)


def test_agreeing_outputs_cost_nothing_and_uncertain_voxels_weigh_less():
    same = torch.randn(2, 3, 4, 4)
    loss, kl = uncertainty_rectified_consistency([same, same.clone()])
    assert loss.item() == pytest.approx(0.0, abs=1e-5) and kl.item() == pytest.approx(0.0, abs=1e-5)
    # a voxel where the outputs disagree strongly gets a smaller weight exp(-D) than one where they nearly agree
    near = torch.log(torch.tensor([[[[0.55, 0.9]], [[0.45, 0.1]]]]))
    far = torch.log(torch.tensor([[[[0.5, 0.1]], [[0.5, 0.9]]]]))
    probs = [torch.softmax(x, 1) for x in (near, far)]
    mean = (probs[0] + probs[1]) / 2
    d = (mean * torch.log(1e-6 + mean / probs[0])).sum(1)[0, 0]
    assert torch.exp(-d[1]) < torch.exp(-d[0])
