"""Each method does what its paper says: exact losses on tiny inputs against hand-written formulas."""

import math

import pytest
import torch
import torch.nn.functional as F

from semiseg.losses import ce_dice_loss
from semiseg.methods import create_method
from semiseg.methods.graph_embedding import embedding_loss, sample_by_class
from semiseg.methods.mixup import mix, pairing, sample_mix_coefficient, sharpen
from semiseg.methods.ua_mt import uncertainty_threshold
from tests.methods.test_contract import C, Recorder, batches, ctx


def _eval(m):
    """Deterministic forward passes (no dropout, running BN statistics) for exact comparisons."""
    return m.eval()


def test_roam_draws_every_kappa_including_the_last_layer():
    torch.manual_seed(0)
    m = create_method("roam", ctx(), {})
    L = m.network.num_layers
    assert m.kappas == [0, 1, L]
    lab, unl = batches()
    seen = set()
    for step in range(30):
        out = m.training_step(lab, unl, step)
        seen |= {k for k in ("kappa_0", "kappa_1", f"kappa_{L}") if out[k] == 1}
    assert seen == {"kappa_0", "kappa_1", f"kappa_{L}"}
    assert m.kappa_counts.sum() == 30 and (m.kappa_counts > 0).all()
    assert "kappa_counts" in m.state_dict()


def test_roam_all_and_phi():
    m = create_method("roam", ctx(), {"kappas": ["all", "phi"]})
    assert m.kappas == [-1] + list(range(m.network.num_layers + 1))
    with pytest.raises(ValueError, match="exceeds"):
        create_method("roam", ctx(), {"kappas": [99]})


def test_roam_loss_equals_algorithm_1_by_hand():
    """kappa fixed at 2: guess, sharpen, concatenate, mix H at layer 2 and Y, resume, CE + beta MSE."""
    params = {"kappas": [2], "beta_rampup": "none", "beta": 75.0, "guess_mode": "eval"}
    m = _eval(create_method("roam", ctx(), params))
    lab, unl = batches()
    torch.manual_seed(11)
    got = m.training_step(lab, unl, 3)
    net = m.network
    torch.manual_seed(11)
    with torch.no_grad():
        y_u = sharpen(torch.softmax(net(unl["image"]), 1), 0.5)
    x = torch.cat([lab["image"], unl["image"]])
    y = torch.cat([F.one_hot(lab["label"], C).movedim(-1, 1).float(), y_u])
    assert int(torch.randint(1, (1,))) == 0  # the kappa draw (one member)
    lam = sample_mix_coefficient(0.75)
    perm = pairing([4])
    state = net.forward_to(x, 2)
    logits = net.forward_from(type(state)(mix(state.h, perm, lam), state.skips), 2)
    y_mix = mix(y, perm, lam)
    ce = -(y_mix[:2] * torch.log_softmax(logits[:2], 1)).sum(1).mean()
    mse = ((torch.softmax(logits[2:], 1) - y_mix[2:]) ** 2).mean()
    torch.testing.assert_close(got["loss"], ce + 75.0 * mse)
    assert got["mix_lambda"] == lam >= 0.5


def test_roam_guess_mode_sets_the_network_mode_for_the_guess_only():
    for mode in ("train", "eval"):
        m = create_method("roam", ctx(), {"guess_mode": mode, "kappas": ["phi"]})
        m.train()
        seen = []
        m.network.register_forward_pre_hook(lambda mod, inp: seen.append(mod.training))  # the guess is the first call
        lab, unl = batches()
        m.training_step(lab, unl, 0)
        assert seen[0] == (mode == "train") and m.network.training  # back in training mode afterwards


def test_roam_supervised_only_ignores_unlabeled():
    m = _eval(create_method("roam", ctx(), {"supervised_only": True, "guess_mode": "eval"}))
    assert not m.uses_unlabeled
    lab, unl = batches()
    torch.manual_seed(1)
    a = m.training_step(lab, unl, 0)
    torch.manual_seed(1)
    b = m.training_step(lab, None, 0)
    torch.testing.assert_close(a["loss"], b["loss"])
    assert "mse" not in a


