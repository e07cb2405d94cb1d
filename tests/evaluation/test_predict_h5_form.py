"""A model trained on an h5 release (LA: (x, y, z) arrays, z-scored scans; ACDC: (z, y, x), min-max) sees a new
NIfTI scan as it saw its training files: ``semiseg predict`` brings the scan into the files' axis order and
intensity form (``data.h5.axes`` / ``data.h5.intensity``) and writes the label map in the scan's own geometry."""

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

from semiseg.config import load_config
from semiseg.config.schema import H5LayoutConfig, PreprocessingConfig
from semiseg.data.case import Case
from semiseg.data.h5layout import as_stored, stored_axes, stored_intensity, to_stored_order
from semiseg.data.preprocessing import normalize_intensity

LA_DIR = "2018LA_Seg_Training Set"


def test_auto_resolves_to_each_release_form():
    la, acdc = H5LayoutConfig(case_file="mri_norm2.h5"), H5LayoutConfig()
    assert (stored_axes(la), stored_intensity(la)) == ("xyz", "zscore")  # UA-MT: pynrrd's (x, y, z), z-scored scans
    assert (stored_axes(acdc), stored_intensity(acdc)) == ("zyx", "minmax")  # SSL4MIS: SimpleITK's (z, y, x), min-max
    own = H5LayoutConfig(case_file="x.h5", axes="zyx", intensity="as_read")
    assert (stored_axes(own), stored_intensity(own)) == ("zyx", "as_read")


def test_as_stored_on_a_hand_made_scan():
    image = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) * 2.0 + 10.0  # (C, Z, Y, X) as read from NIfTI
    case = Case("c", image, None, (3.0, 2.0, 1.0), "c", {"source": "c.nii.gz"})
    la = as_stored(case, H5LayoutConfig(case_file="mri_norm2.h5"))
    assert la.image.shape == (1, 4, 3, 2) and la.spacing == (1.0, 2.0, 3.0)
    z = (image - image.mean()) / image.std()
    assert np.allclose(la.image, z.transpose(0, 3, 2, 1), atol=1e-6)
    assert la.image[0, 3, 2, 1] == pytest.approx(z[0, 1, 2, 3], abs=1e-6)  # voxel (z=1, y=2, x=3) at [x, y, z]
    acdc = as_stored(case, H5LayoutConfig())
    assert acdc.image.shape == image.shape and acdc.spacing == case.spacing
    assert acdc.image.min() == 0.0 and acdc.image.max() == 1.0 and acdc.image[0, 0, 0, 1] == pytest.approx(2.0 / 46.0)
    assert np.array_equal(as_stored(case, H5LayoutConfig(intensity="as_read")).image, image)
    flat = Case("p", image[:, :1], None, (1.0, 1.0, 1.0), "p", {"is_2d": True})
    assert as_stored(flat, H5LayoutConfig(case_file="mri_norm2.h5")) is flat  # a 2D image is left as it is
    lab = np.arange(24).reshape(2, 3, 4)
    assert np.array_equal(to_stored_order(to_stored_order(lab, H5LayoutConfig(axes="xyz")), H5LayoutConfig(axes="xyz")), lab)


def _la_release_like(root: Path, shape=(24, 20, 16), n_train=4, n_test=1) -> dict[str, np.ndarray]:
    """Cases made as UA-MT made the LA release: a raw scan indexed (x, y, z) (pynrrd), z-scored over the scan."""
    rng = np.random.default_rng(0)
    raw = {}
    for i in range(n_train + n_test):
        x, y, z = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
        label = ((((x - 11) / 6) ** 2 + ((y - 9) / 4) ** 2 + ((z - 8) / 3) ** 2) < 1).astype(np.uint8)
        scan = (300.0 + 400.0 * label + 60.0 * x + rng.normal(0, 40, shape)).astype(np.float32)  # a gradient along x
        stored = normalize_intensity(scan[None], PreprocessingConfig(normalize="zscore"))[0]
        (root / LA_DIR / f"C{i}").mkdir(parents=True)
        with h5py.File(root / LA_DIR / f"C{i}" / "mri_norm2.h5", "w") as h:
            h["image"], h["label"] = stored, label
        raw[f"C{i}"] = scan
    (root / "train.list").write_text("\n".join(f"C{i}" for i in range(n_train)) + "\n")
    (root / "test.list").write_text("\n".join(f"C{i}" for i in range(n_train, n_train + n_test)) + "\n")
    return raw


