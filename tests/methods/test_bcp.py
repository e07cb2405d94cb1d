"""BCP (Bai et al., CVPR 2023): which voxels come from which image, which targets they get, their weights,
the pre-training stage and the teacher's start."""

import pytest
import torch

from semiseg.losses import cross_entropy, dice_loss
from semiseg.methods import create_method
from semiseg.methods.bcp import mix_loss, pseudo_labels
from semiseg.methods.copy_paste import cuboid_mask
from tests.conftest import tiny_unet_context

C = 3


def ctx(dims=2):
    return tiny_unet_context(dims, classes=C, features=(4, 8))


def test_mix_loss_scores_each_region_with_its_own_labels_and_weight():
    torch.manual_seed(0)
    logits = torch.randn(2, C, 8, 8)
    outside, inside = torch.randint(0, C, (2, 8, 8)), torch.randint(0, C, (2, 8, 8))
    m = cuboid_mask(2, (8, 8), 0.5, "center")
    got = mix_loss(logits, outside, inside, m, 1.0, 0.5)
    p = torch.softmax(logits, 1)
    dice = dice_loss(p, outside, mask=m) + 0.5 * dice_loss(p, inside, mask=1 - m)
    ce = cross_entropy(logits, outside, m) + 0.5 * cross_entropy(logits, inside, 1 - m)
    torch.testing.assert_close(got, (dice + ce) / 2)
    # labels inside the cuboid do not matter for the outside term and vice versa
    changed = inside.clone()
    changed[m.bool()] = (changed[m.bool()] + 1) % C
    torch.testing.assert_close(mix_loss(logits, outside, changed, m, 1.0, 0.5), got)


def _bcp_la_mask_dice(logits, target, mask, smooth=1e-5):
    """BCP's LA ``mask_DiceLoss`` (code/utils/losses.py), written from its code: per image and class, p + g."""
    n, c = logits.shape[:2]
    p = torch.softmax(logits, 1).reshape(n, c, -1)
    t = torch.nn.functional.one_hot(target.reshape(n, -1), c).permute(0, 2, 1).float()
    m = mask.reshape(n, 1, -1).float()
    inter, union = (p * t * m).sum(2), ((p + t) * m).sum(2)
    return 1 - ((2 * inter + smooth) / (union + smooth)).mean()


def _bcp_la_mix_loss(logits, img_l, patch_l, mask, l_weight=1.0, u_weight=0.5, unlab=False):
    """BCP's LA ``mix_loss`` (code/utils/BCP_utils.py)."""
    image_weight, patch_weight = (u_weight, l_weight) if unlab else (l_weight, u_weight)
    patch_mask = 1 - mask
    ce = torch.nn.functional.cross_entropy(logits, img_l, reduction="none")
    ce_p = torch.nn.functional.cross_entropy(logits, patch_l, reduction="none")
    dice = _bcp_la_mask_dice(logits, img_l, mask) * image_weight + _bcp_la_mask_dice(logits, patch_l, patch_mask) * patch_weight
    loss_ce = image_weight * (ce * mask).sum() / (mask.sum() + 1e-16) + patch_weight * (ce_p * patch_mask).sum() / (patch_mask.sum() + 1e-16)
    return (dice + loss_ce) / 2


def test_mix_loss_with_the_la_codes_dice_equals_its_reference():
    torch.manual_seed(1)
    logits = torch.randn(2, 2, 8, 8, 4)
    img_l, patch_l = torch.randint(0, 2, (2, 8, 8, 4)), torch.randint(0, 2, (2, 8, 8, 4))
    m = cuboid_mask(2, (8, 8, 4), 2 / 3, "random")
    got = mix_loss(logits, img_l, patch_l, m, 1.0, 0.5, squared=False, per_sample=True)
    torch.testing.assert_close(got, _bcp_la_mix_loss(logits, img_l, patch_l, m))
    got_u = mix_loss(logits, patch_l, img_l, m, 0.5, 1.0, squared=False, per_sample=True)
    torch.testing.assert_close(got_u, _bcp_la_mix_loss(logits, patch_l, img_l, m, unlab=True))
    assert not torch.allclose(mix_loss(logits, img_l, patch_l, m, 1.0, 0.5), got)  # the ACDC code's form differs


