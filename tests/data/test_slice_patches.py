"""data.slice_mode: patch — 2D crops of full-resolution slices for training, a 2D sliding window for prediction."""

import numpy as np
import pytest
import torch

from semiseg.config.schema import EvalConfig
from semiseg.data.case import Case
from semiseg.data.datasets import PatchDataset
from semiseg.evaluation.inference import predict_probabilities


def volume_case(shape=(5, 40, 48), channels=2):
    rng = np.random.default_rng(0)
    label = np.zeros(shape, np.int16)
    label[2, 30:34, 40:44] = 1  # a small foreground in one slice
    return Case("v", rng.random((channels, *shape), dtype=np.float32), label, (1.0, 1.0, 1.0), "v", {})


@pytest.mark.parametrize("axis,expected", [(0, (16, 24)), (2, (5, 16))])
def test_slice_patches_are_2d_crops_along_the_slicing_axis(axis, expected):
    case = volume_case()
    patch = [16, 24] if axis == 0 else [5, 16]
    ds = PatchDataset([case], patch, True, 1.0, None, slice_axis=axis)
    s = ds[(0, 3)]
    assert tuple(s["image"].shape) == (2, *expected) and tuple(s["label"].shape) == expected
    if axis == 0:  # foreground over-sampling finds the one labeled slice
        assert int(s["label"].sum()) > 0
        # the crop is the volume's content, not a resampled copy
        img = case.image[:, 2]
        crop = s["image"][0].numpy()
        hits = [(y, x) for y in range(40 - 16 + 1) for x in range(48 - 24 + 1)
                if np.array_equal(img[0, y : y + 16, x : x + 24], crop)]
        assert len(hits) == 1
    unl = PatchDataset([case], patch, False, 0.0, None, slice_axis=axis)[(0, 1)]
    assert "label" not in unl


class Pointwise(torch.nn.Module):
    def forward(self, x):
        return torch.cat([x[:, :1], 2 * x[:, 1:2]], dim=1)


def test_patch_mode_prediction_keeps_full_resolution_and_equals_a_pointwise_net():
    case = volume_case()
    probs = predict_probabilities(Pointwise(), case.image, 2, [16, 16], EvalConfig(), slice_axis=0, slice_mode="patch")
    assert probs.shape == (2, 5, 40, 48)
    x = torch.from_numpy(case.image)
    expected = torch.softmax(torch.stack([x[0], 2 * x[1]]), dim=0)
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-5)