def test_a_new_nifti_scan_reaches_an_la_model_as_its_training_files_did(tmp_path, monkeypatch):
    from semiseg.data.layout import open_layout
    from semiseg.engine.trainer import Trainer
    from semiseg.evaluation.export import export_model
    from semiseg.evaluation.predict import predict_path, read_input_case
    from semiseg.evaluation.run_eval import load_model, predict_case

    raw = _la_release_like(tmp_path / "la")
    cfg = load_config("la3d_supervised", [f"data.root={tmp_path / 'la'}", "data.patch_size=[16,16,16]",
                                          "network.kwargs={n_filters: 2}", "train.iterations=3", "train.progress=off",
                                          "split.labeled=2", "train.checkpoint_every=3", "train.val_every=3"])
    Trainer(cfg, tmp_path / "run").fit()
    model = load_model(tmp_path / "run", "cpu")
    layout = open_layout(model.cfg.data)
    ref = next(r for r in layout.refs() if r.case_id == "C4")
    label_h5, probs_h5 = predict_case(model, layout.load(ref))  # the release's own file, as the test set is scored

    (tmp_path / "scans").mkdir()
    affine = np.diag([0.625, 0.625, 0.625, 1.0])
    nib.save(nib.Nifti1Image(raw["C4"], affine), tmp_path / "scans" / "C4.nii.gz")  # the scan as acquired, (x, y, z)
    case = read_input_case("C4", [tmp_path / "scans" / "C4.nii.gz"], model.cfg.data)
    label_nii, probs_nii = predict_case(model, case)
    assert torch.allclose(probs_nii, probs_h5, atol=1e-5)  # the same input to the network, voxel by voxel

    from semiseg.data.io import read_volume  # the reading this replaces: (z, y, x) order, raw intensities
    arr, spacing, meta = read_volume(tmp_path / "scans" / "C4.nii.gz")
    naive = predict_case(model, Case("C4", arr[None].astype(np.float32), None, spacing, "C4", meta))[1]
    assert naive.shape != probs_h5.shape or not torch.allclose(naive, probs_h5, atol=1e-3)  # the test can fail

    predict_path(tmp_path / "run", tmp_path / "scans", tmp_path / "out", say=lambda m: None)
    written = nib.load(tmp_path / "out" / "C4.nii.gz")
    assert np.allclose(written.affine, affine) and written.shape == raw["C4"].shape
    assert np.array_equal(np.asarray(written.dataobj), label_h5)  # in the scan's own (x, y, z) geometry

    blobs = np.zeros_like(label_h5)  # --largest-component: a 27-voxel blob and a 1-voxel island
    blobs[2:5, 2:5, 2:5], blobs[20, 15, 10] = 1, 1
    import semiseg.evaluation.predict as predict_module

    monkeypatch.setattr(predict_module, "predict_case", lambda m, c, d: (blobs.copy(), None))
    predict_path(tmp_path / "run", tmp_path / "scans", tmp_path / "lcc", say=lambda m: None, postprocess="largest_component")
    kept = np.asarray(nib.load(tmp_path / "lcc" / "C4.nii.gz").dataobj)
    assert kept.sum() == 27 and kept[20, 15, 10] == 0
    monkeypatch.undo()

    meta_json = (export_model(tmp_path / "run", tmp_path / "export")["preprocessing"]).read_text()
    assert "(C, X, Y, Z)" in meta_json and "zscore per volume" in meta_json


def test_an_acdc_model_gets_a_raw_nifti_volume_min_max_scaled(tmp_path):
    """SSL4MIS's ACDC files are min-max scaled per volume and the presets do not normalise again: a raw scan (here
    the file's volume x 900 + 50) must reach the network as the file did."""
    from semiseg.evaluation.predict import read_input_case

    cfg = load_config("acdc2d_supervised", [])
    vol = np.random.default_rng(1).random((6, 20, 24)).astype(np.float32)
    vol = (vol - vol.min()) / (vol.max() - vol.min())
    nib.save(nib.Nifti1Image((vol * 900 + 50).transpose(2, 1, 0), np.diag([1.4, 1.4, 8.0, 1.0])), tmp_path / "p.nii.gz")
    case = read_input_case("p", [tmp_path / "p.nii.gz"], cfg.data)
    assert case.image.shape == (1, 6, 20, 24) and case.spacing == (8.0, pytest.approx(1.4), pytest.approx(1.4))
    assert np.allclose(case.image[0], vol, atol=1e-5)
