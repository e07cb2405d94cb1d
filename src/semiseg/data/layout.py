"""The layout interface and ``open_layout`` (config -> layout object).

A layout lists its cases (:class:`CaseRef`, nothing read yet), reports
structural problems (missing files, unpaired images), and loads a case into
the canonical arrays of :mod:`semiseg.data.case`.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from semiseg.data.case import Case, CaseRef
from semiseg.errors import DatasetError

if TYPE_CHECKING:
    from semiseg.config.schema import DataConfig


class Layout(ABC):
    """A dataset on disk. Subclasses set ``num_classes``, ``class_names``, ``in_channels``."""

    name: str = ""
    root: Path
    num_classes: int
    class_names: list[str]
    in_channels: int | None = None
    regions: dict[str, list[int]]

    _refs: list[CaseRef]
    _problems: list[str]

    def _scan_once(self) -> None:
        """List the cases (:meth:`_scan`) once, from a subclass's ``__init__`` after the attributes ``_scan`` reads
        are set; ``_scan`` appends what it finds wrong to ``self._problems``."""
        self._problems = []
        self._refs = self._scan()

    @abstractmethod
    def _scan(self) -> list[CaseRef]:
        """Find every case on disk without reading image data; record structural problems in ``self._problems``."""

    @abstractmethod
    def load(self, ref: CaseRef) -> Case:
        """Read one case into canonical arrays (labels already mapped to class indices)."""

    def refs(self) -> list[CaseRef]:
        """Every case the dataset holds, with its pool (train/unlabeled/val/test)."""
        return list(self._refs)

    def structure_problems(self) -> list[str]:
        """Problems found without reading image data (missing or unpaired files)."""
        return list(self._problems)

    def allowed_label_values(self) -> set[int]:
        return set(range(self.num_classes))

    def class_indices(self) -> list[int]:
        """Foreground class indices (evaluated classes)."""
        return list(range(1, self.num_classes))


def subject_of(case_id: str, regex: str | None) -> str:
    """The subject (patient) a case belongs to: the regex's first group, or the case id itself."""
    if not regex:
        return case_id
    m = re.search(regex, case_id)
    return m.group(1) if m and m.groups() else (m.group(0) if m else case_id)


def open_layout(cfg: "DataConfig") -> Layout:
    """Build the layout named by ``cfg.layout`` over ``cfg.root`` (``builtin:synthbrain`` is generated)."""
    root_text = cfg.root
    if root_text.startswith("builtin:"):
        from semiseg.data.synthetic import ensure_builtin_dataset

        root = ensure_builtin_dataset(root_text.split(":", 1)[1], **cfg.synthbrain)
    else:
        root = Path(os.path.expandvars(root_text)).expanduser()
    if not root.exists():
        unset = [v for v in re.findall(r"\$\{?(\w+)", str(root))]
        hint = f" (environment variable {', '.join(unset)} is not set)" if unset else ""
        raise DatasetError(f"dataset folder '{root}' does not exist{hint}")
    if cfg.layout == "msd":
        from semiseg.data.msd import MSDLayout

        layout: Layout = MSDLayout(root)
    elif cfg.layout == "h5":
        from semiseg.data.h5layout import H5Layout

        layout = H5Layout(root, cfg.h5, num_classes=cfg.num_classes, class_names=cfg.class_names)
    elif cfg.layout == "folder2d":
        from semiseg.data.folder2d import Folder2DLayout

        layout = Folder2DLayout(root, cfg.folder2d, num_classes=cfg.num_classes, class_names=cfg.class_names)
    else:  # pragma: no cover - the schema restricts the value
        raise DatasetError(f"unknown layout '{cfg.layout}'")
    return layout