def test_la_pretraining_scores_the_mixed_label_as_one_volume(monkeypatch):
    """The LA code's pre-training: ``(CE + Dice) / 2`` of the whole mixed volume against the mixed label."""
    m = create_method("bcp", tiny_unet_context(3, classes=2, features=(4, 8)),
                      {"pretrain_iterations": 5, "pretrain_regions": False, "dice_squared": False,
                       "dice_per_sample": True})
    mask = cuboid_mask(1, (8, 8, 8), 0.5, "center")
    monkeypatch.setattr(m, "mask", lambda x, n: mask[:n])
    seen = {}
    m.network.register_forward_hook(lambda module, args, out: seen.__setitem__("logits", out))
    torch.manual_seed(0)
    x, y = torch.randn(2, 1, 8, 8, 8), torch.randint(0, 2, (2, 8, 8, 8))
    loss = m.training_step({"image": x, "label": y}, None, 0)["loss"]
    logits = seen["logits"].float()
    mixed = torch.where(mask.bool(), y[:1], y[1:])
    ref = (torch.nn.functional.cross_entropy(logits, mixed) + _bcp_la_mask_dice(logits, mixed, torch.ones_like(mixed))) / 2
    torch.testing.assert_close(loss, ref)


def test_bidirectional_mixing_images_targets_and_weights(monkeypatch):
    """Eq. 2-3 as the paper writes them and its code runs them: the batches split in halves a and b; X_in takes
    labeled a outside and unlabeled a inside, X_out unlabeled b outside and labeled b inside, one mask per index."""
    m = create_method("bcp", ctx(), {"largest_component": False, "unlabeled_weight": 0.5})
    m.eval()
    mask = cuboid_mask(2, (16, 16), 0.5, "center")
    monkeypatch.setattr(m, "mask", lambda x, n: mask[:n])
    seen = {}

    def spy(logits, outside, inside, mk, w_out, w_in, *dice_form):
        seen.setdefault("calls", []).append((outside, inside, w_out, w_in))
        return logits.sum() * 0.0

    monkeypatch.setattr("semiseg.methods.bcp.mix_loss", spy)
    m.network.register_forward_pre_hook(lambda module, args: seen.__setitem__("inputs", args[0]))
    x_l = -torch.arange(1.0, 5.0)[:, None, None, None].expand(4, 1, 16, 16).clone()  # labeled images -1 .. -4
    x_u = 10 * torch.arange(1.0, 5.0)[:, None, None, None].expand(4, 1, 16, 16).clone()  # unlabeled 10 .. 40
    y_l = torch.stack([torch.full((16, 16), c) for c in (0, 1, 2, 1)])
    m.training_step({"image": x_l, "label": y_l}, {"image": x_u}, 10)
    inputs = seen["inputs"][:, 0]
    assert inputs.shape[0] == 4  # as many mixed images as labeled ones, each image used once
    inside, outside = mask[0] == 0, mask[0] == 1
    for i, (l_img, u_img) in enumerate([(-1, 10), (-2, 20)]):  # X_in: labeled a outside, unlabeled a inside
        assert (inputs[i][outside] == l_img).all() and (inputs[i][inside] == u_img).all()
    for i, (u_img, l_img) in enumerate([(30, -3), (40, -4)]):  # X_out: unlabeled b outside, labeled b inside
        assert (inputs[2 + i][outside] == u_img).all() and (inputs[2 + i][inside] == l_img).all()
    plab = pseudo_labels(torch.softmax(m.teacher(x_u), 1), False)
    (o1, i1, wo1, wi1), (o2, i2, wo2, wi2) = seen["calls"]
    assert torch.equal(o1, y_l[:2]) and torch.equal(i1, plab[:2]) and (wo1, wi1) == (1.0, 0.5)  # GT outside (weight 1)
    assert torch.equal(o2, plab[2:]) and torch.equal(i2, y_l[2:]) and (wo2, wi2) == (0.5, 1.0)  # GT inside (weight 1)
    seen.clear()  # one labeled and one unlabeled image: the pair is mixed both ways
    m.training_step({"image": x_l[:1], "label": y_l[:1]}, {"image": x_u[:1]}, 10)
    one = seen["inputs"][:, 0]
    assert (one[0][outside] == -1).all() and (one[0][inside] == 10).all()
    assert (one[1][outside] == 10).all() and (one[1][inside] == -1).all()


