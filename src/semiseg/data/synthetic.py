"""``synthbrain``: the embedded default dataset, synthesised SynthSeg-style from real anatomy.

Source anatomy: the ICBM152 2009c nonlinear symmetric grey- and white-matter
probability maps that the nilearn wheel ships (no download). CSF is the rest
of the filled brain envelope (ventricles and sulci) plus a thin outer rim.
Each case (Billot et al., SynthSeg, 2023, in spirit):

1. a random smooth deformation: an affine part (rotation up to 10 degrees per
   axis, scaling 0.88-1.12 per axis, translation up to 4 mm) plus a smooth
   elastic field (coarse Gaussian field upsampled, about 2-3 mm);
2. labels = arg max of the warped background/CSF/GM/WM probabilities;
3. a T1-like image from partial-volume mixing of per-class intensities drawn
   per case (so contrast varies between cases), per-class texture noise, a
   skull and scalp shell (background label), a multiplicative bias field,
   Gaussian blur and noise.

Written once in the MSD layout (``imagesTr``/``labelsTr``/``dataset.json``,
NIfTI, spacing ``spacing`` mm) into a cache folder and reused; the same
options and seed give the same files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from semiseg.errors import ConfigError, DatasetError

VERSION = 1
CLASS_NAMES = ["background", "CSF", "GM", "WM"]
_TEMPLATES = {
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def cache_root() -> Path:
    """``$SEMISEG_CACHE`` or ``~/.cache/semiseg``."""
    return Path(os.environ.get("SEMISEG_CACHE", Path.home() / ".cache" / "semiseg")).expanduser()


def _template_path(name: str) -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("synthbrain needs the nilearn package (it ships the ICBM152 tissue maps): pip install nilearn")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / _TEMPLATES[name]
    if not path.is_file():
        raise DatasetError(f"{path}: ICBM152 template missing from the installed nilearn")
    return path


def load_tissue_maps(spacing: float) -> tuple[np.ndarray, float]:
    """Background/CSF/GM/WM probability maps (4, X, Y, Z) at ``spacing`` mm, cropped around the head."""
    import nibabel as nib

    gm = np.asarray(nib.load(str(_template_path("gm"))).dataobj, dtype=np.float32) / 255.0
    wm = np.asarray(nib.load(str(_template_path("wm"))).dataobj, dtype=np.float32) / 255.0
    zoom = 1.0 / spacing
    gm = np.clip(ndimage.zoom(gm, zoom, order=1), 0, 1)
    wm = np.clip(ndimage.zoom(wm, zoom, order=1), 0, 1)
    tissue = gm + wm
    envelope = ndimage.binary_fill_holes(ndimage.binary_closing(tissue > 0.5, iterations=2))
    envelope = ndimage.binary_dilation(envelope, iterations=1)
    env_soft = np.clip(ndimage.gaussian_filter(envelope.astype(np.float32), 0.6), 0, 1)
    total = np.maximum(tissue, 1.0)
    gm, wm = gm / total, wm / total
    csf = np.clip(np.maximum(env_soft, gm + wm) - gm - wm, 0, 1)
    bg = np.clip(1.0 - csf - gm - wm, 0, 1)
    maps = np.stack([bg, csf, gm, wm])
    # crop to the brain with room for the skull and deformation (8 voxels)
    nz = np.nonzero(envelope)
    lo = [max(0, int(i.min()) - 8) for i in nz]
    hi = [min(s, int(i.max()) + 9) for i, s in zip(nz, envelope.shape)]
    return maps[:, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], spacing


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], coarse: int, std: float) -> np.ndarray:
    small = rng.normal(0.0, std, size=(coarse,) * len(shape))
    return ndimage.zoom(small, [s / coarse for s in shape], order=3)[tuple(slice(0, s) for s in shape)]


def _rotation(angles: np.ndarray) -> np.ndarray:
    ax, ay, az = angles
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rx @ ry @ rz


def synthesize_case(maps: np.ndarray, spacing: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (image, label) pair in the template's (X, Y, Z) array order."""
    shape = maps.shape[1:]
    centre = (np.asarray(shape) - 1) / 2.0
    a = _rotation(np.deg2rad(rng.uniform(-10, 10, 3))) @ np.diag(1.0 / rng.uniform(0.88, 1.12, 3))
    shift = rng.uniform(-4, 4, 3) / spacing
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    coords = np.einsum("ij,j...->i...", a, grid - centre[:, None, None, None]) + centre[:, None, None, None] + shift[:, None, None, None]
    for d in range(3):
        coords[d] += _smooth_field(rng, shape, 5, 1.4 / spacing * 2)
    warped = np.stack([ndimage.map_coordinates(m, coords, order=1, mode="nearest") for m in maps])
    warped[0] = np.where(coords.min(axis=0) < 0, 1.0, warped[0])
    label = np.argmax(warped, axis=0).astype(np.uint8)

    # intensities: T1-like ordering with per-case contrast
    means = np.array([0.0, rng.uniform(0.12, 0.32), rng.uniform(0.42, 0.6), rng.uniform(0.68, 0.9)])
    stds = rng.uniform(0.015, 0.05, 4)
    image = np.zeros(shape, np.float32)
    for k in range(1, 4):
        texture = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 0.7)
        image += warped[k] * (means[k] + stds[k] * texture / max(texture.std(), 1e-6))
    brain = label > 0
    dist = ndimage.distance_transform_edt(~brain) * spacing
    bone_mm, scalp_mm = rng.uniform(2.0, 5.0), rng.uniform(3.0, 7.0)
    bone = (dist > 0) & (dist <= bone_mm)
    scalp = (dist > bone_mm) & (dist <= bone_mm + scalp_mm)
    image[bone] = rng.uniform(0.03, 0.12)
    image[scalp] = rng.uniform(0.55, 0.85) * (1 + 0.1 * rng.normal(size=int(scalp.sum())))
    image *= np.exp(_smooth_field(rng, shape, 4, 0.25)).astype(np.float32)
    image = ndimage.gaussian_filter(image, rng.uniform(0.3, 0.9))
    image += rng.normal(0, rng.uniform(0.01, 0.035), shape).astype(np.float32)
    image = np.clip(image, 0, None) * 1000.0
    return image.astype(np.float32), label


