"""MC-Net: the mutual-consistency targets (sharpened, detached, every ordered pair of decoders) and the loss."""

import torch

from semiseg.losses import dice_loss
from semiseg.methods import create_method
from semiseg.methods.mcnet import mutual_consistency
from tests.conftest import tiny_unet_context

C = 3


def ctx(total=100):
    return tiny_unet_context(2, total, classes=C)


def test_mutual_consistency_targets_by_hand():
    a = torch.tensor([[[[2.0]], [[0.0]], [[0.0]]]], requires_grad=True)
    b = torch.tensor([[[[0.0]], [[1.0]], [[0.0]]]], requires_grad=True)
    pa, pb = torch.softmax(a, 1), torch.softmax(b, 1)
    sharp = lambda p: p ** 10 / (p ** 10).sum(1, keepdim=True)  # noqa: E731  T = 0.1
    expected = ((pb - sharp(pa)) ** 2).mean() + ((pa - sharp(pb)) ** 2).mean()
    got = mutual_consistency([a, b], 0.1)
    torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-6)
    got.backward()
    ga = a.grad.clone()
    a.grad = None
    ((pa - sharp(pb).detach()) ** 2).mean().backward()  # a's gradient comes from its own prediction only
    torch.testing.assert_close(ga, a.grad)


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
