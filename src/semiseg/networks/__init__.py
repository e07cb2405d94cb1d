"""Segmentation networks with feature taps and layer-k resume (see :mod:`semiseg.networks.base`)."""

from semiseg.networks.base import FeatureInfo, LayerState, SegmentationNetwork
from semiseg.networks.registry import create_network, list_networks, register_network

__all__ = ["FeatureInfo", "LayerState", "SegmentationNetwork", "create_network", "list_networks", "register_network"]
