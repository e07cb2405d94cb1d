"""``semiseg verify``: every dataset check, all problems listed at once.

Training runs :func:`verify_dataset` before its first step and stops with
exit code 3 when it finds a problem. Problems name the file(s) and what is
wrong; warnings (background-only labels) do not stop anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from semiseg.data.case import CaseRef
from semiseg.data.io import geometry
from semiseg.data.layout import Layout
from semiseg.errors import DatasetError

SPACING_RTOL = 1e-3


@dataclass
class VerifyReport:
    cases: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pools: dict[str, int] = field(default_factory=dict)
    channels: set[int] = field(default_factory=set)
    foreground_cases: int = 0
    """Labeled cases whose label holds a foreground voxel."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_failed(self, root: object) -> None:
        if self.problems:
            raise DatasetError(f"dataset {root} failed {len(self.problems)} check(s):", self.problems)


def _files(ref: CaseRef) -> str:
    return ", ".join(str(f) for f in ref.image_files[:2]) + (" ..." if len(ref.image_files) > 2 else "")


def check_case(layout: Layout, ref: CaseRef, report: VerifyReport, expected_channels: int | None) -> None:
    """Run every per-case check, appending to ``report``."""
    try:
        case = layout.load(ref)
    except DatasetError as exc:
        report.problems.append(str(exc))
        return
    except Exception as exc:  # any other failure still names the case, and the other cases are still checked
        report.problems.append(f"{_files(ref)}: cannot be loaded ({type(exc).__name__}: {exc})")
        return
    img = case.image
    report.channels.add(int(img.shape[0]))
    if not np.isfinite(img).all():
        n = int((~np.isfinite(img)).sum())
        report.problems.append(f"{_files(ref)}: image contains {n} NaN/Inf values")
    elif img.size and float(img.max()) == float(img.min()):
        report.warnings.append(f"{_files(ref)}: image is constant ({float(img.min()):g} everywhere)")
    if ref.pool == "unlabeled" and looks_like_label_map(img, layout.num_classes):
        report.warnings.append(f"{_files(ref)}: this unlabeled image holds only the integer values "
                               f"{sorted(int(v) for v in np.unique(img))}: a label map among the images?")
    if expected_channels is not None and img.shape[0] != expected_channels:
        report.problems.append(f"{_files(ref)}: image has {img.shape[0]} channels, expected {expected_channels}")
    if case.label is None:
        if ref.has_label:
            report.problems.append(f"{ref.label_file}: label could not be read")
        return
    lab = case.label
    if lab.shape != img.shape[1:]:
        report.problems.append(
            f"image {_files(ref)} has shape {img.shape[1:]} but label {ref.label_file} has shape {lab.shape}"
        )
        return
    img_geom, lab_geom = geometry(case.meta), case.meta.get("label_geometry")
    if img_geom is not None and lab_geom is not None and not np.allclose(img_geom, lab_geom, rtol=1e-3, atol=1e-3):
        report.problems.append(
            f"image {_files(ref)} and label {ref.label_file} differ in orientation or origin "
            f"(voxel-to-world matrices {np.round(img_geom[:3], 3).tolist()} vs {np.round(lab_geom[:3], 3).tolist()})"
        )
    lsp = case.meta.get("label_spacing")
    if lsp is not None and not np.allclose(lsp, case.spacing, rtol=SPACING_RTOL, atol=1e-4):
        report.problems.append(
            f"image {_files(ref)} has spacing {tuple(round(s, 4) for s in case.spacing)} "
            f"but label {ref.label_file} has spacing {tuple(round(s, 4) for s in lsp)}"
        )
    if lab.dtype.kind == "f":
        if not np.isfinite(lab).all() or not np.all(lab == np.round(lab)):
            report.problems.append(f"{ref.label_file}: label holds non-integer values (a probability map or a resampled mask?)")
            return
    values = {int(v) for v in np.unique(lab)}
    allowed = layout.allowed_label_values()
    bad = sorted(values - allowed)
    if bad:
        hint = ""
        if 255 in bad and layout.name == "folder2d":
            hint = " (a 0/255 mask: map 255 to class 1, e.g. folder2d.label_values {0: 0, 255: 1} or folder2d.label_threshold 127)"
        elif 255 in bad:
            hint = (f" (a 0/255 mask: {layout.name} label files must hold the class indices 0..{layout.num_classes - 1}; "
                    "rewrite 255 as 1, or add the class to the dataset's labels)")
        report.problems.append(
            f"{ref.label_file}: label values {bad[:10]} are not among the dataset's classes {sorted(allowed)}{hint}"
        )
    if not (np.asarray(lab) > 0).any():
        report.warnings.append(f"{ref.label_file}: label is background only")
    else:
        report.foreground_cases += 1


def looks_like_label_map(image: np.ndarray, num_classes: int | None) -> bool:
    """An image whose values are a few non-negative integers, all below the class count: a mask filed as an image."""
    if image.size == 0 or num_classes is None:
        return False
    values = np.unique(image)
    return len(values) <= max(num_classes, 2) and bool(np.all(values == np.round(values))) and values.min() >= 0 \
        and values.max() < max(num_classes, 2) and values.max() > 0


def verify_dataset(layout: Layout, expected_channels: int | None = None) -> VerifyReport:
    """Check every case of ``layout``; structural problems first, then each case."""
    report = VerifyReport()
    report.problems.extend(layout.structure_problems())
    refs = layout.refs()
    report.cases = len(refs)
    for ref in refs:
        report.pools[ref.pool] = report.pools.get(ref.pool, 0) + 1
    if not any(r.pool == "train" for r in refs):
        report.problems.append(f"{layout.root}: no labeled training case found")
    report.warnings.extend(getattr(layout, "warnings", []))
    channels = expected_channels if expected_channels is not None else layout.in_channels
    for ref in refs:
        check_case(layout, ref, report, channels)
    labeled = [r for r in refs if r.has_label]
    if labeled and report.foreground_cases == 0 and not report.problems:
        report.problems.append(f"{layout.root}: every label is background only; there is nothing to learn "
                               "(wrong label folder, or masks stored in another value range?)")
    if channels is None and len(report.channels) > 1:
        report.problems.append(f"{layout.root}: cases differ in channel count {sorted(report.channels)}")
    return report
