import pytest
import torch

from semiseg.errors import ConfigError
from semiseg.networks import LayerState, create_network, list_networks

CASES = {
    ("unet", 2): dict(kwargs={}, shape=(2, 1, 32, 32)),
    ("unet", 3): dict(kwargs={"features": [4, 8, 16, 32]}, shape=(2, 1, 16, 16, 16)),
    ("vnet", 3): dict(kwargs={"n_filters": 4}, shape=(2, 1, 16, 16, 16)),
    ("vnet", 2): dict(kwargs={"n_filters": 4}, shape=(2, 1, 32, 32)),
    ("fc_densenet", 2): dict(kwargs={"growth_rate": 4, "first_channels": 8, "down_layers": [2, 2, 3], "bottleneck_layers": 3},
                             shape=(2, 1, 32, 32)),
    ("fc_densenet", 3): dict(kwargs={"growth_rate": 4, "first_channels": 8, "down_layers": [1, 2], "bottleneck_layers": 2},
                             shape=(2, 1, 8, 8, 8)),
    ("fc_densenet103", 2): dict(kwargs={}, shape=(1, 1, 32, 32)),
    ("unet_ssl4mis", 2): dict(kwargs={}, shape=(2, 1, 32, 32)),
    ("unet_dual_task", 2): dict(kwargs={"features": [4, 8, 16]}, shape=(2, 1, 32, 32)),
    ("vnet_dual_task", 3): dict(kwargs={"n_filters": 4}, shape=(2, 1, 16, 16, 16)),
    ("unet_mcnet", 2): dict(kwargs={"features": [4, 8, 16]}, shape=(2, 1, 32, 32)),
    ("vnet_mcnet", 3): dict(kwargs={"n_filters": 4}, shape=(2, 1, 16, 16, 16)),
    ("unet_urpc", 2): dict(kwargs={"features": [4, 8, 16]}, shape=(2, 1, 32, 32)),
    ("vnet_urpc", 3): dict(kwargs={"n_filters": 4}, shape=(2, 1, 16, 16, 16)),
    ("unet_ssl4mis", 3): dict(kwargs={"features": [4, 8, 16, 32]}, shape=(2, 1, 16, 16, 16)),
}


def build(name, dims, kwargs, in_channels=1, num_classes=3):
    torch.manual_seed(0)
    return create_network(name, spatial_dims=dims, in_channels=in_channels, num_classes=num_classes, **kwargs).eval()


def net_and_input(name, dims):
    """The registered network of a CASES entry and a random batch of its input shape."""
    spec = CASES[(name, dims)]
    return build(name, dims, spec["kwargs"]), torch.randn(*spec["shape"])


def test_every_registered_network_is_covered():
    assert {n for n, _ in CASES} == set(list_networks())


@pytest.mark.parametrize("name,dims", sorted(CASES))
def test_shapes_and_layer_k_resume_equals_forward(name, dims):
    net, x = net_and_input(name, dims)
    with torch.no_grad():
        y = net(x)
        assert y.shape == (x.shape[0], 3) + x.shape[2:]
        for k in range(net.num_layers + 1):
            state = net.forward_to(x, k)
            assert isinstance(state, LayerState)
            torch.testing.assert_close(net.forward_from(state, k), y)


@pytest.mark.parametrize("name,dims", sorted(CASES))
def test_feature_info_matches_taps(name, dims):
    net, x = net_and_input(name, dims)
    with torch.no_grad():
        logits, taps = net.forward_intermediates(x)
    info = net.feature_info
    assert len(info) == net.num_layers + 1 and info[0].name == "input"
    for fi, t in zip(info[1:], taps):
        assert t.shape[1] == fi.channels, fi
        assert t.shape[2] == x.shape[2] // fi.stride, fi
    torch.testing.assert_close(logits, net(x))


def test_mixing_state_with_itself_at_lambda_one_is_identity():
    net = build("unet", 2, {})
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        for k in (0, 2, net.num_layers):
            s = net.forward_to(x, k)
            perm = torch.randperm(4)
            mixed = LayerState(1.0 * s.h + 0.0 * s.h[perm], [1.0 * a + 0.0 * a[perm] for a in s.skips])
            torch.testing.assert_close(net.forward_from(mixed, k), net(x))


def test_skips_carried_with_state():
    net = build("unet", 2, {})
    s = net.forward_to(torch.randn(1, 1, 32, 32), 3)
    assert [t.shape[1] for t in s.skips] == [16, 32, 64]


def test_literature_sizes():
    vnet = create_network("vnet", spatial_dims=3, in_channels=1, num_classes=2)
    n = sum(p.numel() for p in vnet.parameters())
    assert 9.40e6 < n < 9.50e6, n  # the LA literature's V-Net: ~9.45 M
    unet = create_network("unet", spatial_dims=2, in_channels=1, num_classes=4)
    assert [f.channels for f in unet.feature_info[1:6]] == [16, 32, 64, 128, 256]


def test_input_size_error_names_divisor():
    net = build("unet", 2, {})
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.randn(1, 1, 30, 32))
    with pytest.raises(ValueError, match="input channels"):
        net(torch.randn(1, 2, 32, 32))


def test_unknown_network_and_bad_kwargs():
    with pytest.raises(ConfigError, match="available: fc_densenet, fc_densenet103, unet, unet_dual_task, unet_mcnet, unet_ssl4mis, unet_urpc, vnet, "
                                         "vnet_dual_task, vnet_mcnet, vnet_urpc"):
        create_network("resnet")
    with pytest.raises(ConfigError, match="unexpected keyword"):
        create_network("unet", widths=3)


