"""Reading volumes: a NIfTI header that claims more voxel data than its file can hold is refused before the
read allocates it (a damaged header can claim tens of GiB; allocating first gets the process killed)."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from semiseg.data.io import read_volume
from semiseg.errors import DatasetError


def _nifti(path, shape=(8, 6, 4)):
    nib.save(nib.Nifti1Image(np.ones(shape, dtype=np.float32), np.eye(4)), str(path))
    return path


def _claim(raw: bytes, x: int, y: int) -> bytes:
    out = bytearray(raw)
    out[42:44], out[44:46] = x.to_bytes(2, "little"), y.to_bytes(2, "little")  # dim[1], dim[2]
    return bytes(out)


def test_a_gzip_nifti_whose_header_claims_more_than_the_file_can_expand_to_is_refused(tmp_path):
    path = _nifti(tmp_path / "img.nii.gz")
    path.write_bytes(gzip.compress(_claim(gzip.decompress(path.read_bytes()), 30000, 30000)))
    with pytest.raises(DatasetError, match=r"img\.nii\.gz: cannot read it \(its header describes 30000x30000x4 voxels "
                                           r"of float32 \(13\.4 GiB\), more than a \d+ bytes gzip file can hold"):
        read_volume(path)


def test_an_uncompressed_nifti_shorter_than_its_header_says_is_refused(tmp_path):
    path = _nifti(tmp_path / "img.nii")
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DatasetError, match=r"8x6x4 voxels of float32 \(768 bytes\), but the file holds 728 bytes after "
                                           r"its header; it is truncated"):
        read_volume(path)


def test_intact_files_read(tmp_path):
    for name in ("a.nii", "a.nii.gz"):
        arr, spacing, _ = read_volume(_nifti(tmp_path / name))
        assert arr.shape == (4, 6, 8) and spacing == (1.0, 1.0, 1.0)
