"""Network registry: ``create_network(name, **kw)``, ``list_networks()``, ``register_network``."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from semiseg.errors import ConfigError
from semiseg.networks.base import SegmentationNetwork

_REGISTRY: dict[str, Callable[..., SegmentationNetwork]] = {}


def register_network(name: str) -> Callable[[Callable[..., SegmentationNetwork]], Callable[..., SegmentationNetwork]]:
    """Decorator that registers a network factory under ``name``."""

    def deco(fn: Callable[..., SegmentationNetwork]) -> Callable[..., SegmentationNetwork]:
        if name in _REGISTRY:
            raise ValueError(f"network '{name}' is registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def _ensure_builtin() -> None:
    if not _REGISTRY:
        from semiseg.networks import densenet, unet, vnet

        register_network("unet")(unet.UNet)
        register_network("unet_ssl4mis")(unet.unet_ssl4mis)
        register_network("unet_dual_task")(partial(unet.UNet, sdf_head=True))
        register_network("vnet_dual_task")(partial(vnet.VNet, sdf_head=True))
        register_network("unet_mcnet")(partial(unet.UNet, extra_decoders=["interpolate"]))
        register_network("vnet_mcnet")(partial(vnet.VNet, extra_decoders=["interpolate"]))
        register_network("unet_urpc")(partial(unet.UNet, deep_supervision=True))
        register_network("vnet_urpc")(partial(vnet.VNet, deep_supervision=True))
        register_network("vnet")(vnet.VNet)
        register_network("fc_densenet")(densenet.FCDenseNet)
        register_network("fc_densenet103")(densenet.fc_densenet103)


def list_networks() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def create_network(name: str, **kwargs: Any) -> SegmentationNetwork:
    """Build a registered network; unknown names or arguments fail with the valid choices."""
    _ensure_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown network '{name}'; available: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](**kwargs)
    except TypeError as exc:
        raise ConfigError(f"network '{name}': {exc}") from None
