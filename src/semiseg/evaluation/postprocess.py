"""Label-map clean-up: keep the largest connected component of each foreground class."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_component_per_class(labels: np.ndarray, num_classes: int, background: int = 0) -> np.ndarray:
    """Every foreground class keeps only its largest connected component (full connectivity);
    the removed voxels become ``background``. Works on 2D and 3D maps."""
    out = labels.copy()
    structure = ndimage.generate_binary_structure(labels.ndim, labels.ndim)
    for c in range(num_classes):
        if c == background:
            continue
        mask = labels == c
        if not mask.any():
            continue
        comp, n = ndimage.label(mask, structure=structure)
        if n <= 1:
            continue
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        out[mask & (comp != sizes.argmax())] = background
    return out
