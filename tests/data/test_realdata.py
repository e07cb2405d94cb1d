"""Checks on the real datasets in ../shared/data (skipped when the folder is absent)."""

import time

import numpy as np
import pytest

from semiseg.config import load_config
from semiseg.config.schema import Folder2DConfig
from semiseg.data.folder2d import Folder2DLayout
from semiseg.data.layout import open_layout
from semiseg.data.splits import make_splits
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.realdata
ACDC = SHARED_DATA / "acdc"
DRIVE = SHARED_DATA / "drive"


@pytest.mark.skipif(not ACDC.is_dir(), reason=f"{ACDC} not present")
def test_acdc_h5_layout_and_protocol_split():
    cfg = load_config("acdc2d_supervised", [f"data.root={ACDC}"])
    layout = open_layout(cfg.data)
    assert layout.structure_problems() == []
    refs = layout.refs()
    pools = {p: [r for r in refs if r.pool == p] for p in ("train", "val", "test")}
    assert [len(pools[p]) for p in ("train", "val", "test")] == [140, 20, 40]
    assert len({r.subject for r in pools["train"]}) == 70
    splits = make_splits(refs, cfg.split)
    assert sorted({splits.subjects[c] for c in splits.labeled}) == ["patient003", "patient004", "patient005"]  # first three of train.list, sorted
    assert len(splits.labeled) == 6 and len(splits.unlabeled) == 134 and len(splits.test) == 40
    by_id = {r.case_id: r for r in refs}
    vol = layout.load(by_id["patient003_frame01"])  # rebuilt from its slices
    assert vol.image.shape[1] == 10 and vol.image.shape[0] == 1
    assert set(np.unique(vol.label)) <= {0, 1, 2, 3} and 0.0 <= vol.image.min() and vol.image.max() <= 1.0
    test_vol = layout.load(by_id[splits.test[0]])
    assert test_vol.image.ndim == 4 and test_vol.label.shape == test_vol.image.shape[1:]


@pytest.mark.skipif(not DRIVE.is_dir(), reason=f"{DRIVE} not present")
def test_drive_folder_layout():
    cfg = Folder2DConfig(images="training/images", labels="training/1st_manual", fov="training/mask",
                         test_images="test/images", test_labels="test/1st_manual", test_fov="test/mask",
                         id_regex=r"^(\d+)_", label_values={0: 0, 255: 1})
    layout = Folder2DLayout(DRIVE, cfg, None, None)
    assert layout.structure_problems() == []
    refs = layout.refs()
    assert sum(r.pool == "train" for r in refs) == 20 and sum(r.pool == "test" for r in refs) == 20
    case = layout.load(refs[0])
    assert case.image.shape == (3, 1, 584, 565)
    frac = case.label.mean()
    assert 0.05 < frac < 0.15  # vessels are about 9% of pixels
    assert case.meta["fov"].mean() > 0.5


@pytest.mark.skipif(not DRIVE.is_dir(), reason=f"{DRIVE} not present")
def test_drive_preset_split_and_patch_sampling():
    """The DRIVE preset: 4 validation, 2 labeled and 14 unlabeled training images, 20 test; 128x128 crops."""
    from semiseg.data.datasets import PatchDataset
    from semiseg.data.preprocessing import preprocess_case

    cfg = load_config("drive2d_equireg_semi", [f"data.root={DRIVE}"])
    layout = open_layout(cfg.data)
    splits = make_splits(layout.refs(), cfg.split)
    assert (len(splits.val), len(splits.labeled), len(splits.unlabeled), len(splits.test)) == (4, 2, 14, 20)
    by_id = {r.case_id: r for r in layout.refs()}
    case = preprocess_case(layout.load(by_id[splits.labeled[0]]), cfg.data.preprocessing)
    sample = PatchDataset([case], cfg.data.patch_size, True, 0.0, None, slice_axis=0)[(0, 1)]
    assert tuple(sample["image"].shape) == (3, 128, 128) and tuple(sample["label"].shape) == (128, 128)
