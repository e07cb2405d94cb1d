"""In-memory case records shared by every layout.

Arrays use one canonical order whatever the file format: images are
``(C, Z, Y, X)`` and labels ``(Z, Y, X)``; a 2D image is a volume with one
slice (``Z = 1``). NIfTI arrays (x, y, z) are transposed on read and back on
write, so predictions land in the input's geometry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CaseRef:
    """Where a case lives, before anything is read.

    ``pool`` is what the dataset says of it: ``train`` (labeled training case),
    ``unlabeled``, ``val`` or ``test`` (labeled cases the layout sets aside).
    ``subject`` groups cases of one patient (e.g. two ACDC frames), so splits never separate them.
    """

    case_id: str
    subject: str
    pool: str
    image_files: tuple[Path, ...]
    label_file: Path | None = None
    extra: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.extra).get(key, default)

    @property
    def has_label(self) -> bool:
        return self.label_file is not None


@dataclass
class Case:
    """A loaded case: ``image`` (C, Z, Y, X) float32, ``label`` (Z, Y, X) int16 or None."""

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    subject: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    """``affine``/``header`` (NIfTI), ``source`` (files), ``fov`` (Z, Y, X bool), ``is_2d``,
    and after preprocessing ``original_shape``, ``crop_box``, ``original_spacing``."""

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape[1:])

    @property
    def in_channels(self) -> int:
        return int(self.image.shape[0])
