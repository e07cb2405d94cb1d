import math

import pytest
import torch
import torch.nn.functional as F

from semiseg.losses import ce_dice_loss, cross_entropy, dice_loss, one_hot


def test_dice_loss_hand_computed():
    # two classes, 4 voxels, batch 1
    probs = torch.tensor([[[0.9, 0.2, 0.6, 0.1], [0.1, 0.8, 0.4, 0.9]]])  # (1, 2, 4)
    target = torch.tensor([[0, 1, 1, 1]])
    # class 0: inter=0.9, p^2 sum=0.81+0.04+0.36+0.01=1.22, g^2=1 -> 1 - 1.8/2.22
    # class 1: inter=0.8+0.4+0.9=2.1, p^2=0.01+0.64+0.16+0.81=1.62, g^2=3 -> 1 - 4.2/4.62
    expected = ((1 - 1.8 / 2.22) + (1 - 4.2 / 4.62)) / 2
    assert abs(dice_loss(probs, target, eps=0).item() - expected) < 1e-6
    assert abs(dice_loss(probs, target, eps=0, include_background=False).item() - (1 - 4.2 / 4.62)) < 1e-6


def test_dice_loss_per_sample_with_plain_sums_hand_computed():
    """BCP's LA ``mask_DiceLoss``: one Dice per image and class (p + g in the denominator), averaged."""
    probs = torch.tensor([[[0.9, 0.2], [0.1, 0.8]], [[0.5, 0.5], [0.5, 0.5]]])  # (2, 2, 2)
    target = torch.tensor([[0, 1], [1, 1]])
    # image 1: class 0 1 - 1.8/2.1, class 1 1 - 1.6/1.9; image 2: class 0 (absent) 1 - 0/1, class 1 1 - 2/3
    expected = ((1 - 1.8 / 2.1) + (1 - 1.6 / 1.9) + 1.0 + (1 - 2 / 3)) / 4
    got = dice_loss(probs, target, eps=0, squared=False, per_sample=True)
    assert abs(got.item() - expected) < 1e-6
    batch = ((1 - 1.8 / 3.1) + (1 - 3.6 / 4.9)) / 2  # the batch form pools both images per class
    assert abs(dice_loss(probs, target, eps=0, squared=False).item() - batch) < 1e-6
    fg = ((1 - 1.6 / 1.9) + (1 - 2 / 3)) / 2
    assert abs(dice_loss(probs, target, eps=0, squared=False, per_sample=True, include_background=False).item() - fg) < 1e-6


def test_dice_loss_soft_target_equals_one_hot_target():
    probs = torch.softmax(torch.randn(2, 3, 5, 5), 1)
    lab = torch.randint(0, 3, (2, 5, 5))
    torch.testing.assert_close(dice_loss(probs, lab), dice_loss(probs, one_hot(lab, 3)))


def test_dice_loss_zero_for_perfect_prediction_and_mask():
    lab = torch.randint(0, 3, (2, 6, 6))
    assert dice_loss(one_hot(lab, 3), lab).item() < 1e-6
    probs = torch.softmax(torch.randn(2, 3, 6, 6), 1)
    mask = torch.zeros(2, 6, 6, dtype=torch.bool)
    mask[:, :3] = True
    expected = dice_loss(probs[:, :, :3], lab[:, :3])
    torch.testing.assert_close(dice_loss(probs, lab, mask=mask), expected)


def test_cross_entropy_soft_and_masked():
    logits = torch.randn(2, 3, 4, 4)
    lab = torch.randint(0, 3, (2, 4, 4))
    torch.testing.assert_close(cross_entropy(logits, lab), cross_entropy(logits, one_hot(lab, 3)))
    mask = torch.rand(2, 4, 4) > 0.5
    per = F.cross_entropy(logits, lab, reduction="none")
    torch.testing.assert_close(cross_entropy(logits, lab, mask), per[mask].mean())


def test_ce_dice_weights():
    logits = torch.randn(2, 3, 4, 4)
    lab = torch.randint(0, 3, (2, 4, 4))
    loss, terms = ce_dice_loss(logits, lab, 0.5, 0.5)
    torch.testing.assert_close(loss, 0.5 * terms["ce"] + 0.5 * terms["dice"])


def test_foreground_dice_equals_the_la_codes_binary_dice():
    """``include_background=False`` on two classes is UA-MT's LA loss ``dice_loss(p[:, 1], y == 1)``
    (code/utils/losses.py: 1 - (2 sum(s t) + 1e-5) / (sum(s^2) + sum(t^2) + 1e-5))."""
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 4, 3)
    lab = torch.randint(0, 2, (2, 4, 4, 3))
    score, target = torch.softmax(logits, 1)[:, 1], (lab == 1).float()
    reference = 1 - (2 * (score * target).sum() + 1e-5) / ((score * score).sum() + (target * target).sum() + 1e-5)
    loss, terms = ce_dice_loss(logits, lab, 0.5, 0.5, include_background=False)
    torch.testing.assert_close(terms["dice"], reference)
    torch.testing.assert_close(loss, 0.5 * F.cross_entropy(logits, lab) + 0.5 * reference)
    _, both = ce_dice_loss(logits, lab, 0.5, 0.5)
    assert not torch.allclose(both["dice"], reference)
    from semiseg.methods.base import SupervisedLossParams, supervised_loss  # what every baseline's params reach

    _, via_params = supervised_loss(logits, lab, SupervisedLossParams(dice_background=False))
    torch.testing.assert_close(via_params["dice"], reference)
    # SS-Net's LA code: Binary_dice_loss, 1 - 2 sum(s t) / (sum s + sum t)
    plain = 1 - (2 * (score * target).sum() + 1e-5) / (score.sum() + target.sum() + 1e-5)
    _, ssnet = supervised_loss(logits, lab, SupervisedLossParams(dice_background=False, dice_squared=False))
    torch.testing.assert_close(ssnet["dice"], plain)


def test_kl_divergence_zero_for_identical_and_equals_hand_computation():
    from semiseg.losses import kl_divergence

    logits = torch.tensor([[[[0.0, 1.0]], [[2.0, -1.0]]]])  # (1, 2 classes, 1, 2)
    assert float(kl_divergence(torch.softmax(logits, 1), logits)) == pytest.approx(0.0, abs=1e-7)
    t = torch.tensor([[[[0.25, 1.0]], [[0.75, 0.0]]]])
    q = torch.softmax(logits, 1)
    pixel0 = 0.25 * math.log(0.25 / q[0, 0, 0, 0]) + 0.75 * math.log(0.75 / q[0, 1, 0, 0])
    pixel1 = 1.0 * math.log(1.0 / q[0, 0, 0, 1])  # 0 log 0 = 0
    assert float(kl_divergence(t, logits)) == pytest.approx((pixel0 + pixel1) / 2, rel=1e-6)
    mask = torch.tensor([[[True, False]]])
    assert float(kl_divergence(t, logits, mask)) == pytest.approx(pixel0, rel=1e-6)


def test_kl_divergence_masked_pixels_carry_no_gradient():
    from semiseg.losses import kl_divergence

    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.softmax(torch.randn(2, 3, 4, 4), 1)
    mask = torch.rand(2, 4, 4) > 0.5
    kl_divergence(target, logits, mask).backward()
    assert (logits.grad.abs().sum(1)[~mask] == 0).all() and (logits.grad.abs().sum(1)[mask] > 0).all()
