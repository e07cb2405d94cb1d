import h5py
import numpy as np
import pytest
from PIL import Image

from semiseg.config.schema import Folder2DConfig, H5LayoutConfig
from semiseg.data.folder2d import Folder2DLayout
from semiseg.data.h5layout import H5Layout
from semiseg.data.verify import verify_dataset
from semiseg.errors import DatasetError


def _h5(path, image, label):
    with h5py.File(path, "w") as h:
        h["image"] = image
        h["label"] = label


def make_acdc_like(root, rng):
    (root / "data").mkdir(parents=True)
    vols = {}
    for p in range(1, 5):
        for f in (1, 2):
            case = f"patient{p:03d}_frame{f:02d}"
            img = rng.random((3, 8, 8)).astype(np.float32)
            lab = rng.integers(0, 4, (3, 8, 8)).astype(np.uint8)
            vols[case] = (img, lab)
            if p <= 2:  # training: slices only, numbered from 1
                for z in range(3):
                    _h5(root / "data" / f"{case}_slice_{z + 1}.h5", img[z], lab[z])
            else:
                _h5(root / "data" / f"{case}.h5", img, lab)
    (root / "train.list").write_text("\n".join(f"patient{p:03d}_frame{f:02d}" for p in (1, 2) for f in (1, 2)))
    (root / "val.list").write_text("patient003_frame01\npatient003_frame02\n")
    (root / "test.list").write_text("patient004_frame01\npatient004_frame02\n")
    return vols


def test_h5_acdc_layout_rebuilds_volumes_and_groups_patients(tmp_path):
    vols = make_acdc_like(tmp_path, np.random.default_rng(0))
    layout = H5Layout(tmp_path, H5LayoutConfig(), num_classes=4, class_names=["bg", "RV", "Myo", "LV"])
    refs = {r.case_id: r for r in layout.refs()}
    assert {r.pool for r in refs.values()} == {"train", "val", "test"}
    assert refs["patient001_frame02"].subject == "patient001"
    for cid in ("patient001_frame01", "patient004_frame02"):
        case = layout.load(refs[cid])
        np.testing.assert_array_equal(case.image[0], vols[cid][0])
        np.testing.assert_array_equal(case.label, vols[cid][1])
    assert verify_dataset(layout).ok


def test_h5_slices_sorted_numerically(tmp_path):
    (tmp_path / "data").mkdir()
    for z in range(12):
        _h5(tmp_path / "data" / f"c_slice_{z}.h5", np.full((4, 4), z, np.float32), np.zeros((4, 4), np.uint8))
    (tmp_path / "train.list").write_text("c\n")
    layout = H5Layout(tmp_path, H5LayoutConfig(val_list=None, test_list=None), 2, None)
    case = layout.load(layout.refs()[0])
    assert case.image[0, :, 0, 0].tolist() == list(range(12))


def test_h5_left_atrium_variant_and_missing_files(tmp_path):
    (tmp_path / "data" / "caseA").mkdir(parents=True)
    _h5(tmp_path / "data" / "caseA" / "mri_norm2.h5", np.zeros((4, 4, 4), np.float32), np.ones((4, 4, 4), np.uint8))
    (tmp_path / "train.list").write_text("caseA\ncaseB\n")
    layout = H5Layout(tmp_path, H5LayoutConfig(case_file="mri_norm2.h5", val_list=None, test_list="test.list", subject_regex=""), 2, None)
    assert [r.case_id for r in layout.refs()] == ["caseA"]
    problems = "\n".join(layout.structure_problems())
    assert "no h5 file for case 'caseB'" in problems and "test.list: list file is missing" in problems
    assert layout.load(layout.refs()[0]).image.shape == (1, 4, 4, 4)


def test_h5_needs_num_classes(tmp_path):
    with pytest.raises(DatasetError, match="num_classes"):
        H5Layout(tmp_path, H5LayoutConfig(), None, None)