def test_channels_last_gives_same_output():
    net = build("unet", 2, {})
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        y = net(x)
        net2 = net.to(memory_format=torch.channels_last)
        torch.testing.assert_close(net2(x.contiguous(memory_format=torch.channels_last)), y, rtol=1e-4, atol=1e-4)


def test_fc_densenet103_matches_equireg_table_2():
    """EquiReg Table 2 (224x224 input, ch=4 sequences, C=4 classes): every row's width and resolution."""
    net = create_network("fc_densenet103", spatial_dims=2, in_channels=4, num_classes=4)
    rows = [(f.channels, 224 // f.stride) for f in net.feature_info]
    assert rows == [(4, 224), (48, 224), (112, 112), (192, 56), (304, 28), (464, 14), (656, 7), (240, 7),
                    (896, 14), (704, 28), (496, 56), (352, 112), (224, 224), (64, 224)]
    with torch.no_grad():
        logits, taps = net.eval().forward_intermediates(torch.zeros(1, 4, 224, 224))
    assert logits.shape == (1, 4, 224, 224)
    assert [tuple(t.shape[1:]) for t in taps] == [(c, s, s) for c, s in rows[1:]]
    dense_layers = sum(1 for m in net.modules() if type(m).__name__ == "DenseLayer")
    assert dense_layers == 4 + 5 + 7 + 10 + 12 + 15 + 12 + 10 + 7 + 5 + 4
    drops = {m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)}
    assert drops == {0.2}


def test_fc_densenet103_parameter_count_matches_jegou():
    """Jégou et al. (2017) report 9.4 M parameters for FC-DenseNet103 (RGB input, 11 CamVid classes)."""
    jegou = create_network("fc_densenet103", in_channels=3, num_classes=11, transition_up="jegou")
    assert 9.25e6 < sum(p.numel() for p in jegou.parameters()) < 9.45e6
    thesis = create_network("fc_densenet103", in_channels=3, num_classes=11)
    assert sum(p.numel() for p in thesis.parameters()) == 9_677_099  # wider transitions up (Table 2)


def test_unet_ssl4mis_is_the_peer_unet():
    """SSL4MIS's U-Net (issue 13's like-for-like comparison): its parameter count, and, when a checkout of
    HiLab-git/SSL4MIS is at $SSL4MIS_DIR, the same outputs with the same weights."""
    import importlib.util
    import os
    from pathlib import Path

    import torch

    from semiseg.networks import create_network

    ours = create_network("unet_ssl4mis", spatial_dims=2, in_channels=1, num_classes=4)
    assert sum(p.numel() for p in ours.parameters()) == 1_813_764
    peer_file = Path(os.environ.get("SSL4MIS_DIR", "/nonexistent")) / "code" / "networks" / "unet.py"
    if not peer_file.is_file():
        pytest.skip("no SSL4MIS checkout ($SSL4MIS_DIR) to compare outputs with")
    spec = importlib.util.spec_from_file_location("peer_unet", peer_file)
    peer_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer_mod)
    peer = peer_mod.UNet(1, 4).eval()
    ours.eval().load_state_dict(dict(zip(ours.state_dict(), peer.state_dict().values(), strict=True)))
    x = torch.randn(2, 1, 64, 64)
    torch.testing.assert_close(ours(x), peer(x))


def test_dual_task_networks_add_a_tanh_distance_head_per_foreground_class():
    for name, dims, kw in (("unet_dual_task", 2, {"features": [4, 8, 16]}), ("vnet_dual_task", 3, {"n_filters": 4})):
        net = build(name, dims, kw, num_classes=3)
        x = torch.randn(2, 1, *(16,) * dims)
        heads = net.forward_heads(x)
        assert set(heads) == {"seg", "sdf"} and heads["sdf"].shape == (2, 2, *(16,) * dims)
        assert heads["sdf"].abs().max() <= 1
        torch.testing.assert_close(heads["seg"], net(x))  # forward (prediction) is the segmentation head


def test_mcnet_networks_share_the_encoder_and_differ_in_their_decoders():
    net = build("unet", 2, {"features": [4, 8, 16], "extra_decoders": ["interpolate", "interpolate_nearest"]})
    x = torch.randn(2, 1, 16, 16)
    heads = net.forward_heads(x)
    assert list(heads) == ["seg", "decoder2", "decoder3"]
    torch.testing.assert_close(heads["seg"], net(x))
    assert not torch.allclose(heads["decoder2"], heads["decoder3"])
    n_enc = len(net.encoder_layers)
    assert len(net.extra_decoders[0]["blocks"]) == len(net.blocks) - n_enc  # a full decoder each, one shared encoder


def test_urpc_pyramid_heads_perturb_in_training_only_and_upsample_to_the_input():
    from semiseg.networks.base import FeatureDropout, FeatureNoise

    net = build("vnet_urpc", 3, {"n_filters": 4})
    x = torch.randn(2, 1, 16, 16, 16)
    heads = net.forward_heads(x)
    assert [k for k in heads if k.startswith("pyramid")] == ["pyramid1", "pyramid2", "pyramid3"]
    assert all(v.shape == (2, 3, 16, 16, 16) for v in heads.values())
    torch.testing.assert_close(net.forward_heads(x)["pyramid2"], heads["pyramid2"])  # evaluation: no perturbation
    f = torch.rand(2, 3, 8, 8) + 0.1
    fd, fn = FeatureDropout().train(), FeatureNoise().train()
    assert (fd(f) == 0).any() and torch.equal(FeatureDropout().eval()(f), f)
    ratio = fn(f) / f
    assert ratio.min() >= 0.7 - 1e-6 and ratio.max() <= 1.3 + 1e-6 and torch.equal(FeatureNoise().eval()(f), f)
