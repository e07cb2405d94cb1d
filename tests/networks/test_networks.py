import pytest
import torch

from semiseg.errors import ConfigError
from semiseg.networks import LayerState, create_network, list_networks

CASES = {
    ("unet", 2): dict(kwargs={}, shape=(2, 1, 32, 32)),
    ("unet", 3): dict(kwargs={"features": [4, 8, 16, 32]}, shape=(2, 1, 16, 16, 16)),
    ("vnet", 3): dict(kwargs={"n_filters": 4}, shape=(2, 1, 16, 16, 16)),
    ("vnet", 2): dict(kwargs={"n_filters": 4}, shape=(2, 1, 32, 32)),
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
    with pytest.raises(ConfigError, match="available: unet, vnet"):
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
