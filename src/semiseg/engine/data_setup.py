"""From a run config to verified, split and preprocessed cases (shared by train, resume, evaluate)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from semiseg.config.schema import RunConfig
from semiseg.data.case import Case
from semiseg.data.layout import Layout, open_layout
from semiseg.data.preprocessing import preprocess_case
from semiseg.data.verify import verify_dataset
from semiseg.errors import ConfigError
from semiseg.networks import SegmentationNetwork, create_network


@dataclass
class DatasetInfo:
    num_classes: int
    in_channels: int
    class_names: list[str]
    regions: dict[str, list[int]]


def open_verified_layout(cfg: RunConfig, logger: logging.Logger | None = None) -> Layout:
    """Open the dataset and run every check of ``semiseg verify``; fail (exit 3) before training."""
    layout = open_layout(cfg.data)
    report = verify_dataset(layout, cfg.data.in_channels)
    for w in report.warnings[:20]:
        if logger:
            logger.warning(f"warning: {w}")
    if logger and len(report.warnings) > 20:
        logger.warning(f"... and {len(report.warnings) - 20} more warnings")
    report.raise_if_failed(layout.root)
    return layout


def dataset_info(cfg: RunConfig, layout: Layout, first_case: Case) -> DatasetInfo:
    num_classes = layout.num_classes
    if cfg.data.num_classes is not None and cfg.data.num_classes != num_classes:
        raise ConfigError(f"data.num_classes = {cfg.data.num_classes} but the dataset defines {num_classes} classes")
    return DatasetInfo(num_classes, first_case.in_channels, list(layout.class_names), dict(layout.regions))


def load_cases(layout: Layout, ids: list[str], cfg: RunConfig) -> dict[str, Case]:
    refs = {r.case_id: r for r in layout.refs()}
    return {cid: preprocess_case(layout.load(refs[cid]), cfg.data.preprocessing) for cid in ids}


def network_factory(cfg: RunConfig, info: DatasetInfo) -> Callable[..., SegmentationNetwork]:
    """Builds the run's network; keyword arguments override ``network.kwargs`` (a method's variant,
    e.g. the second co-learning student's upsampling)."""

    def make(**overrides: Any) -> SegmentationNetwork:
        return create_network(
            cfg.network.name, spatial_dims=cfg.data.spatial_dims, in_channels=info.in_channels,
            num_classes=info.num_classes, **{**cfg.network.kwargs, **overrides},
        )

    return make


def check_patch_size(cfg: RunConfig, net: SegmentationNetwork) -> None:
    bad = [p for p in cfg.data.patch_size if p % net.size_divisor]
    if bad:
        raise ConfigError(
            f"data.patch_size {cfg.data.patch_size}: every size must be divisible by {net.size_divisor} for network '{cfg.network.name}'"
        )

