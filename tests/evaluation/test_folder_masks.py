"""``semiseg evaluate PRED GT`` reads masks with the training mapping (issue 11, defect 2)."""

import numpy as np
import pytest
from PIL import Image

from semiseg.errors import DatasetError
from semiseg.evaluation.folders import evaluate_folders


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)


def test_0_255_png_masks_are_one_class_not_255(tmp_path):
    ref = np.zeros((16, 16))
    ref[4:10, 4:10] = 255
    _png(tmp_path / "gt" / "a.png", ref)
    _png(tmp_path / "pred" / "a.png", np.zeros((16, 16)))  # all background: Dice 0, not 0.996 over 255 "classes"
    res = evaluate_folders(tmp_path / "pred", tmp_path / "gt", tmp_path / "out", ["dice"])
    assert res["classes"] == ["1"]
    assert [r["dice"] for r in res["rows"]] == [0.0]
    _png(tmp_path / "pred" / "a.png", ref)  # what `semiseg predict` writes for a binary model
    assert evaluate_folders(tmp_path / "pred", tmp_path / "gt", tmp_path / "out", ["dice"])["rows"][0]["dice"] == 1.0


def test_masks_that_are_not_class_indices_are_an_error(tmp_path):
    img = np.arange(256).reshape(16, 16)  # an intensity image given as a mask
    _png(tmp_path / "gt" / "a.png", img)
    _png(tmp_path / "pred" / "a.png", img)
    with pytest.raises(DatasetError, match="a.png: mask values .* are not class indices"):
        evaluate_folders(tmp_path / "pred", tmp_path / "gt", tmp_path / "out", ["dice"])