def _options_key(n_cases: int, spacing: float, seed: int) -> str:
    text = json.dumps({"v": VERSION, "n": n_cases, "sp": spacing, "seed": seed}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def generate_synthbrain(out_dir: Path, n_cases: int = 20, spacing: float = 2.0, seed: int = 0) -> Path:
    """Write ``n_cases`` synthetic heads in the MSD layout into ``out_dir`` (created)."""
    import nibabel as nib

    maps, spacing = load_tissue_maps(spacing)
    out_dir.mkdir(parents=True, exist_ok=False)
    (out_dir / "imagesTr").mkdir()
    (out_dir / "labelsTr").mkdir()
    affine = np.diag([spacing, spacing, spacing, 1.0])
    for i in range(n_cases):
        rng = np.random.default_rng([seed, i])
        image, label = synthesize_case(maps, spacing, rng)
        case = f"synth_{i:03d}"
        nib.save(nib.Nifti1Image(image, affine), str(out_dir / "imagesTr" / f"{case}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(label, affine), str(out_dir / "labelsTr" / f"{case}.nii.gz"))
    meta = {
        "name": "synthbrain",
        "description": "Synthetic T1-like heads from ICBM152 2009c tissue maps (semiseg.data.synthetic)",
        "channel_names": {"0": "T1"},
        "labels": {name: i for i, name in enumerate(CLASS_NAMES)},
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
        "synthbrain": {"version": VERSION, "n_cases": n_cases, "spacing": spacing, "seed": seed},
    }
    (out_dir / "dataset.json").write_text(json.dumps(meta, indent=2))
    return out_dir


def ensure_builtin_dataset(name: str, n_cases: int = 20, spacing: float = 2.0, seed: int = 0) -> Path:
    """Return the cached folder of a built-in dataset, generating it on first use (atomically)."""
    if name != "synthbrain":
        raise ConfigError(f"unknown built-in dataset '{name}'; available: synthbrain")
    target = cache_root() / f"synthbrain_{_options_key(n_cases, spacing, seed)}"
    if (target / "dataset.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".synthbrain_tmp_", dir=target.parent))
    try:
        generate_synthbrain(tmp / "data", n_cases=n_cases, spacing=spacing, seed=seed)
        try:
            os.replace(tmp / "data", target)
        except OSError:
            if not (target / "dataset.json").is_file():  # not a concurrent writer that won: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
