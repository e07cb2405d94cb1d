"""Reading and writing images: NIfTI (nibabel), other ITK formats (SimpleITK if installed),
2D images (PNG/TIF/GIF via Pillow) and h5 arrays. See :mod:`semiseg.data.case` for the axis order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from semiseg.errors import DatasetError

NIFTI_ENDINGS = (".nii.gz", ".nii")
IMAGE2D_ENDINGS = (".png", ".tif", ".tiff", ".gif", ".jpg", ".jpeg", ".bmp")
ITK_ENDINGS = (".mha", ".mhd", ".nrrd")


def file_ending(path: Path) -> str:
    name = path.name.lower()
    for end in NIFTI_ENDINGS + IMAGE2D_ENDINGS + ITK_ENDINGS + (".h5",):
        if name.endswith(end):
            return end
    return path.suffix.lower()


def strip_ending(path: Path) -> str:
    end = file_ending(path)
    return path.name[: -len(end)] if end and path.name.lower().endswith(end) else path.stem


def unreadable_reason(path: Path, exc: BaseException | None = None) -> str:
    """Why ``path`` cannot be read, in words: missing, a broken link or link loop, permission denied, or the error."""
    import errno
    import os

    path = Path(path)
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symbolic link loop"
        if path.is_symlink():
            return f"a symbolic link to a missing file ({os.readlink(path)})"
        return "the file does not exist"
    if path.is_file() and not os.access(path, os.R_OK):
        return "permission denied (the file is not readable by this user)"
    detail = str(exc).strip() if exc is not None else ""
    return f"cannot read it ({type(exc).__name__}: {detail})" if exc is not None and detail else (
        f"cannot read it ({type(exc).__name__})" if exc is not None else "cannot read it")


def geometry(meta: dict[str, Any]) -> np.ndarray | None:
    """The voxel-to-world matrix of a read volume (NIfTI affine; ITK direction, spacing and origin), or None."""
    if "affine" in meta:
        return np.asarray(meta["affine"], dtype=float)
    img = meta.get("itk")
    if img is not None and img.GetDimension() >= 3:
        direction = np.asarray(img.GetDirection(), dtype=float).reshape(img.GetDimension(), -1)[:3, :3]
        out = np.eye(4)
        out[:3, :3] = direction * np.asarray(img.GetSpacing()[:3], dtype=float)
        out[:3, 3] = img.GetOrigin()[:3]
        return out
    return None


DEFLATE_MAX_RATIO = 1032
"""The most a deflate (gzip) stream can expand: 258-byte matches coded in 2 bits each, ~1032:1."""


def nifti_size_problem(path: Path, img: Any) -> str | None:
    """Why the voxel data the NIfTI header of ``img`` describes cannot be in ``path``, or None: more bytes than
    an uncompressed file holds after its header, or than a gzip file could expand to (:data:`DEFLATE_MAX_RATIO`).
    Checked before reading, which would first allocate every byte the header claims."""
    import os

    shape = tuple(int(d) for d in img.header.get_data_shape())
    dtype = np.dtype(img.header.get_data_dtype())
    need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    offset = int(getattr(img.dataobj, "offset", 0) or 0)  # where the voxel data starts (nibabel's reading of vox_offset)
    size = os.path.getsize(path)
    human = lambda n: f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"  # noqa: E731
    claim = f"its header describes {'x'.join(map(str, shape))} voxels of {dtype.name} ({human(need)})"
    if file_ending(path) == ".nii.gz":
        if need + offset > DEFLATE_MAX_RATIO * size:
            return f"{claim}, more than a {human(size)} gzip file can hold; the header or the file is damaged"
    elif need + offset > size:
        return f"{claim}, but the file holds {human(max(size - offset, 0))} after its header; it is truncated or damaged"
    return None


def read_volume(path: Path) -> tuple[np.ndarray, tuple[float, float, float], dict[str, Any]]:
    """Read a 3D/4D medical image -> (array (C, Z, Y, X) or (Z, Y, X), spacing (z, y, x), meta)."""
    end = file_ending(path)
    if end in NIFTI_ENDINGS:
        import nibabel as nib

        try:
            img = nib.load(str(path))
        except Exception as exc:  # nibabel raises many types for broken files
            raise DatasetError(f"{path}: {unreadable_reason(path, exc)} (NIfTI)") from None
        problem = nifti_size_problem(path, img)
        if problem:  # before the read allocates what the header claims (a damaged header can claim terabytes)
            raise DatasetError(f"{path}: cannot read it ({problem}) (NIfTI)")
        try:
            data = np.asarray(img.dataobj)
        except Exception as exc:
            raise DatasetError(f"{path}: {unreadable_reason(path, exc)} (NIfTI)") from None
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        if data.ndim == 2:
            data = data[:, :, None]
            zooms = zooms[:2] + (1.0,)
        if data.ndim == 3:
            arr = data.transpose(2, 1, 0)
        elif data.ndim == 4:
            arr = data.transpose(3, 2, 1, 0)
        else:
            raise DatasetError(f"{path}: expected a 3D or 4D image, got {data.ndim} dimensions")
        return arr, (zooms[2], zooms[1], zooms[0]), {"affine": img.affine, "header": img.header, "source": str(path)}
    if end in ITK_ENDINGS:
        try:
            import SimpleITK as sitk
        except ImportError:
            raise DatasetError(f"{path}: reading {end} files needs SimpleITK (pip install simpleitk)") from None
        try:
            img = sitk.ReadImage(str(path))
            arr = sitk.GetArrayFromImage(img)
        except Exception as exc:  # truncated or corrupt files raise RuntimeError from ITK
            first = str(exc).strip().splitlines()
            raise DatasetError(f"{path}: {unreadable_reason(path, RuntimeError(first[-1] if first else ''))} ({end})") from None
        sp = tuple(float(s) for s in reversed(img.GetSpacing()))
        if img.GetNumberOfComponentsPerPixel() > 1:
            arr = np.moveaxis(arr, -1, 0)
        return arr, sp[-3:] if len(sp) >= 3 else (1.0,) + sp, {"itk": img, "source": str(path)}
    raise DatasetError(f"{path}: unsupported file type '{end}' (NIfTI, {', '.join(ITK_ENDINGS)})")


def read_image2d(path: Path, grayscale: bool = False) -> np.ndarray:
    """Read a 2D image -> (C, H, W) float32 (RGB kept unless ``grayscale``)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode in ("P", "1"):
                im = im.convert("L")
            if grayscale and im.mode not in ("L", "I", "I;16", "F"):
                im = im.convert("L")
            if im.mode == "RGBA":
                im = im.convert("RGB")
            arr = np.asarray(im)
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read image ({exc})") from None
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return arr.astype(np.float32)


