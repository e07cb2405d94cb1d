"""MC-Net: the mutual-consistency targets (each channel sharpened on its own, every ordered pair of decoders,
gradient through both sides as in the MC-Net code, or detached on request) and the loss."""

import pytest
import torch

from semiseg.losses import dice_loss
from semiseg.methods import create_method
from semiseg.methods.mcnet import binary_sharpen, mutual_consistency
from tests.conftest import tiny_unet_context

C = 3


def ctx(total=100):
    return tiny_unet_context(2, total, classes=C)


def code_sharpening(p, t=0.1):
    """The MC-Net code's ``sharpening``: ``P ** (1/T) / (P ** (1/T) + (1 - P) ** (1/T))``."""
    return p ** (1 / t) / (p ** (1 / t) + (1 - p) ** (1 / t))


def test_binary_sharpen_is_the_codes_per_channel_formula():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]).T.reshape(1, 3, 2)
    got = binary_sharpen(p, 0.1)
    torch.testing.assert_close(got, code_sharpening(p))
    # 0.7 -> 0.7^10 / (0.7^10 + 0.3^10) = 0.99979; channels are not renormalised (sum over classes != 1)
    assert got[0, 0, 0].item() == pytest.approx(0.7 ** 10 / (0.7 ** 10 + 0.3 ** 10), rel=1e-6)
    assert got[0, :, 1].sum().item() < 0.1  # 0.4, 0.35, 0.25: every channel below 1/2 is pushed to 0
    assert torch.isfinite(binary_sharpen(torch.tensor([0.0, 0.5, 1.0]), 0.001)).all()
    with pytest.raises(ValueError, match="temperature"):
        binary_sharpen(p, 0.0)


def test_mutual_consistency_targets_by_hand():
    a = torch.tensor([[[[2.0]], [[0.0]], [[0.0]]]], requires_grad=True)
    b = torch.tensor([[[[0.0]], [[1.0]], [[0.0]]]], requires_grad=True)
    pa, pb = torch.softmax(a, 1), torch.softmax(b, 1)
    expected = ((pb - code_sharpening(pa)) ** 2).mean() + ((pa - code_sharpening(pb)) ** 2).mean()
    got = mutual_consistency([a, b], 0.1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # the code's gradient: through the predictions and the pseudo-labels alike
    ga, gb = torch.autograd.grad(got, [a, b])
    ea, eb = torch.autograd.grad(expected, [a, b])
    torch.testing.assert_close(ga, ea)
    torch.testing.assert_close(gb, eb)
    # detach_targets: a's gradient comes from its own prediction only
    ga_d, = torch.autograd.grad(mutual_consistency([a, b], 0.1, detach_targets=True), [a])
    pa, pb = torch.softmax(a, 1), torch.softmax(b, 1)
    ea_d, = torch.autograd.grad(((pa - code_sharpening(pb).detach()) ** 2).mean(), [a])
    torch.testing.assert_close(ga_d, ea_d)
    assert not torch.allclose(ga_d, ga)


def test_mcnet_loss_supervises_every_decoder_and_ramps_the_consistency():
    torch.manual_seed(0)
    m = create_method("mcnet", ctx(), {"decoders": ["transpose", "interpolate", "interpolate_nearest"],
                                       "consistency_rampup": "none"})
    m.eval()
    lab = {"image": torch.randn(2, 1, 16, 16), "label": torch.randint(0, C, (2, 16, 16))}
    unl = {"image": torch.randn(2, 1, 16, 16)}
    out = m.training_step(lab, unl, 0)
    heads = m.network.forward_heads(torch.cat([lab["image"], unl["image"]]))
    outs = [heads["seg"], heads["decoder2"], heads["decoder3"]]
    sup = sum(0.5 * dice_loss(torch.softmax(o[:2], 1), lab["label"]) for o in outs)
    torch.testing.assert_close(out["loss"], sup + 0.1 * mutual_consistency(outs, 0.1), rtol=1e-5, atol=1e-6)
