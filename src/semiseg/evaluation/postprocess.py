"""Label-map refinement: the largest connected component of each class; a fully connected CRF."""

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


def dense_crf(probs: np.ndarray, image: np.ndarray, iterations: int = 5, gaussian_sxy: float = 3.0,
              gaussian_compat: float = 3.0, bilateral_sxy: float = 10.0, bilateral_schan: float = 0.1,
              bilateral_compat: float = 5.0) -> np.ndarray:
    """Fully connected CRF (Krähenbühl & Koltun 2011) on a 2D or 3D probability map -> label map.

    Unary: ``-log p``; pairwise: a Gaussian smoothness kernel (``gaussian_sxy`` voxels) and a
    bilateral appearance kernel (``bilateral_sxy`` voxels, ``bilateral_schan`` in image intensity
    units, e.g. 0.1 for images scaled to [0, 1]), Potts compatibilities. ``probs`` is (C, *S) and
    ``image`` (*S) or (Ch, *S). Needs the ``crf`` extra (``pip install pydensecrf2``).
    """
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import create_pairwise_bilateral, create_pairwise_gaussian, unary_from_softmax
    except ImportError:  # pragma: no cover - depends on the optional extra
        from semiseg.errors import ConfigError

        raise ConfigError("the dense CRF needs pydensecrf2: pip install 'semiseg[crf]' (or pip install pydensecrf2)") from None
    c, shape = probs.shape[0], probs.shape[1:]
    img = image if image.ndim == len(shape) + 1 else image[None]
    crf = dcrf.DenseCRF(int(np.prod(shape)), c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs.astype(np.float32))))
    dims = len(shape)
    crf.addPairwiseEnergy(create_pairwise_gaussian((gaussian_sxy,) * dims, shape), compat=gaussian_compat)
    bil = create_pairwise_bilateral((bilateral_sxy,) * dims, (bilateral_schan,) * img.shape[0],
                                    np.ascontiguousarray(img.astype(np.float32)), chdim=0)
    crf.addPairwiseEnergy(bil, compat=bilateral_compat)
    q = np.array(crf.inference(iterations)).reshape((c, *shape))
    return q.argmax(0).astype(np.int16)
