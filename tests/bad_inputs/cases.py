"""Broken datasets and configurations, generated tiny, across the three layouts (issue 11).

Each case is a :class:`Case`: a function that breaks a freshly written dataset (or writes a broken
config) under ``root`` and returns the command line to run, the expected exit code and fragments the
message must contain (the file and the problem). ``expect_exit=0`` cases are warnings: the command
succeeds (``verify``) and the warning names the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import nibabel as nib
import numpy as np
from PIL import Image

from tests.conftest import write_msd

SHAPE = (6, 16, 16)


@dataclass
class Case:
    name: str
    layout: str
    build: Callable[[Path], tuple[list[str], Path]]
    """Breaks a dataset under the given folder; returns (command line, the file or folder the message must name)."""
    exit_code: int
    fragments: tuple[str, ...] = ()
    warning: bool = False
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------ base datasets and commands
def msd(root: Path, **kw) -> Path:
    return write_msd(root / "ds", n_cases=kw.pop("n_cases", 5), shape=SHAPE, **kw)


def msd_train(ds: Path, run: Path, *extra: str) -> list[str]:
    return ["train", "synthbrain2d_supervised", f"data.root={ds}", "split.labeled=2", "split.val=1", "split.test=1",
            "data.patch_size=[16,16]", "network.kwargs={features: [4, 8]}", "train.iterations=2", "train.val_every=2",
            "train.progress=off", *extra, "--run-dir", str(run)]


def nii(path: Path, arr: np.ndarray, affine: np.ndarray | None = None) -> None:
    a = np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(arr).transpose(2, 1, 0), a), str(path))


def msd_case(fn: Callable[[Path], object], *extra: str, command: str = "train") -> Callable[[Path], tuple[list[str], Path]]:
    def build(root: Path) -> tuple[list[str], Path]:
        ds = msd(root)
        named = fn(ds)
        argv = msd_train(ds, root / "run", *extra) if command == "train" else ["verify", str(ds), *extra]
        return argv, Path(named) if named is not None else ds
    return build


def la(root: Path) -> Path:
    from tests.data.test_la_layout import make_la_like

    make_la_like(root / "la", n_train=4, n_test=1, shape=(16, 16, 16))
    return root / "la"


def la_train(ds: Path, run: Path, *extra: str) -> list[str]:
    return ["train", "la3d_supervised", f"data.root={ds}", "split.labeled=2", "data.patch_size=[16,16,16]",
            "network.kwargs={n_filters: 2}", "train.iterations=2", "train.val_every=2", "train.progress=off", *extra,
            "--run-dir", str(run)]


def la_case(fn: Callable[[Path], object], *extra: str) -> Callable[[Path], tuple[list[str], Path]]:
    def build(root: Path) -> tuple[list[str], Path]:
        ds = la(root)
        named = fn(ds)
        return la_train(ds, root / "run", *extra), Path(named) if named is not None else ds
    return build


def drive(root: Path) -> Path:
    from tests.data.test_h5_folder2d import make_drive_like

    make_drive_like(root / "drive")
    return root / "drive"


def drive_train(ds: Path, run: Path, *extra: str) -> list[str]:
    return ["train", "synthbrain2d_supervised", "data.layout=folder2d", f"data.root={ds}", "data.folder2d.images=images",
            "data.folder2d.labels=manual", r"data.folder2d.id_regex=^(\d+)_", "data.patch_size=[16,16]",
            "network.kwargs={features: [4, 8]}", "split.labeled=1", "split.val=1", "split.test=1", "split.unlabeled=none",
            "train.iterations=2", "train.val_every=2", "train.batch_size=2", "train.progress=off", *extra,
            "--run-dir", str(run)]


def drive_case(fn: Callable[[Path], object], *extra: str) -> Callable[[Path], tuple[list[str], Path]]:
    def build(root: Path) -> tuple[list[str], Path]:
        ds = drive(root)
        named = fn(ds)
        return drive_train(ds, root / "run", *extra), Path(named) if named is not None else ds
    return build


def config_case(named: str, *overrides: str) -> Callable[[Path], tuple[list[str], Path]]:
    """Bad overrides; the message must name ``named`` (the key, or the unknown name)."""
    def build(root: Path) -> tuple[list[str], Path]:
        return msd_train(msd(root), root / "run", *overrides), Path(named)
    return build


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------ MSD breakages
def _json(ds: Path, value: object) -> Path:
    (ds / "dataset.json").write_text(json.dumps(value))
    return ds / "dataset.json"


def _edit_json(ds: Path, **changes: object) -> Path:
    meta = json.loads((ds / "dataset.json").read_text())
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    return _json(ds, meta)


def _img(ds: Path, i: int = 1) -> Path:
    return ds / "imagesTr" / f"case{i:02d}_0000.nii.gz"


def _lab(ds: Path, i: int = 1) -> Path:
    return ds / "labelsTr" / f"case{i:02d}.nii.gz"


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def _relabel(ds: Path, arr: np.ndarray, i: int = 1, affine: np.ndarray | None = None) -> Path:
    img = nib.load(str(_lab(ds, i)))
    a = img.affine if affine is None else affine
    nib.save(nib.Nifti1Image(arr.transpose(2, 1, 0), a), str(_lab(ds, i)))
    return _lab(ds, i)


def _image_data(ds: Path, arr_fn: Callable[[np.ndarray], np.ndarray], i: int = 1) -> Path:
    img = nib.load(str(_img(ds, i)))
    data = np.asarray(img.dataobj).transpose(2, 1, 0)
    nib.save(nib.Nifti1Image(arr_fn(data).transpose(2, 1, 0), img.affine), str(_img(ds, i)))
    return _img(ds, i)


def _label_affine(ds: Path, change: Callable[[np.ndarray], None]) -> Path:
    img = nib.load(str(_lab(ds)))
    a = img.affine.copy()
    change(a)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), a), str(_lab(ds)))
    return _lab(ds)


def _flip_x(a: np.ndarray) -> None:
    a[0, 0] = -a[0, 0]


def _shift_origin(a: np.ndarray) -> None:
    a[:3, 3] += [5.0, 0.0, 0.0]


def _spacing(a: np.ndarray) -> None:
    a[2, 2] = 3.0


def _all_background(ds: Path) -> Path:
    for lab in sorted((ds / "labelsTr").iterdir()):
        img = nib.load(str(lab))
        nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), str(lab))
    return ds


def _both_names(ds: Path) -> Path:
    (ds / "imagesTr" / "case01.nii.gz").write_bytes(_img(ds).read_bytes())
    return ds / "imagesTr" / "case01.nii.gz"


def _second_channel(ds: Path, shape: tuple[int, ...]) -> Path:
    _edit_json(ds, channel_names={"0": "t1", "1": "t2"})
    for i in range(5):
        src = _img(ds, i)
        nii(ds / "imagesTr" / f"case{i:02d}_0001.nii.gz", np.zeros(shape if i == 1 else SHAPE, np.float32),
            nib.load(str(src)).affine)
    return ds / "imagesTr" / "case01_0001.nii.gz"


def _channel_gap(ds: Path) -> Path:
    _img(ds).rename(ds / "imagesTr" / "case01_0002.nii.gz")
    return ds / "imagesTr"


def _symlink_loop(ds: Path) -> Path:
    a, b = ds / "imagesTr" / "loop_a", ds / "imagesTr" / "loop_b"
    _img(ds).unlink()
    os.symlink(a, _img(ds))
    os.symlink(b, a)
    os.symlink(a, b)
    return _img(ds)


def _broken_link(ds: Path) -> Path:
    _lab(ds).unlink()
    os.symlink(ds / "nowhere.nii.gz", _lab(ds))
    return _lab(ds)


def _mha_dataset(root_ds: Path, truncate: bool) -> Path:
    import SimpleITK as sitk

    _edit_json(root_ds, file_ending=".mha")
    for folder in ("imagesTr", "labelsTr"):
        for p in sorted((root_ds / folder).glob("*.nii.gz")):
            img = sitk.ReadImage(str(p))
            target = p.with_name(p.name.replace(".nii.gz", ".mha"))
            sitk.WriteImage(img, str(target))
            p.unlink()
    bad = root_ds / "imagesTr" / "case01_0000.mha"
    if truncate:
        _truncate(bad)
    return bad


def _label_in_unlabeled(ds: Path) -> Path:
    (ds / "imagesUnlabeled").mkdir()
    arr = np.asarray(nib.load(str(_lab(ds))).dataobj).transpose(2, 1, 0)
    nii(ds / "imagesUnlabeled" / "u00_0000.nii.gz", arr.astype(np.float32), nib.load(str(_lab(ds))).affine)
    return ds / "imagesUnlabeled" / "u00_0000.nii.gz"


def _non_integer_label(ds: Path) -> Path:
    arr = np.asarray(nib.load(str(_lab(ds))).dataobj).transpose(2, 1, 0).astype(np.float32)
    return _relabel(ds, arr * 0.5)


def _nan_image(ds: Path) -> Path:
    def put(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float32)
        a[0, 0, 0] = np.nan
        return a
    return _image_data(ds, put)


def _absurd_header(ds: Path) -> Path:
    """A NIfTI header claiming a 2^30-voxel image that the file does not hold."""
    data = bytearray(_img(ds).read_bytes())
    import gzip

    raw = bytearray(gzip.decompress(bytes(data)))
    raw[42:44] = (30000).to_bytes(2, "little")  # dim[1] (x) = 30000
    raw[44:46] = (30000).to_bytes(2, "little")  # dim[2] (y) = 30000
    _img(ds).write_bytes(gzip.compress(bytes(raw)))
    return _img(ds)


def _user_folder(ds: Path) -> Path:
    user = ds.parent / "run"
    user.mkdir()
    (user / "config.yaml").write_text("my notes\n")
    (user / "patients.csv").write_text("id,age\n1,50\n")
    return user


def _bad_yaml(ds: Path, text: str) -> Path:
    (ds.parent / "mine.yaml").write_text(text)
    return ds.parent / "mine.yaml"


def yaml_case(text: str) -> Callable[[Path], tuple[list[str], Path]]:
    def build(root: Path) -> tuple[list[str], Path]:
        ds = msd(root)
        cfg = _bad_yaml(ds, text)
        return ["train", str(cfg), "--run-dir", str(root / "run")], cfg
    return build


# ------------------------------------------------------------------ h5 (LA) breakages
LA = "2018LA_Seg_Training Set"


def _la_file(ds: Path, name: str = "C01Y") -> Path:
    return ds / LA / name / "mri_norm2.h5"


def _h5_write(path: Path, **arrays: np.ndarray) -> Path:
    path.unlink()
    with h5py.File(path, "w") as h:
        for k, v in arrays.items():
            h[k] = v
    return path


def _h5_read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as h:
        return {k: h[k][()] for k in h}


def _h5_drop(ds: Path, key: str) -> Path:
    d = _h5_read(_la_file(ds))
    d.pop(key)
    return _h5_write(_la_file(ds), **d)


def _h5_shape(ds: Path) -> Path:
    d = _h5_read(_la_file(ds))
    return _h5_write(_la_file(ds), image=d["image"], label=d["label"][:-2])


def _h5_label_value(ds: Path) -> Path:
    d = _h5_read(_la_file(ds))
    lab = d["label"].copy()
    lab[0, 0, 0] = 5
    return _h5_write(_la_file(ds), image=d["image"], label=lab)


def _h5_garbage(ds: Path) -> Path:
    _la_file(ds).write_bytes(b"this is not an HDF5 file" * 10)
    return _la_file(ds)


def _h5_nan(ds: Path) -> Path:
    d = _h5_read(_la_file(ds))
    img = d["image"].copy()
    img[1, 1, 1] = np.inf
    return _h5_write(_la_file(ds), image=img, label=d["label"])


def _list_twice(ds: Path) -> Path:
    first = (ds / "train.list").read_text().split()[0]
    (ds / "test.list").write_text((ds / "test.list").read_text() + first + "\n")
    return ds / "test.list"


# ------------------------------------------------------------------ folder2d breakages
def _mask_shape(ds: Path) -> Path:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(ds / "manual" / "22_manual1.gif")
    return ds / "manual" / "22_manual1.gif"


def _mask_rgb(ds: Path) -> Path:
    m = np.zeros((10, 12, 3), np.uint8)
    m[2:5, 2:5] = (255, 0, 0)
    (ds / "manual" / "22_manual1.gif").unlink()
    Image.fromarray(m).save(ds / "manual" / "22_manual1.png")
    return ds / "manual" / "22_manual1.png"


def _mask_values(ds: Path) -> Path:
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 2:5] = 100
    Image.fromarray(m).save(ds / "manual" / "22_manual1.gif")
    return ds / "manual" / "22_manual1.gif"


def _image_corrupt(ds: Path) -> Path:
    (ds / "images" / "22_training.tif").write_bytes(b"II*\x00garbage")
    return ds / "images" / "22_training.tif"


def _image_grey(ds: Path) -> Path:
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(ds / "images" / "22_training.tif")
    return ds / "images" / "22_training.tif"


def _orphan_mask(ds: Path) -> Path:
    (ds / "images" / "23_training.tif").unlink()
    return ds / "manual" / "23_manual1.gif"


def _drive_all_background(ds: Path) -> Path:
    for p in (ds / "manual").iterdir():
        Image.fromarray(np.zeros((10, 12), np.uint8)).save(p)
    return ds


def _image_without_mask(ds: Path) -> Path:
    (ds / "manual" / "22_manual1.gif").unlink()
    return ds / "images" / "22_training.tif"


# ------------------------------------------------------------------ the catalogue
CASES: list[Case] = [
    # MSD: dataset.json
    Case("msd_json_missing", "msd", msd_case(lambda ds: (ds / "dataset.json").unlink() or ds / "dataset.json"), 3, ("dataset.json is missing",)),
    Case("msd_json_invalid", "msd", msd_case(lambda ds: (ds / "dataset.json").write_text("{labels: ") and ds / "dataset.json"), 3, ("not valid JSON",)),
    Case("msd_json_list", "msd", msd_case(lambda ds: _json(ds, [1, 2])), 3, ("must hold a JSON object",)),
    Case("msd_json_no_labels", "msd", msd_case(lambda ds: _edit_json(ds, labels=None)), 3, ("'labels' must map",)),
    Case("msd_json_label_not_int", "msd", msd_case(lambda ds: _edit_json(ds, labels={"background": 0, "a": "one"})), 3, ("label values must be integers",)),
    Case("msd_json_label_gap", "msd", msd_case(lambda ds: _edit_json(ds, labels={"background": 0, "a": 1, "b": 3})), 3, ("0..N-1",)),
    Case("msd_json_modality_string", "msd", msd_case(lambda ds: _edit_json(ds, channel_names=None, modality="CT")), 3, ("'modality' must map",)),
    Case("msd_json_channel_keys", "msd", msd_case(lambda ds: _edit_json(ds, channel_names={"t1": "x"})), 3, ("'channel_names' must map",)),
    Case("msd_json_regions_list", "msd", msd_case(lambda ds: _edit_json(ds, regions=[1, 2])), 3, ("'regions' must map",)),
    Case("msd_json_unreadable_bytes", "msd", msd_case(lambda ds: (ds / "dataset.json").write_bytes(b"\xff\xfe\x00bad") and ds / "dataset.json"), 3, ("dataset.json",)),
    # MSD: files
    Case("msd_imagesTr_missing", "msd", msd_case(lambda ds: __import__("shutil").rmtree(ds / "imagesTr") or ds / "imagesTr"), 3, ("folder is missing",)),
    Case("msd_label_missing", "msd", msd_case(lambda ds: _lab(ds).unlink() or _img(ds)), 3, ("no label file",)),
    Case("msd_image_missing", "msd", msd_case(lambda ds: _img(ds).unlink() or _lab(ds)), 3, ("label without an image",)),
    Case("msd_both_case_names", "msd", msd_case(_both_names), 3, ("case01_0000.nii.gz", "one file per case")),
    Case("msd_channel_shapes", "msd", msd_case(lambda ds: _second_channel(ds, (6, 16, 12))), 3, ("channel shape",)),
    Case("msd_channel_gap", "msd", msd_case(_channel_gap), 3, ("case01", "not numbered 0000..")),
    Case("msd_channel_count", "msd", msd_case(lambda ds: _edit_json(ds, channel_names={"0": "t1", "1": "t2"}) and ds / "imagesTr"), 3, ("2 channels",)),
    Case("msd_file_ending", "msd", msd_case(lambda ds: _write(ds / "imagesTr" / "case09_0000.nii", b"x")), 3, ("file ending",)),
    Case("msd_truncated_image", "msd", msd_case(lambda ds: _truncate(_img(ds))), 3, ("cannot read",)),
    Case("msd_truncated_label", "msd", msd_case(lambda ds: _truncate(_lab(ds))), 3, ("cannot read",)),
    Case("msd_absurd_header", "msd", msd_case(_absurd_header), 3, ("cannot read it (",)),
    Case("msd_empty_image_file", "msd", msd_case(lambda ds: _img(ds).write_bytes(b"") or _img(ds)), 3, ("cannot read",)),
    Case("msd_shape_mismatch", "msd", msd_case(lambda ds: _relabel(ds, np.zeros((6, 16, 12), np.uint8))), 3, ("has shape",)),
    Case("msd_spacing_mismatch", "msd", msd_case(lambda ds: _label_affine(ds, _spacing)), 3, ("spacing",)),
    Case("msd_orientation_mismatch", "msd", msd_case(lambda ds: _label_affine(ds, _flip_x)), 3, ("orientation or origin",)),
    Case("msd_origin_mismatch", "msd", msd_case(lambda ds: _label_affine(ds, _shift_origin)), 3, ("orientation or origin",)),
    Case("msd_label_value_outside", "msd", msd_case(lambda ds: _relabel(ds, np.full(SHAPE, 7, np.uint8))), 3, ("[7]", "not among the dataset's classes")),
    Case("msd_label_0_255", "msd", msd_case(lambda ds: _relabel(ds, np.full(SHAPE, 255, np.uint8))), 3, ("[255]",)),
    Case("msd_label_float", "msd", msd_case(_non_integer_label), 3, ("non-integer values",)),
    Case("msd_image_nan", "msd", msd_case(_nan_image), 3, ("NaN/Inf",)),
    Case("msd_all_background", "msd", msd_case(_all_background), 3, ("every label is background only",)),
    Case("msd_symlink_loop", "msd", msd_case(_symlink_loop), 3, ("symbolic link loop",)),
    Case("msd_broken_link", "msd", msd_case(_broken_link), 3, ("symbolic link to a missing file",)),
    Case("msd_truncated_mha", "msd", msd_case(lambda ds: _mha_dataset(ds, True)), 3, ("cannot read",)),
    Case("msd_test_id_twice", "msd", msd_case(lambda ds: ((ds / "imagesTs").mkdir(), (ds / "labelsTs").mkdir(),
                                                         (ds / "imagesTs" / "case01_0000.nii.gz").write_bytes(_img(ds).read_bytes()),
                                                         (ds / "labelsTs" / "case01.nii.gz").write_bytes(_lab(ds).read_bytes()))
                                              and ds / "imagesTs"), 3, ("case01", "appears in both")),
    Case("msd_split_infeasible", "msd", lambda root: (msd_train(msd(root), root / "run", "split.labeled=40"), Path("split.labeled")), 2, ("3 are available",)),
    Case("msd_split_infeasible_verify", "msd", lambda root: (lambda ds: (["verify", "synthbrain2d_supervised", f"data.root={ds}", "split.val=9"], ds))(msd(root)), 3, ("not feasible",)),
    Case("msd_channels_expected", "msd", msd_case(lambda ds: None, "data.in_channels=3"), 3, ("expected 3",)),
    Case("msd_root_missing", "msd", lambda root: (msd_train(root / "nope", root / "run"), root / "nope"), 3, ("does not exist",)),
    Case("msd_root_env_unset", "msd", lambda root: (msd_train(Path("$SEMISEG_NO_SUCH_VAR"), root / "run"), Path("SEMISEG_NO_SUCH_VAR")), 3, ("is not set",)),
    Case("msd_overwrite_user_folder", "msd", msd_case(_user_folder, "--overwrite"), 2, ("not a folder semiseg created",)),
    Case("msd_run_folder_exists", "msd", msd_case(_user_folder), 2, ("already exists",)),
    # MSD: warnings (verify succeeds and names the file)
    Case("msd_num_training", "msd", msd_case(lambda ds: _edit_json(ds, numTraining=12), command="verify"), 0, ("numTraining is 12",), warning=True),
    Case("msd_label_map_unlabeled", "msd", msd_case(_label_in_unlabeled, command="verify"), 0, ("a label map among the images",), warning=True),
    Case("msd_constant_image", "msd", msd_case(lambda ds: _image_data(ds, lambda a: np.zeros_like(a, np.float32)), command="verify"), 0, ("image is constant",), warning=True),
    Case("msd_one_background_label", "msd", msd_case(lambda ds: _relabel(ds, np.zeros(SHAPE, np.uint8)), command="verify"), 0, ("background only",), warning=True),
    # h5 (left atrium)
    Case("h5_train_list_missing", "h5", la_case(lambda ds: (ds / "train.list").unlink() or ds / "train.list"), 3, ("list file is missing",)),
    Case("h5_test_list_missing", "h5", la_case(lambda ds: (ds / "test.list").unlink() or ds / "test.list"), 3, ("list file is missing",)),
    Case("h5_case_missing", "h5", la_case(lambda ds: _la_file(ds).unlink() or ds / LA), 3, ("C01Y",)),
    Case("h5_case_twice", "h5", la_case(_list_twice), 3, ("listed in both",)),
    Case("h5_no_image_key", "h5", la_case(lambda ds: _h5_drop(ds, "image")), 3, ("no 'image' dataset",)),
    Case("h5_no_label_key", "h5", la_case(lambda ds: _h5_drop(ds, "label")), 3, ("no 'label' dataset",)),
    Case("h5_shape_mismatch", "h5", la_case(_h5_shape), 3, ("differs from label shape",)),
    Case("h5_not_h5", "h5", la_case(_h5_garbage), 3, ("cannot read h5 file",)),
    Case("h5_label_value", "h5", la_case(_h5_label_value), 3, ("[5]",)),
    Case("h5_inf_image", "h5", la_case(_h5_nan), 3, ("NaN/Inf",)),
    Case("h5_no_num_classes", "h5", la_case(lambda ds: None, "data.num_classes=null", "data.class_names=null"), 3, ("data.num_classes",)),
    Case("h5_class_names_count", "h5", la_case(lambda ds: None, "data.class_names=[a,b,c]"), 3, ("class_names has 3 names",)),
    Case("h5_case_file_wrong", "h5", la_case(lambda ds: None, "data.h5.case_file=other.h5"), 3, ("no h5 file for case",)),
    Case("h5_spacing_two_values", "h5", la_case(lambda ds: None, "data.h5.spacing=[1.0,1.0]"), 3, ("3 values",)),
    Case("h5_select_by_dice_without_val", "h5", la_case(lambda ds: None, "eval.select_by=dice"), 2, ("needs validation cases",)),
    Case("h5_patch_not_divisible", "h5", la_case(lambda ds: None, "data.patch_size=[12,16,16]"), 2, ("divisible by 16",)),
    # folder2d
    Case("f2d_images_missing", "folder2d", drive_case(lambda ds: None, "data.folder2d.images=nothing"), 3, ("nothing",)),
    Case("f2d_mask_shape", "folder2d", drive_case(_mask_shape), 3, ("mask shape",)),
    Case("f2d_rgb_mask", "folder2d", drive_case(_mask_rgb), 3, ("RGB mask with colours",)),
    Case("f2d_mask_values", "folder2d", drive_case(_mask_values), 3, ("[100]", "label_values")),
    Case("f2d_mask_not_in_label_values", "folder2d", drive_case(lambda ds: None, "data.folder2d.label_values={0: 0, 128: 1}"), 3, ("[255]", "label_values")),
    Case("f2d_corrupt_image", "folder2d", drive_case(_image_corrupt), 3, ("cannot read image",)),
    Case("f2d_mixed_grey_rgb", "folder2d", drive_case(_image_grey), 3, ("22_training.tif",)),
    Case("f2d_orphan_mask", "folder2d", drive_case(_orphan_mask), 3, ("23",)),
    Case("f2d_image_without_mask", "folder2d", drive_case(_image_without_mask), 3, ("22",)),
    Case("f2d_all_background", "folder2d", drive_case(_drive_all_background), 3, ("every label is background only",)),
    # configurations (exit 2, before any work)
    Case("cfg_val_every_0", "config", config_case("train.val_every", "train.val_every=0"), 2, ("val_every",)),
    Case("cfg_batch_size_0", "config", config_case("train.batch_size", "train.batch_size=0"), 2, ("batch_size",)),
    Case("cfg_iterations_negative", "config", config_case("train.iterations", "train.iterations=-5"), 2, ("iterations",)),
    Case("cfg_labeled_fraction_over_1", "config", config_case("split.labeled", "split.labeled=1.5"), 2, ("split.labeled",)),
    Case("cfg_lr_zero", "config", config_case("optim.lr", "optim.lr=0"), 2, ("lr",)),
    Case("cfg_unknown_key", "config", config_case("train.iteration", "train.iteration=5"), 2, ("did you mean 'iterations'",)),
    Case("cfg_unknown_method", "config", config_case("magic", "method.name=magic"), 2, ("unknown method 'magic'",)),
    Case("cfg_unknown_network", "config", config_case("resnet", "network.name=resnet"), 2, ("unknown network 'resnet'",)),
    Case("cfg_method_param", "config", config_case("consistancy", "method.name=mean_teacher", "method.params={consistancy: 1}"), 2, ("consistancy",)),
    Case("cfg_network_kwarg", "config", config_case("featurez", "network.kwargs={featurez: [4]}"), 2, ("featurez",)),
    Case("cfg_patch_dims", "config", config_case("data.patch_size", "data.patch_size=[16,16,16]"), 2, ("patch_size",)),
    Case("cfg_patch_not_divisible", "config", config_case("data.patch_size", "data.patch_size=[15,16]"), 2, ("divisible",)),
    Case("cfg_overlap_one", "config", config_case("eval.sw_overlap", "eval.sw_overlap=1.0"), 2, ("sw_overlap",)),
    Case("cfg_flip_probability", "config", config_case("data.augmentation.flip", "data.augmentation.flip=2"), 2, ("flip",)),
    Case("cfg_threads_zero", "config", config_case("train.threads", "train.threads=0"), 2, ("threads",)),
    Case("cfg_unlabeled_batch_negative", "config", config_case("train.unlabeled_batch_size", "train.unlabeled_batch_size=-2"), 2, ("unlabeled_batch_size",)),
    Case("cfg_select_by_unknown", "config", config_case("eval.select_by", "eval.select_by=best"), 2, ("select_by",)),
    Case("cfg_init_from_missing", "config", config_case("/nowhere/run", "method.init_from=/nowhere/run"), 2, ("/nowhere/run",)),
    Case("cfg_override_no_equals", "config", config_case("train.iterations", "train.iterations"), 2, ("must look like key.sub=value",)),
    Case("cfg_unknown_preset", "config", lambda root: (["train", "no_such_preset", "--run-dir", str(root / "run")], Path("no_such_preset")), 2, ("neither a YAML file nor a shipped preset",)),
    Case("cfg_yaml_invalid", "config", yaml_case("data: [unclosed\n"), 2, ("not valid YAML",)),
    Case("cfg_yaml_top_list", "config", yaml_case("- a\n- b\n"), 2, ("mapping at its top level",)),
    Case("cfg_yaml_extends_loop", "config", yaml_case("extends: mine.yaml\n"), 2, ("loops",)),
]
