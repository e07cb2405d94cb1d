"""MSD / nnU-Net folder layout: ``imagesTr/ labelsTr/ imagesTs/ [labelsTs/] [imagesUnlabeled/] dataset.json``.

Both conventions are read: nnU-Net v2 (``CASE_0000.nii.gz`` one file per
channel, ``channel_names``, ``labels`` as name -> value, ``file_ending``) and
MSD v1 (one 4D file per case, ``modality``, ``labels`` as value -> name).
``imagesUnlabeled/`` holds scans without labels (semi-supervised extension);
``imagesTs/`` with ``labelsTs/`` is a labeled test set. Optional
``"regions"`` in dataset.json (name -> list of label values) define
region-based evaluation (e.g. BraTS whole tumour).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from semiseg.data.case import Case, CaseRef
from semiseg.data.io import file_ending, geometry, read_volume, strip_ending, unreadable_reason
from semiseg.data.layout import Layout
from semiseg.errors import DatasetError

_CHANNEL_SUFFIX = re.compile(r"^(.*)_(\d{4})$")


def parse_dataset_json(path: Path) -> dict:
    """Read dataset.json and normalise labels to name -> value and channels to a list of names."""
    if not path.is_file():
        raise DatasetError(f"{path}: dataset.json is missing (it names the labels and channels)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: {unreadable_reason(path, exc)}") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: must hold a JSON object ({{\"labels\": ..., \"channel_names\": ...}}), not a {type(meta).__name__}")
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise DatasetError(f"{path}: 'labels' must map label names to values (nnU-Net v2) or values to names (MSD)")
    try:
        if all(str(k).lstrip("-").isdigit() for k in labels):  # MSD v1: {"0": "background"}
            by_name = {str(v): int(k) for k, v in labels.items()}
        else:
            by_name = {str(k): int(v) for k, v in labels.items()}
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: label values must be integers (region lists go under 'regions')") from None
    channels = meta.get("channel_names", meta.get("modality", {"0": "image"}))
    key = "channel_names" if "channel_names" in meta else "modality"
    if isinstance(channels, list) and channels:  # ["CT"]: one name per channel, in order
        channel_list = [str(c) for c in channels]
    elif isinstance(channels, dict) and channels and all(str(k).isdigit() for k in channels):
        channel_list = [str(channels[k]) for k in sorted(channels, key=lambda s: int(s))]
    else:
        raise DatasetError(f"{path}: '{key}' must map channel numbers to names, e.g. {{\"0\": \"CT\"}}; got {channels!r}")
    regions = meta.get("regions", {})
    if not isinstance(regions, dict):
        raise DatasetError(f"{path}: 'regions' must map region names to lists of label values; got {regions!r}")
    num_training = meta.get("numTraining")
    return {
        "labels": by_name,
        "channels": channel_list,
        "file_ending": meta.get("file_ending", ".nii.gz"),
        "regions": {str(k): [int(x) for x in (v if isinstance(v, list) else [v])] for k, v in regions.items()},
        "name": meta.get("name", path.parent.name),
        "num_training": num_training if isinstance(num_training, int) else None,
    }


class MSDLayout(Layout):
    name = "msd"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.meta = parse_dataset_json(self.root / "dataset.json")
        values = sorted(self.meta["labels"].values())
        if values != list(range(len(values))):
            raise DatasetError(f"{self.root / 'dataset.json'}: label values must be 0..N-1; got {values}")
        inv = {v: k for k, v in self.meta["labels"].items()}
        self.num_classes = len(values)
        self.class_names = [inv[v] for v in values]
        self.in_channels = len(self.meta["channels"])
        self.regions = self.meta["regions"]
        self.ending = self.meta["file_ending"]
        self.warnings: list[str] = []
        self._scan_once()

    def _group_images(self, folder: Path) -> dict[str, list[Path]]:
        groups: dict[str, list[Path]] = defaultdict(list)
        if not folder.is_dir():
            return groups
        for p in sorted(folder.iterdir()):
            if p.is_symlink() and not p.exists():  # a dangling link or a link loop: say so, do not skip it silently
                self._problems.append(f"{p}: {unreadable_reason(p)}")
                continue
            if p.name.startswith(".") or not p.is_file():
                continue
            if file_ending(p) != self.ending:
                self._problems.append(f"{p}: file ending '{file_ending(p)}' differs from dataset.json's '{self.ending}'")
                continue
            stem = strip_ending(p)
            m = _CHANNEL_SUFFIX.match(stem)
            groups[m.group(1) if m else stem].append(p)
        for case, files in list(groups.items()):
            plain = [f for f in files if not _CHANNEL_SUFFIX.match(strip_ending(f))]
            if plain and len(files) > 1:
                self._problems.append(f"{folder}: both {plain[0].name} and {[f.name for f in files if f not in plain][0]} "
                                      f"name case '{case}'; use one file per case or one file per channel (_0000, _0001, ...)")
                del groups[case]
                continue
            if len(files) > 1 or _CHANNEL_SUFFIX.match(strip_ending(files[0])):
                idx = sorted(int(_CHANNEL_SUFFIX.match(strip_ending(f)).group(2)) for f in files)  # type: ignore[union-attr]
                if idx != list(range(len(files))):
                    self._problems.append(f"{folder}/{case}: channel files {idx} are not numbered 0000..{len(files) - 1:04d}")
                elif len(files) != self.in_channels:
                    self._problems.append(
                        f"{folder}/{case}: {len(files)} channel files but dataset.json names {self.in_channels} channels"
                    )
        return groups

    def _scan(self) -> list[CaseRef]:
        refs: list[CaseRef] = []
        tr = self._group_images(self.root / "imagesTr")
        if not (self.root / "imagesTr").is_dir():
            self._problems.append(f"{self.root / 'imagesTr'}: folder is missing")
        labels_tr = self.root / "labelsTr"
        label_names = {strip_ending(p) for p in labels_tr.glob(f"*{self.ending}")} if labels_tr.is_dir() else set()
        for case in sorted(tr):
            lab = labels_tr / f"{case}{self.ending}"
            if case not in label_names:
                self._problems.append(f"{tr[case][0]}: no label file {lab}")
                continue
            refs.append(CaseRef(case, case, "train", tuple(sorted(tr[case])), lab))
        for orphan in sorted(label_names - set(tr)):
            self._problems.append(f"{labels_tr / (orphan + self.ending)}: label without an image in imagesTr")
        n_declared = self.meta.get("num_training")
        if n_declared is not None and n_declared != len(tr):
            self.warnings.append(f"{self.root / 'dataset.json'}: numTraining is {n_declared} but imagesTr holds {len(tr)} cases")
        for case, files in sorted(self._group_images(self.root / "imagesUnlabeled").items()):
            refs.append(CaseRef(case, case, "unlabeled", tuple(sorted(files))))
        ts = self._group_images(self.root / "imagesTs")
        labels_ts = self.root / "labelsTs"
        for case, files in sorted(ts.items()):
            lab = labels_ts / f"{case}{self.ending}"
            if lab.is_file():
                refs.append(CaseRef(case, case, "test", tuple(sorted(files)), lab))
        seen: dict[str, CaseRef] = {}
        for r in refs:
            if r.case_id in seen:
                first = seen[r.case_id]
                self._problems.append(f"case id '{r.case_id}' appears in both {first.pool} ({first.image_files[0]}) "
                                      f"and {r.pool} ({r.image_files[0]})")
            seen[r.case_id] = r
        return refs

    def load(self, ref: CaseRef) -> Case:
        arrays, spacing, meta = [], None, {}
        for f in ref.image_files:
            arr, sp, m = read_volume(f)
            parts = [arr] if arr.ndim == 3 else list(arr)
            if arrays and parts[0].shape != arrays[0].shape:
                raise DatasetError(f"{f}: channel shape {parts[0].shape} differs from {ref.image_files[0]} shape {arrays[0].shape}")
            arrays.extend(parts)
            if spacing is None:
                spacing, meta = sp, m
        image = np.stack(arrays).astype(np.float32)
        label = None
        if ref.label_file is not None:
            lab, lsp, lmeta = read_volume(ref.label_file)
            meta["label_spacing"] = lsp
            meta["label_geometry"] = geometry(lmeta)
            meta["label_file"] = str(ref.label_file)
            label = lab
        meta["image_files"] = [str(f) for f in ref.image_files]
        return Case(ref.case_id, image, label, tuple(spacing), ref.subject, meta)  # type: ignore[arg-type]
