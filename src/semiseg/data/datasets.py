"""Training datasets: 2D slices of volumes (resized) and 3D patches with foreground over-sampling.

Items are requested as ``(index, seed)`` pairs by :class:`semiseg.data.sampling.StepBatchSampler`;
the seed drives every random choice for that sample (patch position, augmentation).
Labeled samples are ``{"image", "label"}``; unlabeled samples have no ``label`` key.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from semiseg.data.case import Case
from semiseg.data.transforms import apply_augmentation


def resize_slices(image: torch.Tensor, size: Sequence[int], label: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, C, H, W) images bilinear and (N, H, W) labels nearest to ``size``."""
    size = tuple(int(s) for s in size)
    if tuple(image.shape[-2:]) != size:
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        if label is not None:
            label = F.interpolate(label[:, None].float(), size=size, mode="nearest")[:, 0].to(label.dtype)
    return image, label


def volume_to_slices(case: Case, axis: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(C, Z, Y, X) along ``axis`` -> (N, C, H, W) images and (N, H, W) labels."""
    img = torch.from_numpy(np.moveaxis(case.image, axis + 1, 0)).contiguous()
    lab = torch.from_numpy(np.moveaxis(case.label, axis, 0).astype(np.int64)).contiguous() if case.label is not None else None
    return img, lab


class SliceDataset(Dataset):
    """Every slice of every case along ``axis``, resized to ``size`` once at construction."""

    def __init__(self, cases: Sequence[Case], axis: int, size: Sequence[int], labeled: bool, augmentation: Any = None) -> None:
        images, labels = [], []
        for case in cases:
            img, lab = volume_to_slices(case, axis)
            img, lab = resize_slices(img, size, lab if labeled else None)
            images.append(img)
            if labeled:
                if lab is None:
                    raise ValueError(f"case {case.case_id} has no label but is in a labeled dataset")
                labels.append(lab)
        self.images = torch.cat(images) if images else torch.empty(0)
        self.labels = torch.cat(labels) if labeled and labels else None
        self.augmentation = augmentation

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = item
        sample = {"image": self.images[index]}
        if self.labels is not None:
            sample["label"] = self.labels[index][None]
        out = apply_augmentation(self.augmentation, sample, seed)
        if "label" in out:
            out["label"] = out["label"][0].long()
        return out


class PatchDataset(Dataset):
    """Random 3D patches; a fraction ``foreground_oversample`` is centred on a random foreground voxel
    of a random present class (nnU-Net's scheme). Volumes smaller than the patch are zero-padded.

    With ``slice_axis`` the patches are 2D crops of the slices along that axis (``data.slice_mode: patch``).
    """

    def __init__(
        self, cases: Sequence[Case], patch_size: Sequence[int], labeled: bool, foreground_oversample: float = 0.33,
        augmentation: Any = None, slice_axis: int | None = None,
    ) -> None:
        self.cases = list(cases)
        patch = [int(p) for p in patch_size]
        self.slice_axis = slice_axis
        if slice_axis is not None:  # 2D crops: a patch one voxel thick along the slicing axis, squeezed after cropping
            patch.insert(slice_axis, 1)
        self.patch = tuple(patch)
        self.labeled = labeled
        self.fg = foreground_oversample if labeled else 0.0
        self.augmentation = augmentation
        self.fg_locations: list[dict[int, np.ndarray]] = []
        for c in self.cases:
            locs: dict[int, np.ndarray] = {}
            if labeled and c.label is not None:
                for k in np.unique(c.label):
                    if k > 0:
                        idx = np.argwhere(c.label == k)
                        if len(idx) > 5000:
                            idx = idx[np.random.default_rng(0).choice(len(idx), 5000, replace=False)]
                        locs[int(k)] = idx
            self.fg_locations.append(locs)

    def __len__(self) -> int:
        return len(self.cases)

    def _crop(self, arr: np.ndarray, start: Sequence[int], pad_value: float = 0.0) -> np.ndarray:
        spatial = arr.shape[-3:]
        out_shape = arr.shape[:-3] + self.patch
        out = np.full(out_shape, pad_value, dtype=arr.dtype)
        src, dst = [], []
        for s, p, n in zip(start, self.patch, spatial):
            a, b = max(s, 0), min(s + p, n)
            src.append(slice(a, b))
            dst.append(slice(a - s, b - s))
        out[(Ellipsis, *dst)] = arr[(Ellipsis, *src)]
        return out

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = item
        rng = np.random.default_rng(seed)
        case = self.cases[index]
        shape = case.image.shape[1:]
        locs = self.fg_locations[index]
        if locs and rng.random() < self.fg:
            cls = list(locs)[rng.integers(len(locs))]
            centre = locs[cls][rng.integers(len(locs[cls]))]
            start = [int(c) - p // 2 for c, p in zip(centre, self.patch)]
            start = [min(max(s, min(0, n - p)), max(n - p, 0)) for s, n, p in zip(start, shape, self.patch)]
        else:
            start = [int(rng.integers(min(0, n - p), max(n - p, 0) + 1)) for n, p in zip(shape, self.patch)]
        image = self._crop(case.image, start)
        label = self._crop(case.label.astype(np.int64), start) if self.labeled and case.label is not None else None
        if self.slice_axis is not None:
            image = np.take(image, 0, axis=self.slice_axis + 1)
            label = np.take(label, 0, axis=self.slice_axis) if label is not None else None
        sample = {"image": torch.from_numpy(np.ascontiguousarray(image))}
        if label is not None:
            sample["label"] = torch.from_numpy(np.ascontiguousarray(label))[None]
        out = apply_augmentation(self.augmentation, sample, int(rng.integers(2**31)))
        if "label" in out:
            out["label"] = out["label"][0].long()
        return out
