"""SS-Net: the adversarial perturbation (norm, direction, no batch-norm drift), the class-separation loss on
hand-made vectors, and the memory of high-ranked correct features."""

import pytest
import torch
from torch import nn

from semiseg.methods import create_method
from semiseg.methods.ssnet import separation_loss, soft_dice_distance, vat_distance
from tests.conftest import tiny_unet_context

C = 3


def ctx(dims=2):
    return tiny_unet_context(dims, classes=C)


def test_adversarial_perturbation_has_the_magnitude_per_image_and_leaves_bn_statistics_alone():
    torch.manual_seed(0)
    m = create_method("ssnet", ctx(), {"magnitude": 6.0})
    x = torch.randn(3, 1, 16, 16)
    probs = torch.softmax(m.network(x), 1).detach()
    d = m.adversarial_direction(x, probs)
    norms = (6.0 * d).flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, torch.full((3,), 6.0), rtol=1e-4, atol=1e-4)
    before = [b.clone() for n, b in m.network.named_buffers() if "running" in n]
    m.vat_loss(x, probs)
    after = [b for n, b in m.network.named_buffers() if "running" in n]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    # the adversarial direction increases the distance more than a random one of the same norm
    with torch.no_grad():
        adv = vat_distance(torch.softmax(m.network(x + 6.0 * d), 1), probs, "class_mean")
        rnd = torch.randn_like(x)
        rnd = rnd / rnd.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        ran = vat_distance(torch.softmax(m.network(x + 6.0 * rnd), 1), probs, "class_mean")
    assert adv > ran


def test_soft_dice_distance_by_hand():
    p, q = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([1.0, 0.0, 0.0])
    assert soft_dice_distance(p, q).item() == pytest.approx(1 - 2 * 0.5 / 2.0)


def test_vat_distance_is_each_codes_soft_dice():
    # two classes, two pixels: p = (0.5, 0.5 | 0.5, 0.5) against q = (1, 0 | 0, 1)
    p = torch.tensor([[[0.5, 0.5]], [[0.5, 0.5]]]).reshape(1, 2, 2)
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 2)
    # 2D code (softDiceLoss): per class 1 - 2 * 0.5 / (0.5 + 1) = 1/3, averaged over the classes
    assert vat_distance(p, q, "class_mean").item() == pytest.approx(1 / 3, rel=1e-6)
    # LA code (Binary_dice_loss over the whole tensors): 1 - 2 * 1 / (2 + 2) = 1/2
    assert vat_distance(p, q, "whole").item() == pytest.approx(0.5, rel=1e-6)
    assert create_method("ssnet", ctx(2), {}).vat_kind == "class_mean"
    assert create_method("ssnet", ctx(3), {}).vat_kind == "whole"
    assert create_method("ssnet", ctx(2), {"vat_distance": "whole"}).vat_kind == "whole"


def test_separation_loss_by_hand_with_neutral_selectors():
    class Zero(nn.Module):  # sigmoid(0) = 0.5 for every vector: uniform weights, rescaled to 1
        def forward(self, v):
            return torch.zeros(v.shape[0], 1)

    sel = nn.ModuleList([Zero(), Zero()])
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    classes = torch.tensor([1, 1, 0])
    memory = torch.zeros(2, 4, 2)
    memory[1, :2] = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    counts = torch.tensor([0, 2])
    got = separation_loss(feats, classes, memory, counts, sel, sel)
    # class 1: features (1,0) and (0,1) against two memory entries (1,0): distances 0,0,1,1 -> mean 0.5; class 0 skipped
    assert got.item() == pytest.approx(0.5 / 2)


def test_memory_keeps_only_correct_foreground_features_and_the_highest_ranked():
    torch.manual_seed(0)
    m = create_method("ssnet", ctx(), {"memory_size": 2})
    feats = torch.randn(6, m.projection[0].in_features)
    classes = torch.tensor([1, 1, 1, 2, 0, 0])
    m.update_memory(feats, classes)
    assert m.memory_counts.tolist() == [0, 2, 1]  # background never stored; class 1 capped at 2
    m.projection.eval()
    proj = m.projection(feats).detach()
    rank = torch.sigmoid(m.feature_selectors[1](proj[:3]))[:, 0]
    best = proj[:3][torch.argsort(rank, descending=True)[:2]]
    torch.testing.assert_close(m.memory[1, :2], best)