def read_mask2d(path: Path, palette: str = "grey") -> np.ndarray:
    """Read a 2D mask -> (H, W) stored values.

    Palette images are ambiguous: Pillow writes a 0/255 mask as indices 0/1 with a black/white
    palette (``palette="grey"``, the default, gives 0/255 back), while indexed label masks store the
    class in the index and draw it in any colour (DRIVE's second observer: indices 0/1 drawn in grey
    3/253; ``palette="index"`` gives 0/1). 1-bit images read as 0/255.
    """
    from PIL import Image

    if palette not in ("grey", "index"):
        raise ValueError(f"palette must be 'grey' or 'index'; got {palette!r}")
    try:
        with Image.open(path) as im:
            if im.mode in ("P", "PA") and palette == "index":
                im = im.getchannel(0) if im.mode == "PA" else im
            elif im.mode in ("1", "P", "LA", "PA"):
                im = im.convert("L")
            arr = np.asarray(im)
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read mask ({exc})") from None
    if arr.ndim == 3:
        colour = arr[..., :3]
        if not (colour == colour[..., :1]).all():
            raise DatasetError(f"{path}: an RGB mask with colours (channels differ); store class indices in a grey "
                               "or palette image")
        arr = arr[..., 0]
    return arr


MAX_AUTO_CLASSES = 32
"""Without a declared mapping, mask values >= this are not taken for class indices (an intensity image)."""


def to_class_indices(raw: np.ndarray, source: Path | str, label_values: dict[int, int] | None = None,
                     threshold: int | None = None, num_classes: int | None = None) -> np.ndarray:
    """Stored mask values -> class indices (int16), the one mapping used by training, verify, predict and evaluate.

    ``label_values`` maps every stored value (an unknown value is an error); ``threshold`` binarises
    (value > threshold -> 1). Otherwise a mask whose values are {0, 255} or {255} is binary (what
    ``semiseg predict`` writes for two classes), and any other values must be class indices:
    below ``num_classes`` when it is known, below :data:`MAX_AUTO_CLASSES` when not. Values that
    cannot be mapped are an error naming the file, never a silent list of classes.
    """
    raw = np.asarray(raw)
    if label_values:
        out = np.full(raw.shape, -1, dtype=np.int16)
        for stored, cls in label_values.items():
            out[raw == stored] = cls
        if (out < 0).any():
            bad = sorted({int(v) for v in np.unique(raw[out < 0])})[:10]
            raise DatasetError(f"{source}: mask values {bad} are not in label_values {label_values}")
        return out
    if threshold is not None:
        return (raw > threshold).astype(np.int16)
    values = {int(v) for v in np.unique(raw)}
    if values <= {0, 255} and 255 in values and (num_classes is None or num_classes == 2):
        return (raw == 255).astype(np.int16)
    limit = num_classes if num_classes is not None else MAX_AUTO_CLASSES
    bad = sorted(v for v in values if v < 0 or v >= limit)
    if bad:
        what = f"the {num_classes} classes" if num_classes is not None else "class indices"
        raise DatasetError(f"{source}: mask values {bad[:10]} are not {what}; declare the mapping "
                           "(label_values, e.g. {0: 0, 255: 1}, or a threshold)")
    return raw.astype(np.int16)


def write_nifti_like(array: np.ndarray, path: Path, meta: dict[str, Any]) -> None:
    """Write a (Z, Y, X) label map as NIfTI with the source image's affine and header."""
    import nibabel as nib

    data = np.asarray(array).transpose(2, 1, 0).astype(np.uint8 if array.max() < 256 else np.int16)
    header = meta.get("header")
    if header is not None:
        header = header.copy()
        header.set_data_dtype(data.dtype)
        header.set_data_shape(data.shape)
    affine = meta.get("affine", np.eye(4))
    img = nib.Nifti1Image(data, affine, header=header)
    if header is None:
        img.set_qform(affine, code=1)
    nib.save(img, str(path))


def write_png(array: np.ndarray, path: Path, scale: int = 1) -> None:
    """Write a (H, W) label map as an 8-bit PNG (values multiplied by ``scale``, e.g. 255 for binary)."""
    from PIL import Image

    Image.fromarray((np.asarray(array) * scale).astype(np.uint8)).save(path)
