"""``semiseg predict MODEL INPUT OUTPUT``: label maps for new scans, in the input's geometry.

INPUT is one file or a folder: NIfTI/ITK volumes (nnU-Net multi-channel files
``CASE_0000.nii.gz`` ... are grouped) or 2D images (PNG/TIF/...). Volumes are
written as NIfTI with the input's affine and header, 2D images as PNG. The
output folder may not be, or lie inside, the input folder, and existing
outputs are not overwritten without ``overwrite``.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from semiseg.config.schema import DataConfig
from semiseg.data.case import Case
from semiseg.data.h5layout import as_stored, to_stored_order
from semiseg.data.io import IMAGE2D_ENDINGS, ITK_ENDINGS, NIFTI_ENDINGS, file_ending, read_image2d, read_volume, strip_ending, write_nifti_like, write_png
from semiseg.errors import ConfigError, DatasetError
from semiseg.evaluation.postprocess import largest_component_per_class
from semiseg.evaluation.run_eval import load_model, postprocess_variants, predict_case

_CHANNEL = re.compile(r"^(.*)_(\d{4})$")


def group_inputs(inp: Path) -> dict[str, list[Path]]:
    files = [inp] if inp.is_file() else sorted(p for p in inp.iterdir() if p.is_file() and not p.name.startswith("."))
    groups: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        end = file_ending(f)
        if end not in NIFTI_ENDINGS + ITK_ENDINGS + IMAGE2D_ENDINGS:
            continue
        stem = strip_ending(f)
        m = _CHANNEL.match(stem) if end not in IMAGE2D_ENDINGS else None
        groups[m.group(1) if m else stem].append(f)
    if not groups:
        raise DatasetError(f"{inp}: no image files found (NIfTI, {', '.join(ITK_ENDINGS)}, {', '.join(IMAGE2D_ENDINGS)})")
    return dict(groups)


def read_input_case(case_id: str, files: list[Path], data: DataConfig) -> Case:
    """One input case in the form of the model's training data: a model trained on the h5 layout gets volumes in
    its files' axis order and intensity normalisation (:func:`semiseg.data.h5layout.as_stored`); the case's meta
    keeps the file's geometry (:func:`written_order` brings a prediction back to it)."""
    if file_ending(files[0]) in IMAGE2D_ENDINGS:
        img = read_image2d(files[0], data.folder2d.grayscale)[:, None]
        return Case(case_id, img, None, (1.0, 1.0, 1.0), case_id, {"source": str(files[0]), "is_2d": True})
    arrays, spacing, meta = [], None, {}
    for f in sorted(files):
        arr, sp, m = read_volume(f)
        arrays.extend([arr] if arr.ndim == 3 else list(arr))
        if spacing is None:
            spacing, meta = sp, m
    case = Case(case_id, np.stack(arrays).astype(np.float32), None, spacing, case_id, meta)  # type: ignore[arg-type]
    return as_stored(case, data.h5) if data.layout == "h5" else case


def written_order(prediction: np.ndarray, data: DataConfig) -> np.ndarray:
    """A volume's label map from the model's axis order back to the (z, y, x) of the file it was read from."""
    return to_stored_order(prediction, data.h5) if data.layout == "h5" else prediction


def check_output_location(inp: Path, out: Path) -> None:
    inp_dir = (inp if inp.is_dir() else inp.parent).resolve()
    o = out.resolve()
    if o == inp_dir or inp_dir in o.parents:
        raise ConfigError(f"output folder '{out}' lies inside the input folder '{inp_dir}'; choose another folder")


def input_kind_warning(model_layout: str, files: list[Path]) -> str | None:
    """A warning when the input's kind (2D image or volume) differs from what the model was trained on."""
    is_2d = file_ending(files[0]) in IMAGE2D_ENDINGS
    if model_layout == "folder2d" and not is_2d:
        return f"{files[0]}: a volume, but the model was trained on 2D images (layout folder2d)"
    if model_layout != "folder2d" and is_2d:
        return f"{files[0]}: a 2D image, but the model was trained on volumes (layout {model_layout})"
    return None


def predict_path(model_path: Path, inp: Path, out: Path, device: str = "cpu", overwrite: bool = False,
                 say: Callable[[str], None] | None = None, postprocess: str = "none") -> list[Path]:
    """Predict every input case; a case that fails is reported and the others are still written.
    ``postprocess``: ``largest_component`` keeps each class's largest connected component (as ``evaluate`` does).

    Raises :class:`DatasetError` naming every failed input after the rest are written.
    """
    inp, out = Path(inp), Path(out)
    say = say or (lambda m: print(m, file=sys.stderr))
    postprocess_variants(postprocess)
    if not inp.exists():
        raise DatasetError(f"input '{inp}' does not exist")
    check_output_location(inp, out)
    model = load_model(model_path, device)
    groups = group_inputs(inp)
    out.mkdir(parents=True, exist_ok=True)
    planned = {}
    for cid, files in groups.items():
        is_2d = file_ending(files[0]) in IMAGE2D_ENDINGS
        planned[cid] = out / (f"{cid}.png" if is_2d else f"{cid}.nii.gz")
    existing = [p for p in planned.values() if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{len(existing)} output file(s) exist already (e.g. {existing[0]}); use --overwrite")
    written: list[Path] = []
    failures: list[str] = []
    for cid, files in groups.items():
        warning = input_kind_warning(model.cfg.data.layout, files)
        if warning:
            say(f"warning: {warning}")
        try:
            written.append(_predict_one(model, cid, files, planned[cid], device, postprocess))
        except Exception as exc:  # one unreadable input must not stop the others
            failures.append(f"{files[0]}: {exc}")
            say(f"failed: {files[0]}: {exc}")
    if failures:
        raise DatasetError(f"{len(failures)} of {len(groups)} input(s) could not be predicted "
                           f"({len(written)} written to {out})", failures[:20])
    return written


def _predict_one(model: Any, cid: str, files: list[Path], target: Path, device: str, postprocess: str = "none") -> Path:
    case = read_input_case(cid, files, model.cfg.data)
    pred, _ = predict_case(model, case, device)
    if postprocess == "largest_component":
        pred = largest_component_per_class(pred, model.info.num_classes)
    if target.suffix == ".png":
        scale = 255 if model.info.num_classes == 2 else 1
        write_png(pred[0], target, scale)
        return target
    pred = written_order(pred, model.cfg.data)
    if "affine" in case.meta:
        write_nifti_like(pred, target, case.meta)
    else:
        import SimpleITK as sitk

        img = sitk.GetImageFromArray(pred.astype(np.uint8))
        img.CopyInformation(case.meta["itk"])
        target = target.with_name(f"{cid}{file_ending(files[0])}")
        sitk.WriteImage(img, str(target))
    return target