def test_roam_separate_batches_pair_within_streams(monkeypatch):
    import semiseg.methods.roam as roam

    seen = []
    monkeypatch.setattr(roam, "pairing", lambda groups, device: seen.append(list(groups)) or pairing(groups, device))
    m = create_method("roam", ctx(), {"concatenate": False, "kappas": [0]})
    lab, unl = batches(2, 3)
    m.training_step(lab, unl, 0)
    assert seen == [[2, 3]]


def test_mean_teacher_loss_and_teacher_update():
    m = _eval(create_method("mean_teacher", ctx(), {"noise_std": 0.0, "consistency_rampup": "none", "consistency": 2.0}))
    with torch.no_grad():
        for p in m.teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    lab, unl = batches()
    got = m.training_step(lab, unl, 0)
    logits = m.network(torch.cat([lab["image"], unl["image"]]))
    sup, _ = ce_dice_loss(logits[:2], lab["label"])
    cons = ((torch.softmax(logits[2:], 1) - torch.softmax(m.teacher(unl["image"]), 1)) ** 2).mean()
    torch.testing.assert_close(got["loss"], sup + 2.0 * cons)
    t0 = [p.clone() for p in m.teacher.parameters()]
    m.on_after_step(500)
    for t, a, s in zip(m.teacher.parameters(), t0, m.network.parameters()):
        torch.testing.assert_close(t, 0.99 * a + 0.01 * s)


def test_ua_mt_threshold_ramp_and_mask():
    assert math.isclose(uncertainty_threshold(0, 100, 4), (0.75 + 0.25 * math.exp(-5)) * math.log(4))
    assert math.isclose(uncertainty_threshold(100, 100, 4), math.log(4))
    m = create_method("ua_mt", ctx(), {"mc_samples": 4})
    m.train()
    _, unl = batches()
    target, mask, extra = m.consistency_target(unl["image"], 0)
    assert target.shape == (2, C, 16, 16) and mask.shape == (2, 16, 16)
    torch.testing.assert_close(target.sum(1), torch.ones(2, 16, 16))
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and 0 <= float(extra["certain_fraction"]) <= 1


def test_ua_mt_target_is_one_teacher_pass_and_the_mc_mean_only_measures_uncertainty():
    """UA-MT's code: ``consistency_criterion(outputs, ema_output)`` with ``ema_output`` one noisy teacher pass;
    the T = 8 MC passes give the entropy that masks it."""
    m = create_method("ua_mt", ctx(), {"mc_samples": 3})
    x = torch.zeros(1, 1, 4, 4)
    sure = [torch.full((1, C, 4, 4), -4.0).index_fill(1, torch.tensor([c]), 4.0) for c in range(C)]
    passes = [torch.cat(sure), sure[1]]  # the 3 MC samples (one batch), each sure of another class; the target pass
    m.teacher.forward = lambda inp: passes.pop(0)
    target, mask, extra = m.consistency_target(x, 0)
    torch.testing.assert_close(target, torch.softmax(sure[1], 1))  # the single pass, not the MC mean
    from semiseg.losses import entropy

    mean = sum(torch.softmax(t, 1) for t in sure) / C  # confident samples that disagree: maximal uncertainty
    assert float(entropy(mean).min()) > uncertainty_threshold(0, 100, C)
    assert float(mask.sum()) == 0 and not passes


def test_cps_loss_by_hand():
    m = _eval(create_method("cps", ctx(), {"cps_rampup": "none", "cps_weight": 0.5}))
    lab, unl = batches()
    got = m.training_step(lab, unl, 0)
    x = torch.cat([lab["image"], unl["image"]])
    la, lb = m.network(x), m.network_b(x)
    sup = ce_dice_loss(la[:2], lab["label"])[0] + ce_dice_loss(lb[:2], lab["label"])[0]
    cps = F.cross_entropy(la, lb.argmax(1)) + F.cross_entropy(lb, la.argmax(1))
    torch.testing.assert_close(got["loss"], sup + 0.5 * cps)
    assert not torch.equal(m.network.head.weight, m.network_b.head.weight)  # initialised differently
    state = m.network.state_dict()
    m.load_initial_weights({k: v + 1 for k, v in state.items()})  # pre-trained weights go to A only
    assert not torch.equal(m.network.head.weight, m.network_b.head.weight)


