"""The two 3D seed methods: hybrid-cropping co-learning (003) and voxel-wise adversarial learning (004).

Equation tests on hand-made tensors: the weighted EMA (003 Eq. 1), the copy-paste mask and its
mixing (Eq. 11-14), the whole loss (Eq. 3-18) by hand, the voxel classes of 004 Eq. 1, the BYOL
loss (Eq. 3), the point-sampled feature layer against its dense form, and where gradients go.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from semiseg.errors import ConfigError
from semiseg.losses import dice_loss
from semiseg.methods import MethodContext, create_method
from semiseg.methods.copy_paste import cuboid_mask, mix
from semiseg.methods.ema import weighted_ema_update
from semiseg.methods.hybrid_colearning import teacher_weights
from semiseg.methods.voxel_adversarial import byol_loss, encoder_taps, same_class_permutation
from semiseg.methods.voxel_features import VoxelFeatureLayer, point_sample, sample_voxels
from semiseg.networks import create_network
from semiseg.networks.base import InterpolateConv

C = 2


def ctx(dims=3, total=100, name="vnet", **net):
    kw = {"n_filters": 4} if name == "vnet" else {"features": [4, 8]}
    kw.update(net)
    return MethodContext(C, 1, dims, total, lambda **o: create_network(name, spatial_dims=dims, in_channels=1, num_classes=C,
                                                                        **{**kw, **o}))


def batches(dims=3, size=16, n_l=2, n_u=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (size,) * dims
    lab = {"image": torch.randn(n_l, 1, *shape, generator=g), "label": torch.randint(0, C, (n_l, *shape), generator=g)}
    return lab, {"image": torch.randn(n_u, 1, *shape, generator=g)}


# ----------------------------------------------------------------------- 003: Eq. 1
def test_weighted_ema_equals_eq1_on_given_tensors():
    teacher, s1, s2 = (torch.nn.Linear(2, 1) for _ in range(3))
    with torch.no_grad():
        teacher.weight.copy_(torch.tensor([[1.0, 2.0]])), teacher.bias.fill_(4.0)
        s1.weight.copy_(torch.tensor([[3.0, -1.0]])), s1.bias.fill_(0.0)
        s2.weight.copy_(torch.tensor([[-2.0, 5.0]])), s2.bias.fill_(10.0)
    keep = weighted_ema_update(teacher, [(s1, 0.2), (s2, 0.1)])
    assert keep == pytest.approx(0.7)
    # theta_t = 0.7 theta_t-1 + 0.2 theta_s1 + 0.1 theta_s2
    torch.testing.assert_close(teacher.weight, torch.tensor([[0.7 + 0.6 - 0.2, 1.4 - 0.2 + 0.5]]))
    torch.testing.assert_close(teacher.bias, torch.tensor([0.7 * 4.0 + 1.0]))
    with pytest.raises(ValueError, match="sum to at most 1"):
        weighted_ema_update(teacher, [(s1, 0.8), (s2, 0.3)])
    with pytest.raises(ValueError, match="shape"):
        weighted_ema_update(teacher, [(torch.nn.Linear(3, 1), 0.1)])


def test_teacher_weights_warm_up_then_split_the_decay():
    assert teacher_weights(0.99, (0.5, 0.5), 0) == (0.5, 0.5)  # step 0: min(0, 0.99) -> the teacher copies the students
    a, b = teacher_weights(0.99, (0.3, 0.7), 10_000)
    assert a == pytest.approx(0.003) and b == pytest.approx(0.007)


def test_method_teacher_is_the_weighted_average_of_both_students():
    m = create_method("hybrid_colearning", ctx(), {"ema_shares": [0.25, 0.75]})
    with torch.no_grad():
        for q in m.student2.parameters():
            q.add_(torch.randn_like(q))
    t0 = [q.clone() for q in m.teacher.parameters()]
    m.on_after_step(999)
    a, b = 0.01 * 0.25, 0.01 * 0.75
    for t, t_prev, q1, q2 in zip(m.teacher.parameters(), t0, m.student1.parameters(), m.student2.parameters()):
        torch.testing.assert_close(t, (1 - a - b) * t_prev + a * q1 + b * q2)


def test_students_differ_in_structure_keep_shapes_and_start_equal():
    m = create_method("hybrid_colearning", ctx(), {})
    assert not any(isinstance(mod, torch.nn.LeakyReLU) for mod in m.student1.modules())  # V-Net: ReLU
    assert any(isinstance(mod, torch.nn.LeakyReLU) for mod in m.student2.modules())  # swapped
    unet = create_method("hybrid_colearning", ctx(dims=2, name="unet"), {})
    assert not any(isinstance(mod, torch.nn.LeakyReLU) for mod in unet.student2.modules())  # U-Net: LeakyReLU -> ReLU
    decoders = create_method("hybrid_colearning", ctx(), {"student2_network": {"upsampling": "interpolate"}})
    assert any(isinstance(mod, InterpolateConv) for mod in decoders.student2.modules())  # the decoder variant
    for (k, a), b in zip(m.student1.state_dict().items(), m.student2.state_dict().values()):
        assert torch.equal(a, b), k  # same_init
    m.eval()
    x = torch.randn(1, 1, 16, 16, 16)
    assert not torch.allclose(m.student1(x), m.student2(x))  # same weights, different functions
    with pytest.raises(ValueError, match="same parameter shapes"):
        create_method("hybrid_colearning", ctx(), {"student2_network": {"n_filters": 8}})


@pytest.mark.parametrize("dims", [2, 3])
def test_interpolate_conv_has_transposed_conv_shapes_and_doubles_the_size(dims):
    up = InterpolateConv(dims, 6, 3)
    ref = torch.nn.ConvTranspose3d(6, 3, 2, stride=2) if dims == 3 else torch.nn.ConvTranspose2d(6, 3, 2, stride=2)
    assert {k: v.shape for k, v in up.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    x = torch.randn(2, 6, *(5,) * dims)
    assert up(x).shape == (2, 3, *(10,) * dims)
    # a constant input stays constant: interpolation then a convolution of replicate-padded values
    y = up(torch.ones(1, 6, *(4,) * dims))
    expected = up.weight.sum(dim=(0, *range(2, 2 + dims))) + up.bias
    torch.testing.assert_close(y, expected.view(1, 3, *(1,) * dims).expand_as(y))


# --------------------------------------------------------------- 003: Eq. 11-14
def test_cuboid_mask_geometry_and_mixing():
    torch.manual_seed(0)
    m = cuboid_mask(3, (8, 10, 12), 0.5)
    assert m.shape == (3, 8, 10, 12)
    for i in range(3):
        zeros = torch.nonzero(m[i] == 0)
        extent = (zeros.max(0).values - zeros.min(0).values + 1).tolist()
        assert extent == [4, 5, 6] and zeros.shape[0] == 4 * 5 * 6  # one solid cuboid, half of every edge
    c = cuboid_mask(1, (8, 8), 0.5, position="center")[0]
    assert (c[2:6, 2:6] == 0).all() and c.sum() == 64 - 16
    a, b = torch.zeros(1, 2, 8, 8), torch.ones(1, 2, 8, 8)
    mixed = mix(a, b, c[None])
    assert (mixed[0, :, 2:6, 2:6] == 1).all() and mixed.sum() == 2 * 16  # b inside the cuboid, a outside
    la, lb = torch.zeros(1, 8, 8, dtype=torch.long), torch.full((1, 8, 8), 3)
    ml = mix(la, lb, c[None])
    assert ml.dtype == torch.long and (ml[0, 2:6, 2:6] == 3).all() and ml.sum() == 3 * 16
    with pytest.raises(ValueError):
        cuboid_mask(1, (8, 8), 1.5)


def centred_mask(monkeypatch):
    """The INDMIX cuboid of every training step: the centred one of a 16^3 batch of 2 (no randomness)."""
    mask = cuboid_mask(2, (16, 16, 16), 0.5, position="center")
    monkeypatch.setattr("semiseg.methods.hybrid_colearning.cuboid_mask", lambda *a, **k: mask)
    return mask


def test_hybrid_colearning_loss_equals_eq18_by_hand(monkeypatch):
    torch.manual_seed(0)
    m = create_method("hybrid_colearning", ctx(), {"rampup": "none", "unlabeled_weight": 0.7, "mix_weight": 0.3})
    m.eval()  # deterministic forwards (batch-norm running statistics)
    with torch.no_grad():
        for net in (m.student2, m.teacher):
            for q in net.parameters():
                q.add_(0.1 * torch.randn_like(q))
    mask = centred_mask(monkeypatch)
    lab, unl = batches()
    got = m.training_step(lab, unl, 0)
    x_l, y_l, x_u = lab["image"], lab["label"], unl["image"]
    s1 = lambda x: torch.softmax(m.student1(x), 1)  # noqa: E731
    s2 = lambda x: torch.softmax(m.student2(x), 1)  # noqa: E731
    t = torch.softmax(m.teacher(x_u), 1)
    sup = dice_loss(s1(x_l), y_l) + dice_loss(s2(x_l), y_l)
    cps = dice_loss(s1(x_u), s2(x_u).argmax(1)) + dice_loss(s2(x_u), s1(x_u).argmax(1))
    teach = dice_loss(s1(x_u), t.argmax(1)) + dice_loss(s2(x_u), t.argmax(1))
    M = mask[:, None]
    mixed1, mixed2 = x_l * M + x_u * (1 - M), x_u * M + x_l * (1 - M)
    y1h = F.one_hot(y_l, C).permute(0, 4, 1, 2, 3).float()
    y_mix1, y_mix2 = y1h * M + t * (1 - M), t * M + y1h * (1 - M)
    l_mix = ((s1(mixed1) - y_mix1) ** 2).mean() + ((s2(mixed2) - y_mix2) ** 2).mean()
    torch.testing.assert_close(got["loss"], sup + 0.7 * (cps + teach) + 0.3 * l_mix, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["mix"], l_mix, rtol=1e-4, atol=1e-5)


def test_hybrid_colearning_gradients_reach_both_students_not_the_teacher():
    m = create_method("hybrid_colearning", ctx(), {})
    out = m.training_step(*batches(), 50)
    out["loss"].backward()
    assert all(q.grad is not None for q in m.student1.parameters())
    assert all(q.grad is not None for q in m.student2.parameters())
    assert all(q.grad is None for q in m.teacher.parameters())


def test_shared_start_trains_student1_alone_then_the_students_split(monkeypatch):
    """``shared_start``: before the split step only student 1 trains (no CPS; its own Eq. 3, 7-9 and 13-17 terms)
    and student 2 is copied from it after every step; from the split step on both train."""
    torch.manual_seed(0)
    m = create_method("hybrid_colearning", ctx(total=100), {"rampup": "none", "shared_start": 0.3})
    assert m.split_step == 30
    m.eval()
    mask = centred_mask(monkeypatch)
    lab, unl = batches()
    got = m.training_step(lab, unl, 29)
    x_l, y_l, x_u = lab["image"], lab["label"], unl["image"]
    s1 = lambda x: torch.softmax(m.student1(x), 1)  # noqa: E731
    t = torch.softmax(m.teacher(x_u), 1)
    M = mask[:, None]
    y_mix1 = F.one_hot(y_l, C).permute(0, 4, 1, 2, 3).float() * M + t * (1 - M)
    want = dice_loss(s1(x_l), y_l) + dice_loss(s1(x_u), t.argmax(1)) + ((s1(x_l * M + x_u * (1 - M)) - y_mix1) ** 2).mean()
    torch.testing.assert_close(got["loss"], want, rtol=1e-4, atol=1e-5)
    assert float(got["cps"]) == 0.0 and "sup2" not in got
    got["loss"].backward()
    assert all(q.grad is None for q in m.student2.parameters())
    with torch.no_grad():
        for q in m.student1.parameters():
            q.add_(0.01)
    m.on_after_step(29)
    assert all(torch.equal(a, b) for a, b in zip(m.student1.state_dict().values(), m.student2.state_dict().values()))
    m.on_after_step(30)  # the split step: no copy
    with torch.no_grad():
        next(m.student1.parameters()).add_(1.0)
    m.on_after_step(31)
    assert not torch.equal(next(m.student1.parameters()), next(m.student2.parameters()))
    out = m.training_step(lab, unl, 30)
    out["loss"].backward()
    assert "sup2" in out and all(q.grad is not None for q in m.student2.parameters())
    with pytest.raises(ConfigError, match="shared_start must be in"):
        create_method("hybrid_colearning", ctx(), {"shared_start": 1.0})


# ---------------------------------------------------------------- 004: Eq. 1
def test_voxel_classes_labels_thresholded_pseudo_labels_and_ignored_voxels():
    m = create_method("voxel_adversarial", ctx(), {"threshold": 0.7})
    labeled = {"label": torch.tensor([[[0, 1], [1, 0]]])}
    probs_u = torch.tensor([[[[0.9, 0.4], [0.2, 0.69]], [[0.1, 0.6], [0.8, 0.31]]]])  # (1, C, 2, 2)
    classes, valid = m.voxel_classes(labeled, probs_u)
    assert classes.tolist() == [[[0, 1], [1, 0]], [[0, 1], [1, 0]]]
    assert valid.tolist() == [[[True, True], [True, True]], [[True, False], [True, False]]]  # 0.6, 0.69 <= t: ignored
    assert m.voxel_classes(labeled, None)[1].all()


def test_sample_voxels_is_class_balanced_and_respects_validity():
    torch.manual_seed(0)
    classes = torch.zeros(2, 10, 10, dtype=torch.long)
    classes[0, :2, :2] = 1
    valid = torch.ones_like(classes, dtype=torch.bool)
    valid[1] = False
    idx = sample_voxels(classes, 2, 3, valid)
    picked = classes.reshape(-1)[idx]
    assert (picked == 0).sum() == 3 and (picked == 1).sum() == 3
    assert (idx < 100).all()  # image 1 is invalid everywhere


# ---------------------------------------------------------------- 004: Eq. 3
def test_byol_loss_value_on_given_vectors():
    online = torch.tensor([[3.0, 4.0], [1.0, 0.0]], requires_grad=True)
    target = torch.tensor([[4.0, 3.0], [0.0, 2.0]], requires_grad=True)
    loss = byol_loss(online, target)
    # ||(0.6, 0.8) - (0.8, 0.6)||^2 = 0.08; ||(1, 0) - (0, 1)||^2 = 2 -> mean 1.04 (= 2 - 2 cos)
    assert loss.item() == pytest.approx(1.04)
    loss.backward()
    assert target.grad is None and online.grad is not None


def test_same_class_permutation_stays_within_classes():
    torch.manual_seed(0)
    c = torch.tensor([0, 1, 0, 1, 1, 2])
    perm = same_class_permutation(c)
    assert torch.equal(c[perm], c) and sorted(perm.tolist()) == list(range(6))


# ------------------------------------------------ 004: voxel-wise feature layer
@pytest.mark.parametrize("dims", [2, 3])
def test_point_sampled_features_equal_the_dense_upsample_and_convolve(dims):
    torch.manual_seed(0)
    full = (8,) * dims
    feats = [torch.randn(2, 3, *full), torch.randn(2, 5, *(4,) * dims), torch.randn(2, 7, *(2,) * dims)]
    layer = VoxelFeatureLayer([3, 5, 7], width=6)
    idx = torch.randperm(2 * 8**dims)[:40]
    dense = layer.dense(feats, full).movedim(1, -1).reshape(-1, 6)
    torch.testing.assert_close(layer(feats, idx, full), dense[idx], rtol=1e-5, atol=1e-5)
    up = F.interpolate(feats[1], size=full, mode="bilinear" if dims == 2 else "trilinear", align_corners=False)
    torch.testing.assert_close(point_sample(feats[1], idx, full), up.movedim(1, -1).reshape(-1, 5)[idx], rtol=1e-5, atol=1e-5)


def test_encoder_taps_are_the_first_four_vnet_stages():
    net = create_network("vnet", spatial_dims=3, in_channels=1, num_classes=2, n_filters=4)
    assert [net.feature_info[i].name for i in encoder_taps(net, 4)] == ["encoder1", "encoder2", "encoder3", "encoder4"]


# ------------------------------------------------------------ 004: gradients
def test_generator_step_sends_no_gradient_to_teacher_or_discriminator_and_disc_steps_alone():
    torch.manual_seed(0)
    m = create_method("voxel_adversarial", ctx(), {"threshold": 0.0})
    seen = {}

    def hook(loss, name):
        loss.backward()
        seen[name] = {
            "student": any(q.grad is not None and q.grad.abs().sum() > 0 for q in m.student.parameters()),
            "predictor": any(q.grad is not None for q in m.predictor.parameters()),
            "teacher": any(q.grad is not None for q in m.teacher.parameters()),
            "disc": any(q.grad is not None for q in m.discriminator.parameters()),
        }
        for q in m.parameters():
            q.grad = None

    m.attach_optimize(hook)
    out = m.training_step(*batches(), 10)
    assert seen["main"] == {"student": True, "predictor": True, "teacher": False, "disc": False}
    assert seen["discriminator"] == {"student": False, "predictor": False, "teacher": False, "disc": True}
    assert {"adv", "disc", "feature", "consistency"} <= set(out)
    gamma = 0.001 * math.exp(-5 * (1 - 10 / 100) ** 2)
    assert out["consistency_weight"].item() == pytest.approx(gamma)


def test_discriminator_optimizer_is_the_papers_adam():
    from semiseg.config import RunConfig
    from semiseg.engine.trainer import optimizer_configs

    m = create_method("voxel_adversarial", ctx(), {})
    cfgs = optimizer_configs(RunConfig(), m.configure_optimizers(), m.optimizer_overrides())
    assert cfgs["main"].name == "sgd"
    d = cfgs["discriminator"]
    assert (d.name, d.lr, d.betas, d.schedule) == ("adam", 2e-4, (0.5, 0.999), "constant")
