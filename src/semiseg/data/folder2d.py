"""2D image/mask folders (PNG, TIF, GIF; grey or RGB), e.g. DRIVE and ISBI-2012.

Images, masks and optional field-of-view masks are paired by a case id taken
from each file stem with ``id_regex`` (DRIVE: ``^(\\d+)_``). Stored mask values
are mapped to class indices by ``label_values`` (e.g. ``{0: 0, 255: 1}``) or
``label_threshold`` (value > threshold -> 1). A 2D image is a one-slice volume.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from semiseg.config.schema import Folder2DConfig
from semiseg.data.case import Case, CaseRef
from semiseg.data.io import IMAGE2D_ENDINGS, read_image2d, read_mask2d, strip_ending, to_class_indices
from semiseg.data.layout import Layout
from semiseg.errors import DatasetError


class Folder2DLayout(Layout):
    name = "folder2d"

    def __init__(self, root: Path, cfg: Folder2DConfig, num_classes: int | None, class_names: list[str] | None) -> None:
        self.root = Path(root)
        self.cfg = cfg
        self._rx = re.compile(cfg.id_regex)
        if num_classes is None:
            num_classes = (max(cfg.label_values.values()) + 1) if cfg.label_values else 2
        self.num_classes = num_classes
        self.class_names = class_names or ["background"] + [f"class{i}" for i in range(1, num_classes)]
        self.regions = {}
        self._scan_once()
        self.in_channels = None

    def _index(self, folder: str | None) -> dict[str, Path]:
        if folder is None:
            return {}
        path = self.root / folder
        if not path.is_dir():
            self._problems.append(f"{path}: folder is missing")
            return {}
        out: dict[str, Path] = {}
        for p in sorted(path.iterdir()):
            if p.suffix.lower() not in IMAGE2D_ENDINGS:
                continue
            m = self._rx.search(strip_ending(p))
            if not m:
                self._problems.append(f"{p}: file name does not match id_regex '{self.cfg.id_regex}'")
                continue
            key = m.group(1) if m.groups() else m.group(0)
            if key in out:
                self._problems.append(f"{p}: case id '{key}' also used by {out[key]}")
            out[key] = p
        return out

    def _pair(self, pool: str, images: str | None, labels: str | None, fov: str | None) -> list[CaseRef]:
        imgs, labs, fovs = self._index(images), self._index(labels), self._index(fov)
        refs = []
        for key, img in imgs.items():
            lab = labs.get(key)
            if labels is not None and lab is None:
                self._problems.append(f"{img}: no mask with case id '{key}' in {self.root / labels}")
                continue
            if fov is not None and key not in fovs:
                self._problems.append(f"{img}: no field-of-view mask with case id '{key}' in {self.root / fov}")
            extra = (("fov", fovs[key]),) if key in fovs else ()
            cid = key if pool == "train" else f"{pool}_{key}"
            refs.append(CaseRef(cid, cid, pool, (img,), lab, extra))
        for key in sorted(set(labs) - set(imgs)):
            self._problems.append(f"{labs[key]}: mask without an image (case id '{key}')")
        return refs

    def _scan(self) -> list[CaseRef]:
        refs = self._pair("train", self.cfg.images, self.cfg.labels, self.cfg.fov)
        refs += self._pair("unlabeled", self.cfg.unlabeled, None, None) if self.cfg.unlabeled else []
        if self.cfg.test_images:
            refs += self._pair("test", self.cfg.test_images, self.cfg.test_labels, self.cfg.test_fov)
        return refs

    def map_labels(self, raw: np.ndarray, source: Path) -> np.ndarray:
        return to_class_indices(raw, source, self.cfg.label_values, self.cfg.label_threshold, self.num_classes)

    def load(self, ref: CaseRef) -> Case:
        image = read_image2d(ref.image_files[0], grayscale=self.cfg.grayscale)[:, None]
        label = None
        if ref.label_file is not None:
            raw = read_mask2d(ref.label_file, self.cfg.mask_palette)
            if raw.shape != image.shape[2:]:
                raise DatasetError(
                    f"{ref.label_file}: mask shape {raw.shape} differs from image {ref.image_files[0]} shape {image.shape[2:]}"
                )
            label = self.map_labels(raw, ref.label_file)[None]
        meta: dict = {"source": str(ref.image_files[0]), "is_2d": True}
        fov = ref.get("fov")
        if fov is not None:
            meta["fov"] = (read_mask2d(fov) > 0)[None]
        return Case(ref.case_id, image, label, (1.0, 1.0, 1.0), ref.subject, meta)