def test_embedding_loss_by_hand():
    f_u, c_u = torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    f_l, c_l = torch.tensor([[1.0, 0.0], [0.6, 0.8]]), torch.tensor([1, 0])
    # same class: d^2 = 0.8; different class: d = 0 -> (1 - 0)^2 = 1
    torch.testing.assert_close(embedding_loss(f_u, c_u, f_l, c_l, 1.0), torch.tensor(1.8))
    torch.testing.assert_close(embedding_loss(f_u, c_u, f_l[:1], torch.tensor([0]), 1.0), torch.tensor(0.0))


def test_sample_by_class_is_balanced():
    feats = torch.randn(1, 5, 8, 8)
    cls = torch.zeros(1, 8, 8, dtype=torch.long)
    cls[0, :2, :2] = 1
    f, c = sample_by_class(feats, cls, 3, 10)
    assert f.shape == (14, 5) and (c == 1).sum() == 4 and (c == 0).sum() == 10


def test_pseudo_label_freezes_a_labeler_per_round_and_refines():
    m = create_method("pseudo_label", ctx(total=9), {"rounds": 3})
    m.load_initial_weights(m.network.state_dict())
    m.attach_optimize(Recorder(m))
    opt = torch.optim.SGD(m.network.parameters(), lr=0.5)
    lab, unl = batches()
    snapshots = []
    for step in range(9):
        m.train()
        out = m.training_step(lab, unl, step)
        snapshots.append(m.labeler.head.weight.clone())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        assert int(m.round) == step // 3
    assert torch.equal(snapshots[0], snapshots[2]) and not torch.equal(snapshots[2], snapshots[3])
    assert torch.equal(snapshots[3], snapshots[5]) and not torch.equal(snapshots[5], snapshots[6])
    pl = m.pseudo_labels(unl["image"])
    assert pl.shape == (2, 16, 16) and pl.dtype == torch.long


def test_pseudo_label_without_pretraining_starts_supervised():
    m = create_method("pseudo_label", ctx(total=9), {"rounds": 3})
    lab, unl = batches()
    assert "pseudo" not in m.training_step(lab, unl, 0)
    assert "pseudo" in m.training_step(lab, unl, 3)


def test_adversarial_discriminator_steps_on_its_own_loss_only():
    m = create_method("adversarial", ctx(), {"adv_rampup": "none", "adv_weight": 1.0})
    m.eval()
    grads = {}

    def hook(loss, name):
        loss.backward()
        grads[name] = [p.grad.clone() if p.grad is not None else None for p in m.discriminator.parameters()]
        for p in m.configure_optimizers()[name]:  # like the engine: only this optimizer's gradients are cleared
            p.grad = None

    m.attach_optimize(hook)
    lab, unl = batches()
    m.training_step(lab, unl, 0)
    x = torch.cat([lab["image"], unl["image"]])
    probs = torch.softmax(m.network(x), 1).detach()
    d = m.discriminator(x, probs)
    loss_d = F.binary_cross_entropy_with_logits(d, torch.tensor([1.0, 1.0, 0.0, 0.0]))
    expected = torch.autograd.grad(loss_d, list(m.discriminator.parameters()))
    for g, e in zip(grads["discriminator"], expected):
        torch.testing.assert_close(g, e)


def test_ua_mt_consistency_weight_ramps_over_the_whole_run():
    """UA-MT: lambda(t) = 0.1 exp(-5 (1 - t / t_max)^2) with t_max the run's last step (mean teacher: half)."""
    m = create_method("ua_mt", ctx(), {})
    total = m.ctx.total_iterations
    assert math.isclose(m.ramped(0.1, "sigmoid", total // 2), 0.1 * math.exp(-5 * (1 - (total // 2) / total) ** 2))
    assert math.isclose(m.ramped(0.1, "sigmoid", total), 0.1)
    assert create_method("mean_teacher", ctx(), {}).ramped(0.1, "sigmoid", total // 2) == 0.1