def test_pretraining_uses_labeled_copy_paste_then_the_teacher_starts_as_the_student():
    m = create_method("bcp", ctx(), {"pretrain_iterations": 3})
    lab = {"image": torch.randn(4, 1, 16, 16), "label": torch.randint(0, C, (4, 16, 16))}
    unl = {"image": torch.randn(4, 1, 16, 16)}
    out = m.training_step(lab, unl, 0)
    assert "pretrain" in out and "inward" not in out
    with torch.no_grad():
        for q in m.network.parameters():
            q.add_(1.0)
    m.on_after_step(1)  # still pre-training: the teacher is not touched
    assert not torch.equal(next(m.teacher.parameters()), next(m.network.parameters()))
    m.on_after_step(2)  # the last pre-training step: the teacher becomes the student
    for t, s in zip(m.teacher.state_dict().values(), m.network.state_dict().values()):
        assert torch.equal(t, s)
    assert "inward" in m.training_step(lab, unl, 3)
    t0 = [q.clone() for q in m.teacher.parameters()]
    m.on_after_step(3)  # then EMA 0.99
    for t, a, s in zip(m.teacher.parameters(), t0, m.network.parameters()):
        torch.testing.assert_close(t, 0.99 * a + 0.01 * s)


def test_pseudo_labels_keep_each_classes_largest_component():
    probs = torch.zeros(1, 2, 6, 6)
    probs[:, 0] = 1.0
    probs[0, :, 0:2, 0:2] = torch.tensor([0.0, 1.0])[:, None, None]  # a 4-voxel island
    probs[0, :, 3:6, 3:6] = torch.tensor([0.0, 1.0])[:, None, None]  # the 9-voxel main component
    plab = pseudo_labels(probs, True)
    assert plab.sum() == 9 and plab[0, 4, 4] == 1 and plab[0, 0, 0] == 0
    assert pseudo_labels(probs, False).sum() == 13


def test_self_training_starts_with_a_new_optimizer(msd_dataset, tmp_path):
    """The paper's code builds a new SGD for self-training: the momentum of pre-training is cleared at the
    switch (after step index 1 here) and only there."""
    from semiseg.config import load_config
    from semiseg.engine.trainer import Trainer
    from tests.conftest import tiny_overrides

    ov = tiny_overrides(msd_dataset) + ["train.device=cpu", "train.iterations=4", "method.name=bcp",
                                        "method.params={pretrain_iterations: 2}", "train.unlabeled_batch_size=2",
                                        "split.unlabeled=rest"]
    trainer = Trainer(load_config("synthbrain2d_supervised", ov), tmp_path / "run")
    states: list[int] = []
    original = trainer._train_step

    def record(labeled, unlabeled):
        out = original(labeled, unlabeled)
        states.append(len(trainer.optimizers["main"].state))  # parameters with momentum buffers after this step
        return out

    trainer._train_step = record
    trainer.fit()
    assert states[0] > 0 and states[1] == 0 and states[2] == states[0] == states[3]
