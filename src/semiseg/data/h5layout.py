"""The h5 layout of the semi-supervised literature.

ACDC (SSL4MIS): ``data/CASE.h5`` volumes (keys ``image`` (z, y, x), ``label``)
for validation/test and ``data/CASE_slice_K.h5`` 2D slices for training, with
``train.list``/``val.list``/``test.list`` naming the cases (a training volume
is rebuilt by stacking its slices in index order).

Left atrium (UA-MT): each list entry is a folder holding one h5 (``case_file``,
e.g. ``mri_norm2.h5``). Spacing is not stored in these files: cases get
``h5.spacing`` (LA: 0.625 mm isotropic) or unit spacing; the ``_vox`` metrics give
distances in voxels, as the literature reports them on this layout.

Training takes the arrays as stored. The two releases differ in axis order (ACDC's are (z, y, x), the LA
release's (x, y, z)) and both were normalised when they were made; :func:`as_stored` gives a volume read
from a NIfTI/ITK file (a new scan) the form of the training arrays (``h5.axes``, ``h5.intensity``), so that a
model trained on the release sees a new scan as it saw its training data.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from semiseg.config.schema import H5LayoutConfig, PreprocessingConfig
from semiseg.data.case import Case, CaseRef
from semiseg.data.layout import Layout, subject_of
from semiseg.data.preprocessing import normalize_intensity
from semiseg.errors import DatasetError


def read_h5(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    import h5py

    try:
        with h5py.File(path, "r") as h:
            if "image" not in h:
                raise DatasetError(f"{path}: no 'image' dataset (keys: {', '.join(h.keys())})")
            image = h["image"][()]
            label = h["label"][()] if "label" in h else None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read h5 file ({exc})") from None
    return image, label


def stored_axes(cfg: H5LayoutConfig) -> str:
    """``h5.axes`` with ``auto`` resolved: ``xyz`` for the left-atrium variant (``case_file``), else ``zyx``."""
    return cfg.axes if cfg.axes != "auto" else ("xyz" if cfg.case_file else "zyx")


def stored_intensity(cfg: H5LayoutConfig) -> str:
    """``h5.intensity`` with ``auto`` resolved: ``zscore`` for the left-atrium variant (``case_file``), else ``minmax``."""
    return cfg.intensity if cfg.intensity != "auto" else ("zscore" if cfg.case_file else "minmax")


def to_stored_order(array: np.ndarray, cfg: H5LayoutConfig) -> np.ndarray:
    """The last three (spatial) axes of ``array`` from (z, y, x) to the stored order; its own inverse."""
    if stored_axes(cfg) == "zyx":
        return array
    n = array.ndim
    return np.ascontiguousarray(array.transpose(*range(n - 3), n - 1, n - 2, n - 3))


def as_stored(case: Case, cfg: H5LayoutConfig) -> Case:
    """A volume read from a NIfTI/ITK file ((C, Z, Y, X), spacing (z, y, x), intensities as scanned) in the form
    of this layout's training arrays: axes (and spacing) in the stored order, intensities normalised per volume
    as the files' makers did (:func:`semiseg.data.preprocessing.normalize_intensity`). A 2D image is returned
    unchanged. ``case.meta`` keeps the file's geometry; :func:`to_stored_order` brings a prediction back to it."""
    if case.meta.get("is_2d"):
        return case
    kind = stored_intensity(cfg)
    image = case.image if kind == "as_read" else normalize_intensity(case.image, PreprocessingConfig(normalize=kind))
    spacing = case.spacing if stored_axes(cfg) == "zyx" else tuple(reversed(case.spacing))
    return Case(case.case_id, to_stored_order(image, cfg), None if case.label is None else to_stored_order(case.label, cfg),
                spacing, case.subject, dict(case.meta))  # type: ignore[arg-type]


class H5Layout(Layout):
    name = "h5"

    def __init__(self, root: Path, cfg: H5LayoutConfig, num_classes: int | None, class_names: list[str] | None) -> None:
        self.root = Path(root)
        self.cfg = cfg
        if num_classes is None:
            raise DatasetError(f"{self.root}: the h5 layout needs data.num_classes in the config (h5 files do not say)")
        self.num_classes = num_classes
        self.class_names = class_names or ["background"] + [f"class{i}" for i in range(1, num_classes)]
        if len(self.class_names) != num_classes:
            raise DatasetError(f"data.class_names has {len(self.class_names)} names for {num_classes} classes")
        self.regions = {}
        self.in_channels = 1
        self._scan_once()

    def _read_list(self, name: str | None) -> list[str]:
        if not name:
            return []
        path = self.root / name
        if not path.is_file():
            self._problems.append(f"{path}: list file is missing")
            return []
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]

    def _slice_files(self, case: str) -> list[Path]:
        pattern = re.escape(self.cfg.slice_pattern).replace(re.escape("{case}"), re.escape(case)).replace(
            re.escape("{index}"), r"(\d+)"
        )
        rx = re.compile("^" + pattern + "$")
        found = []
        for p in (self.root / self.cfg.data_dir).glob(f"{case}*"):
            m = rx.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return [p for _, p in sorted(found)]

    def _case_files(self, case: str) -> tuple[Path, ...]:
        if self.cfg.case_file:
            path = self.root / self.cfg.data_dir / case / self.cfg.case_file
            return (path,) if path.is_file() else ()
        volume = self.root / self.cfg.data_dir / f"{case}.h5"
        if volume.is_file():
            return (volume,)
        return tuple(self._slice_files(case))

    def _scan(self) -> list[CaseRef]:
        refs: list[CaseRef] = []
        seen: dict[str, str] = {}
        for pool, name in (("train", self.cfg.train_list), ("val", self.cfg.val_list), ("test", self.cfg.test_list)):
            for case in self._read_list(name):
                if case in seen:
                    self._problems.append(f"case '{case}' is listed in both {seen[case]} and {name}")
                    continue
                seen[case] = str(name)
                files = self._case_files(case)
                if not files:
                    self._problems.append(
                        f"{self.root / self.cfg.data_dir}: no h5 file for case '{case}' listed in {name}"
                    )
                    continue
                refs.append(CaseRef(case, subject_of(case, self.cfg.subject_regex), pool, files, files[0]))
        return refs

    def load(self, ref: CaseRef) -> Case:
        images, labels = [], []
        for f in ref.image_files:
            img, lab = read_h5(f)
            if lab is None:
                raise DatasetError(f"{f}: no 'label' dataset")
            if img.shape != lab.shape:
                raise DatasetError(f"{f}: image shape {img.shape} differs from label shape {lab.shape}")
            images.append(img if len(ref.image_files) == 1 else img[None])
            labels.append(lab if len(ref.image_files) == 1 else lab[None])
        if len(ref.image_files) > 1:
            shapes = {i.shape for i in images}
            if len(shapes) > 1:
                raise DatasetError(f"slices of case '{ref.case_id}' differ in shape: {sorted(shapes)}")
        image = np.concatenate(images) if len(images) > 1 else images[0]
        label = np.concatenate(labels) if len(labels) > 1 else labels[0]
        if image.ndim == 2:
            image, label = image[None], label[None]
        meta = {"source": [str(f) for f in ref.image_files], "is_2d": image.shape[0] == 1}
        spacing = tuple(float(v) for v in self.cfg.spacing) if self.cfg.spacing else (1.0, 1.0, 1.0)
        if len(spacing) != 3:
            raise DatasetError(f"data.h5.spacing needs 3 values (one per stored axis); got {list(spacing)}")
        return Case(ref.case_id, image[None].astype(np.float32), label, spacing, ref.subject, meta)
