import json

import nibabel as nib
import numpy as np
import pytest

from semiseg.config.schema import DataConfig
from semiseg.data.layout import open_layout
from semiseg.data.msd import MSDLayout, parse_dataset_json
from semiseg.data.verify import verify_dataset
from semiseg.errors import DatasetError
from tests.conftest import write_msd


def test_reads_cases_pools_channels_spacing_and_axis_order(tmp_path):
    root = write_msd(tmp_path / "ds", n_cases=3, channels=2, unlabeled=2, shape=(6, 10, 12), spacing=(3.0, 1.5, 0.5))
    layout = MSDLayout(root)
    pools = sorted((r.case_id, r.pool) for r in layout.refs())
    assert pools == [("case00", "train"), ("case01", "train"), ("case02", "train"), ("unl00", "unlabeled"), ("unl01", "unlabeled")]
    assert layout.num_classes == 3 and layout.class_names == ["background", "outer", "core"] and layout.in_channels == 2
    assert layout.regions == {"whole": [1, 2]}
    case = layout.load(layout.refs()[0])
    assert case.image.shape == (2, 6, 10, 12)  # (C, Z, Y, X)
    assert case.spacing == (3.0, 1.5, 0.5)
    np.testing.assert_allclose(case.image[1], case.image[0] + 1, rtol=1e-6)
    on_disk = np.asarray(nib.load(str(root / "labelsTr" / "case00.nii.gz")).dataobj)
    np.testing.assert_array_equal(case.label, on_disk.transpose(2, 1, 0))
    unl = layout.load([r for r in layout.refs() if r.pool == "unlabeled"][0])
    assert unl.label is None


def test_msd_v1_dataset_json(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "LV"}, "modality": {"0": "MRI"}}))
    meta = parse_dataset_json(tmp_path / "dataset.json")
    assert meta["labels"] == {"background": 0, "LV": 1} and meta["channels"] == ["MRI"]


def test_verify_clean_dataset_passes(msd_dataset):
    report = verify_dataset(MSDLayout(msd_dataset))
    assert report.ok, report.problems
    assert report.pools == {"train": 8, "unlabeled": 3}


def _save(arr, path, zooms=(1.0, 1.0, 2.0)):
    nib.save(nib.Nifti1Image(arr, np.diag(list(zooms) + [1.0])), str(path))


def test_verify_lists_every_problem_at_once(tmp_path):
    root = write_msd(tmp_path / "ds", n_cases=7, shape=(4, 8, 8), spacing=(2.0, 1.0, 1.0))
    lab = root / "labelsTr"
    img = root / "imagesTr"
    # 0: shape mismatch
    _save(np.zeros((8, 8, 5), np.uint8), lab / "case00.nii.gz")
    # 1: 0/255 mask
    m = np.zeros((8, 8, 4), np.uint8)
    m[2:4, 2:4] = 255
    _save(m, lab / "case01.nii.gz")
    # 2: non-integer labels
    _save(np.full((8, 8, 4), 0.5, np.float32), lab / "case02.nii.gz")
    # 3: NaN in image
    bad = np.zeros((8, 8, 4), np.float32)
    bad[0, 0, 0] = np.nan
    _save(bad, img / "case03_0000.nii.gz")
    # 4: missing label
    (lab / "case04.nii.gz").unlink()
    # 5: spacing mismatch
    _save(np.zeros((8, 8, 4), np.uint8), lab / "case05.nii.gz", zooms=(1.0, 1.0, 3.0))
    # 6: background only -> warning
    _save(np.zeros((8, 8, 4), np.uint8), lab / "case06.nii.gz", zooms=(1.0, 1.0, 2.0))
    # extra channel file
    _save(np.zeros((8, 8, 4), np.float32), img / "case06_0001.nii.gz")
    report = verify_dataset(MSDLayout(root))
    text = "\n".join(report.problems)
    assert "case00_0000.nii.gz has shape (4, 8, 8) but label" in text and "case00.nii.gz has shape (5, 8, 8)" in text
    assert "case01.nii.gz: label values [255]" in text and "0/255" in text
    assert "case02.nii.gz: label holds non-integer values" in text
    assert "case03_0000.nii.gz: image contains 1 NaN/Inf" in text
    assert "no label file" in text and "case04.nii.gz" in text
    assert "case05.nii.gz has spacing (3.0, 1.0, 1.0)" in text
    assert "case06: 2 channel files but dataset.json names 1 channels" in text
    assert any("case06.nii.gz: label is background only" in w for w in report.warnings)
    with pytest.raises(DatasetError) as exc:
        report.raise_if_failed(root)
    assert exc.value.exit_code == 3 and len(exc.value.problems) == len(report.problems) >= 7


def test_missing_dataset_json_and_folder(tmp_path):
    with pytest.raises(DatasetError, match="dataset.json is missing"):
        MSDLayout(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        open_layout(DataConfig(root=str(tmp_path / "nope")))


def test_unreadable_reasons_say_what_is_wrong(tmp_path, monkeypatch):
    """Issue 11, defect 7: permission denied, a link loop and a missing file each get their own words."""
    import os

    from semiseg.data.io import unreadable_reason

    f = tmp_path / "a.nii.gz"
    f.write_bytes(b"x")
    monkeypatch.setattr(os, "access", lambda p, mode: False)  # root reads everything; simulate a 0000 file
    assert "permission denied" in unreadable_reason(f, OSError("boom"))
    monkeypatch.undo()
    os.symlink(tmp_path / "l2", tmp_path / "l1")
    os.symlink(tmp_path / "l1", tmp_path / "l2")
    assert unreadable_reason(tmp_path / "l1") == "a symbolic link loop"
    assert unreadable_reason(tmp_path / "missing.nii.gz") == "the file does not exist"
    assert unreadable_reason(f, ValueError("")) == "cannot read it (ValueError)"


def test_verify_accepts_the_builtin_dataset_name(capsys):
    from semiseg.cli import main

    assert main(["verify", "builtin:synthbrain"]) == 0
    assert "ok: every check passed" in capsys.readouterr().out


def test_modality_as_a_list_names_the_channels_in_order(tmp_path):
    """Issue 11, defect 4: ``"modality": ["CT"]`` was a traceback; a list is one name per channel."""
    import json

    from semiseg.data.msd import parse_dataset_json

    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1}, "modality": ["CT", "PET"]}))
    assert parse_dataset_json(tmp_path / "dataset.json")["channels"] == ["CT", "PET"]
