"""The pieces methods share: sharpening (ROAM Eq. 5), mixup at layer kappa (Eq. 6-8), pairing, EMA."""

import math

import pytest
import torch

from semiseg.methods.ema import ema_decay, ema_update, make_teacher
from semiseg.methods.mixup import mix, mix_state, pairing, sample_mix_coefficient, sharpen
from semiseg.networks import create_network


def test_sharpen_equals_eq5_by_hand():
    p = torch.tensor([[0.6, 0.3, 0.1]]).T[None]  # (N=1, C=3, 1)
    out = sharpen(p, 0.5)[0, :, 0]
    expected = torch.tensor([0.36, 0.09, 0.01]) / 0.46
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(sharpen(p, 1.0), p)
    assert sharpen(p, 0.01)[0, :, 0].argmax() == 0 and sharpen(p, 0.01)[0, 0, 0] > 0.999
    with pytest.raises(ValueError, match="temperature"):
        sharpen(p, 0.0)


def test_mix_coefficient_favours_original_and_is_seeded():
    torch.manual_seed(3)
    a = [sample_mix_coefficient(0.75) for _ in range(200)]
    torch.manual_seed(3)
    b = [sample_mix_coefficient(0.75) for _ in range(200)]
    assert a == b
    assert min(a) >= 0.5 and max(a) <= 1.0
    assert len(set(a)) > 100


def test_pairing_stays_within_groups():
    torch.manual_seed(0)
    perm = pairing([3, 5])
    assert sorted(perm.tolist()) == list(range(8))
    assert set(perm[:3].tolist()) == {0, 1, 2} and set(perm[3:].tolist()) == set(range(3, 8))
    whole = {tuple(pairing([8]).tolist()) for _ in range(20)}
    assert any(max(p[:3]) >= 3 for p in whole)  # a whole-batch pairing crosses the groups


def test_mix_formula():
    x = torch.arange(6.0).view(3, 2)
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(mix(x, perm, 0.7), 0.7 * x + 0.3 * x[perm])
    assert mix(x, perm, 1.0) is x


@pytest.mark.parametrize("name,kw", [("unet", {"features": [4, 8, 16]}), ("vnet", {"n_filters": 2})])
def test_mixing_at_every_kappa_with_lambda_one_is_the_plain_forward(name, kw):
    dims = 2 if name == "unet" else 3
    net = create_network(name, spatial_dims=dims, in_channels=1, num_classes=3, **kw).eval()
    x = torch.randn(4, 1, *([16] * dims))
    perm = torch.tensor([3, 2, 1, 0])
    ref = net(x)
    for k in range(net.num_layers + 1):
        for skips in (False, True):
            out = net.forward_from(mix_state(net.forward_to(x, k), perm, 1.0, skips), k)
            torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("name,kw", [("unet", {"features": [4, 8, 16]}), ("vnet", {"n_filters": 2})])
def test_mix_state_mixes_the_layer_output_everywhere_and_earlier_skips_when_asked(name, kw):
    dims = 2 if name == "unet" else 3
    net = create_network(name, spatial_dims=dims, in_channels=1, num_classes=2, **kw).eval()
    state = net.forward_to(torch.randn(2, 1, *([16] * dims)), 2)
    assert len(state.skips) == 2 and state.skips[-1] is state.h  # layer 2 also feeds the decoder
    perm = torch.tensor([1, 0])
    plain = mix_state(state, perm, 0.6, skips=False)
    both = mix_state(state, perm, 0.6, skips=True)
    mixed = lambda t: 0.6 * t + 0.4 * t[perm]  # noqa: E731
    torch.testing.assert_close(plain.h, mixed(state.h))
    torch.testing.assert_close(plain.skips[1], mixed(state.h))  # the output of layer kappa, mixed wherever it goes
    torch.testing.assert_close(plain.skips[0], state.skips[0])  # the skip around kappa keeps the originals
    torch.testing.assert_close(both.skips[0], mixed(state.skips[0]))


def test_ema_update_equals_formula():
    student = torch.nn.Linear(3, 2)
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in teacher.parameters()]
    a = ema_update(teacher, student, 0.99, step=1000)
    assert a == 0.99
    for t, t0, s in zip(teacher.parameters(), before, student.parameters()):
        torch.testing.assert_close(t, 0.99 * t0 + 0.01 * s)
    assert ema_decay(0.99, 0) == 0.0 and math.isclose(ema_decay(0.99, 1), 0.5)
    ema_update(teacher, student, 0.99, step=0)  # decay 0: the teacher becomes the student
    for t, s in zip(teacher.parameters(), student.parameters()):
        torch.testing.assert_close(t, s)