def make_drive_like(root):
    for sub in ("images", "manual", "fov", "unl"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in (21, 22, 23):
        Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(root / "images" / f"{i}_training.tif")
        m = np.zeros((10, 12), np.uint8)
        m[3:6, 4:8] = 255
        Image.fromarray(m).save(root / "manual" / f"{i}_manual1.gif")
        fov = np.zeros((10, 12), np.uint8)
        fov[1:9, 1:11] = 255
        Image.fromarray(fov).save(root / "fov" / f"{i}_training_mask.gif")
    Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(root / "unl" / "99_test.tif")


def test_folder2d_pairs_by_id_maps_values_and_reads_fov(tmp_path):
    make_drive_like(tmp_path)
    cfg = Folder2DConfig(images="images", labels="manual", fov="fov", unlabeled="unl", id_regex=r"^(\d+)_", label_values={0: 0, 255: 1})
    layout = Folder2DLayout(tmp_path, cfg, None, None)
    refs = {r.case_id: r for r in layout.refs()}
    assert set(refs) == {"21", "22", "23", "unlabeled_99"}
    case = layout.load(refs["21"])
    assert case.image.shape == (3, 1, 10, 12) and case.label.shape == (1, 10, 12)
    assert set(np.unique(case.label)) == {0, 1} and case.label.sum() == 12
    assert case.meta["fov"].shape == (1, 10, 12) and case.meta["fov"].sum() == 80
    assert verify_dataset(layout).ok


def test_folder2d_binary_0_255_masks_are_binary_and_other_values_need_a_mapping(tmp_path):
    """Issue 11, defect 2: one mapping of stored mask values for training, verify, predict and evaluate."""
    make_drive_like(tmp_path)
    cfg = Folder2DConfig(images="images", labels="manual", id_regex=r"^(\d+)_")
    layout = Folder2DLayout(tmp_path, cfg, None, None)
    assert verify_dataset(layout).ok
    case = layout.load(next(r for r in layout.refs() if r.case_id == "21"))
    assert set(np.unique(case.label)) == {0, 1} and case.label.sum() == 12
    m = np.zeros((10, 12), np.uint8)
    m[2:4, 2:4] = 100
    Image.fromarray(m).save(tmp_path / "manual" / "22_manual1.gif")
    report = verify_dataset(Folder2DLayout(tmp_path, cfg, None, None))
    assert any("22_manual1.gif" in p and "[100]" in p and "label_values" in p for p in report.problems)


def test_rgb_masks_with_colours_are_an_error_not_channel_zero(tmp_path):
    from semiseg.data.io import read_mask2d

    m = np.zeros((6, 6, 3), np.uint8)
    m[1:3, 1:3] = (255, 0, 0)
    Image.fromarray(m).save(tmp_path / "rgb.png")
    with pytest.raises(DatasetError, match="rgb.png: an RGB mask with colours"):
        read_mask2d(tmp_path / "rgb.png")
    Image.fromarray(np.repeat(m[..., :1], 3, axis=2)).save(tmp_path / "grey_as_rgb.png")
    assert read_mask2d(tmp_path / "grey_as_rgb.png").max() == 255


def test_palette_masks_are_read_as_indices(tmp_path):
    """An indexed GIF whose palette draws index 1 in grey 253 (DRIVE's second observer): indices or greys on request."""
    import numpy as np
    from PIL import Image

    from semiseg.data.io import read_mask2d

    idx = np.zeros((6, 5), np.uint8)
    idx[2:4, 1:3] = 1
    im = Image.fromarray(idx, mode="P")
    im.putpalette([3, 3, 3, 253, 253, 253] + [0] * 762)
    im.save(tmp_path / "m.gif")
    np.testing.assert_array_equal(read_mask2d(tmp_path / "m.gif", palette="index"), idx)
    np.testing.assert_array_equal(read_mask2d(tmp_path / "m.gif"), np.where(idx == 1, 253, 3))
    Image.fromarray(idx.astype(bool)).save(tmp_path / "b.png")  # 1-bit: 0/255
    assert set(np.unique(read_mask2d(tmp_path / "b.png"))) == {0, 255}
