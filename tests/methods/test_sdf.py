"""The SASSNet/DTC normalised signed distance map, against scipy's distance transform and scikit-image's boundaries."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from semiseg.methods.sdf import inner_boundary, level_set_transform, normalized_sdf, sdf_targets


def _mask(shape, box):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in box)] = True
    return m


@pytest.mark.parametrize("shape, box", [((12, 14), [(3, 8), (4, 11)]), ((8, 9, 10), [(2, 6), (0, 5), (3, 9)])])
def test_inner_boundary_equals_scikit_image(shape, box):
    from skimage.segmentation import find_boundaries

    m = _mask(shape, box)
    np.testing.assert_array_equal(inner_boundary(m), find_boundaries(m, mode="inner"))  # box touching the edge included


@pytest.mark.parametrize("shape, box", [((12, 14), [(3, 8), (4, 11)]), ((8, 9, 10), [(2, 6), (1, 5), (3, 9)])])
def test_sdf_is_the_papers_formula_with_the_right_signs(shape, box):
    m = _mask(shape, box)
    sdf = normalized_sdf(m)
    d_in, d_out = ndimage.distance_transform_edt(m), ndimage.distance_transform_edt(~m)
    expected = (d_out - d_out.min()) / (d_out.max() - d_out.min()) - (d_in - d_in.min()) / (d_in.max() - d_in.min())
    expected[inner_boundary(m)] = 0
    np.testing.assert_allclose(sdf, expected, rtol=1e-6, atol=1e-6)
    assert (sdf[m & ~inner_boundary(m)] < 0).all() and (sdf[~m] > 0).all()  # negative inside, positive outside
    assert sdf.min() == pytest.approx(-1.0) and sdf.max() == pytest.approx(1.0)
    assert sdf[inner_boundary(m)].tolist() == [0.0] * int(inner_boundary(m).sum())


def test_sdf_of_empty_and_full_masks_is_zero_and_targets_are_per_class():
    assert not normalized_sdf(np.zeros((5, 5), bool)).any() and not normalized_sdf(np.ones((5, 5), bool)).any()
    labels = torch.zeros(2, 10, 10, dtype=torch.long)
    labels[0, 2:5, 2:5] = 1
    labels[1, 5:9, 1:4] = 2
    t = sdf_targets(labels, 3)
    assert t.shape == (2, 2, 10, 10)
    np.testing.assert_allclose(t[0, 0].numpy(), normalized_sdf(labels[0].numpy() == 1))
    assert not t[0, 1].any() and not t[1, 0].any()


def test_level_set_transform_is_a_steep_heaviside():
    sdf = torch.tensor([-0.01, 0.0, 0.01])
    torch.testing.assert_close(level_set_transform(sdf), torch.sigmoid(-1500 * sdf))
    assert level_set_transform(sdf)[0] > 0.99 and level_set_transform(sdf)[1] == 0.5 and level_set_transform(sdf)[2] < 0.01
