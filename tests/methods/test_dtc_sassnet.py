"""DTC and SASSNet: the dual-task losses on hand-made tensors, where the adversarial gradients go, and
loading a plain segmentation network's weights."""

import math

import pytest
import torch

from semiseg.losses import dice_loss
from semiseg.methods import create_method
from semiseg.methods.dtc import dual_task_consistency
from semiseg.methods.sdf import normalized_sdf
from semiseg.networks import create_network
from tests.conftest import tiny_unet_context

C = 3


def ctx(dims=2, total=100):
    return tiny_unet_context(dims, total, classes=C)


def batches(size=16):
    g = torch.Generator().manual_seed(0)
    lab = {"image": torch.randn(2, 1, size, size, generator=g), "label": torch.zeros(2, size, size, dtype=torch.long)}
    lab["label"][0, 3:9, 4:10] = 1
    lab["label"][1, 8:14, 2:7] = 2
    return lab, {"image": torch.randn(2, 1, size, size, generator=g)}


def test_dual_task_consistency_by_hand():
    seg = torch.tensor([[[[0.0]], [[1.0]], [[-1.0]]]])  # (1, 3, 1, 1)
    sdf = torch.tensor([[[[-0.001]], [[0.002]]]])  # (1, 2, 1, 1)
    p = torch.softmax(seg, 1)[0, 1:, 0, 0]
    ls = torch.sigmoid(-1500 * torch.tensor([-0.001, 0.002]))
    assert dual_task_consistency(seg, sdf, 1500).item() == pytest.approx(((ls - p) ** 2).mean().item())


def test_dtc_loss_is_dice_plus_beta_sdf_mse_plus_ramped_consistency():
    m = create_method("dtc", ctx(total=100), {"beta": 0.3, "consistency": 1.0})
    m.eval()
    lab, unl = batches()
    out = m.training_step(lab, unl, 50)
    heads = m.network.forward_heads(torch.cat([lab["image"], unl["image"]]))
    sdf_gt = torch.stack([torch.stack([torch.from_numpy(normalized_sdf(lab["label"][n].numpy() == c)) for c in (1, 2)])
                          for n in range(2)])
    sup = dice_loss(torch.softmax(heads["seg"][:2], 1), lab["label"]) + 0.3 * ((heads["sdf"][:2] - sdf_gt) ** 2).mean()
    w = math.exp(-5 * (1 - 50 / 100) ** 2)
    expected = sup + w * dual_task_consistency(heads["seg"], heads["sdf"], 1500)
    torch.testing.assert_close(out["loss"], expected, rtol=1e-4, atol=1e-5)


def test_sassnet_discriminator_sees_sdfs_and_gradients_go_where_they_should():
    m = create_method("sassnet", ctx(), {"adv_rampup": "none"})
    seen = {}

    def hook(loss, name):
        loss.backward()
        seen[name] = {"net": any(q.grad is not None and q.grad.abs().sum() > 0 for q in m.network.parameters()),
                      "disc": any(q.grad is not None for q in m.discriminator.parameters())}
        for q in m.parameters():
            q.grad = None

    m.attach_optimize(hook)
    out = m.training_step(*batches(), 0)
    assert seen["main"] == {"net": True, "disc": False} and seen["discriminator"] == {"net": False, "disc": True}
    assert {"adv", "disc", "sdf"} <= set(out)
    first = m.discriminator.features[0]
    assert first.in_channels == 1 + (C - 1)  # the image and one distance map per foreground class


def test_plain_segmentation_weights_load_into_the_dual_task_network():
    plain = create_network("unet", spatial_dims=2, in_channels=1, num_classes=C, features=[4, 8, 16])
    m = create_method("dtc", ctx(), {})
    m.load_initial_weights(plain.state_dict())
    for k, v in plain.state_dict().items():
        assert torch.equal(m.network.state_dict()[k], v)
    with pytest.raises(RuntimeError, match="do not fit"):
        m.load_initial_weights({"bogus": torch.zeros(1)})


def test_sassnet_uses_its_papers_discriminator_optimizer():
    from semiseg.config import RunConfig
    from semiseg.engine.trainer import optimizer_configs

    m = create_method("sassnet", ctx(), {})
    d = optimizer_configs(RunConfig(), m.configure_optimizers(), m.optimizer_overrides())["discriminator"]
    assert (d.name, d.lr, d.betas) == ("adam", 1e-4, (0.9, 0.99))
