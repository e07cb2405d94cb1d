"""Replayable paired spatial augmentation, batched on the model's device (EquiReg, Schölin 2020, Sec. 6.2).

EquiReg needs ``T(p(x))`` and ``p(T(x))`` for the *same* random ``T``: the transform is drawn
once per sample (:func:`draw_transform`, from a seeded generator) and stored as parameters, then
replayed identically on images, label maps and probability maps (:class:`ReplayableTransform`).
Every transform is one ``grid_sample`` with a sampling grid computed from the stored parameters
(about 10 ms per batch of eight 128x128 maps on CPU).

A transform is a sequence of operations in random order (flips, translations, rotation, shear,
scale, elastic distortion). Applying them one after another to an image, as imgaug does, fills
the pixels each warp creates with 0; here the coordinate maps are composed instead and the image
is interpolated once (no repeated blurring), while a pixel stays *valid* only if its source lies
inside the image after every operation, exactly the pixels that sequential warping would not
have zero-filled. Invalid pixels become 0 in images, background in label maps, background
probability 1 in probability maps, and are masked out of losses (:attr:`ReplayableTransform.valid`).

Coordinates are in pixels, centred on the image centre, in ``grid_sample``'s order (x, y[, z]).
Policies (:class:`AugmentationPolicy`): :func:`weak_policy` is EquiReg Table 4 (flips 50%,
translation +-10%, all applied in random order); :func:`strong_policy` is Table 5 (the weak ones
plus rotation +-20 deg, shear +-20%, scale +-10%, elastic alpha=720 sigma=24 px; 3 to 8 of them
in random order). In 3D, rotation turns about each axis by an angle in the range and shear
fills every off-diagonal term; the elastic field is ``alpha * gaussian(U(-1, 1) noise, sigma)``
per component as in imgaug/Simard et al. (kernel truncated at 4 sigma or the image size).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field as dc_field

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, model_validator


class AugmentationPolicy(BaseModel):
    """Ranges of a random spatial transform (0 turns an operation off)."""

    model_config = ConfigDict(extra="forbid")

    flip: float = 0.5
    """Probability of flipping along each axis (when the flip operation is chosen)."""
    translate: float = 0.1
    """Shift along each axis, uniform in +-translate x the image size."""
    rotate_deg: float = 0.0
    shear: float = 0.0
    """Shear factor, uniform in +-shear."""
    scale: float = 0.0
    """Zoom factor, uniform in 1 +- scale."""
    elastic_alpha: float = 0.0
    """Elastic displacement magnitude (pixels per unit of smoothed noise; 0 = off)."""
    elastic_sigma: float = 24.0
    """Gaussian smoothing of the elastic noise, in pixels."""
    min_ops: int | None = None
    """Apply a random number of operations in [min_ops, max_ops]; None: every operation, in random order."""
    max_ops: int | None = None

    @model_validator(mode="after")
    def _check(self) -> "AugmentationPolicy":
        if (self.min_ops is None) != (self.max_ops is None):
            raise ValueError("give both min_ops and max_ops, or neither")
        if self.min_ops is not None and not 0 <= self.min_ops <= self.max_ops:  # type: ignore[operator]
            raise ValueError(f"need 0 <= min_ops <= max_ops; got {self.min_ops}, {self.max_ops}")
        for name in ("flip", "translate", "shear", "scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 0 <= self.scale < 1:
            raise ValueError("scale must be in [0, 1)")
        return self


def weak_policy() -> AugmentationPolicy:
    """EquiReg Table 4: flips with 50% probability and translations of +-10%, all in random order."""
    return AugmentationPolicy(flip=0.5, translate=0.1)


def strong_policy() -> AugmentationPolicy:
    """EquiReg Table 5: the weak operations plus rotation, shear, scale and elastic distortion; 3 to 8 of them."""
    return AugmentationPolicy(flip=0.5, translate=0.1, rotate_deg=20.0, shear=0.2, scale=0.1,
                              elastic_alpha=720.0, elastic_sigma=24.0, min_ops=3, max_ops=8)


@dataclass
class _Step:
    """One position in the operation sequence, for the whole batch."""

    matrix: torch.Tensor
    """(N, d, d+1) affine coordinate map (identity for samples doing nothing or an elastic step here)."""
    elastic: torch.Tensor
    """(N,) bool: the samples whose operation at this position is the elastic distortion."""


@dataclass
class ReplayableTransform:
    """A batch of drawn spatial transforms; apply it to any (N, C, *size) tensor, as often as needed."""

    size: tuple[int, ...]
    steps: list[_Step]
    displacement: torch.Tensor | None = None
    """(N, d, *size) elastic displacement in pixels (grid order), or None."""
    _cache: dict[str, torch.Tensor] = dc_field(default_factory=dict, repr=False)

    @property
    def batch_size(self) -> int:
        return self.steps[0].matrix.shape[0] if self.steps else 0

    @property
    def spatial_dims(self) -> int:
        return len(self.size)

    def _half(self, device: torch.device) -> torch.Tensor:
        """Half the extent of the pixel centres per grid axis: (size - 1) / 2 in (x, y[, z]) order."""
        return (torch.tensor(self.size[::-1], dtype=torch.float32, device=device) - 1) / 2

    def _compute(self) -> None:
        with full_precision(self.steps[0].matrix.device):
            self._compute_float32()

    def _compute_float32(self) -> None:
        d = self.spatial_dims
        m0 = self.steps[0].matrix
        device = m0.device
        axes = [torch.arange(s, dtype=torch.float32, device=device) - (s - 1) / 2 for s in self.size]
        mesh = torch.meshgrid(*axes, indexing="ij")  # spatial order (z,) y, x
        u = torch.stack(mesh[::-1], dim=-1).expand(self.batch_size, *self.size, d).reshape(self.batch_size, -1, d)
        half = self._half(device)
        valid = torch.ones(u.shape[:2], dtype=torch.bool, device=device)
        for step in reversed(self.steps):  # the last operation's coordinate map is applied first
            u = u @ step.matrix[:, :, :d].transpose(1, 2) + step.matrix[:, None, :, d]
            if self.displacement is not None and bool(step.elastic.any()):
                disp = _sample_field(self.displacement, u, half, self.size)
                u = u + disp * step.elastic[:, None, None].to(u.dtype)
            valid &= (u.abs() <= half + 1e-3).all(dim=-1)
        self._cache["coords"] = u.reshape(self.batch_size, *self.size, d)
        # sample valid pixels strictly inside the hull of pixel centres (no blending with the zero padding)
        inside = torch.minimum(torch.maximum(u, -half), half)
        self._cache["grid"] = (inside / (half + 0.5)).reshape(self.batch_size, *self.size, d)
        self._cache["valid"] = valid.reshape(self.batch_size, 1, *self.size)

    def _get(self, key: str) -> torch.Tensor:
        if key not in self._cache:
            self._compute()
        return self._cache[key]

    @property
    def coordinates(self) -> torch.Tensor:
        """(N, *size, d): source pixel coordinate (centred, grid order) of every output pixel."""
        return self._get("coords")

    @property
    def valid(self) -> torch.Tensor:
        """(N, 1, *size) bool: output pixels whose source stayed inside the image through every operation."""
        return self._get("valid")

    def apply(self, x: torch.Tensor, mode: str = "bilinear", fill: float = 0.0) -> torch.Tensor:
        """Warp (N, C, *size) ``x``; invalid pixels get ``fill``."""
        self._check(x)
        grid = self._get("grid")
        with full_precision(x.device):
            y = F.grid_sample(x.float(), grid, mode=mode, padding_mode="zeros", align_corners=False)
        return torch.where(self.valid, y, torch.full_like(y, fill))

    def apply_image(self, image: torch.Tensor) -> torch.Tensor:
        """Bilinear warp of an image batch; created pixels are 0 (EquiReg Sec. 6.2)."""
        return self.apply(image, "bilinear", 0.0).to(image.dtype)

    def apply_label(self, label: torch.Tensor) -> torch.Tensor:
        """Nearest-neighbour warp of an integer (N, 1, *size) label map; created pixels are background 0."""
        return self.apply(label.float(), "nearest", 0.0).round().to(label.dtype)

    def apply_probabilities(self, probs: torch.Tensor) -> torch.Tensor:
        """Bilinear warp of (N, C, *size) class probabilities; created pixels are background with probability 1."""
        y = self.apply(probs, "bilinear", 0.0)
        background = torch.zeros_like(y)
        background[:, 0] = 1.0
        return torch.where(self.valid, y, background)

    def affine_matrix(self) -> torch.Tensor:
        """(N, d+1, d+1) homogeneous matrix of the composed coordinate map (transforms without elastic steps)."""
        if self.displacement is not None and any(bool(s.elastic.any()) for s in self.steps):
            raise ValueError("this transform has an elastic step: it has no single affine matrix")
        d = self.spatial_dims
        total = torch.eye(d + 1, device=self.steps[0].matrix.device).expand(self.batch_size, d + 1, d + 1)
        for step in self.steps:  # c = c_1 o c_2 o ... o c_n
            total = total @ _homogeneous(step.matrix)
        return total

    def inverse(self) -> "ReplayableTransform":
        """The inverse transform (affine steps only): replaying it after this one restores the input (valid pixels)."""
        self.affine_matrix()  # raises for elastic transforms
        d = self.spatial_dims
        steps = [_Step(torch.linalg.inv(_homogeneous(s.matrix))[:, :d], s.elastic) for s in reversed(self.steps)]
        return ReplayableTransform(self.size, steps, None)

    def _check(self, x: torch.Tensor) -> None:
        if tuple(x.shape[2:]) != self.size or x.shape[0] != self.batch_size:
            raise ValueError(
                f"this transform was drawn for {self.batch_size} samples of size {self.size}; got a tensor of shape {tuple(x.shape)}"
            )


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Autocast off on the CPU and on ``device``: transform geometry in float32 even inside a
    mixed-precision step (bf16 keeps ~3 significant digits: a pixel's error at coordinates of a few hundred)."""
    with contextlib.ExitStack() as stack:
        for kind in dict.fromkeys(["cpu", device.type]):
            stack.enter_context(torch.autocast(kind, enabled=False))
        yield


def _homogeneous(m: torch.Tensor) -> torch.Tensor:
    n, d = m.shape[0], m.shape[1]
    last = torch.zeros(n, 1, d + 1, dtype=m.dtype, device=m.device)
    last[:, 0, d] = 1
    return torch.cat([m, last], dim=1)


def _sample_field(fld: torch.Tensor, u: torch.Tensor, half: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Displacement (N, P, d) of the stored field at centred pixel coordinates ``u`` (N, P, d); border padding."""
    n, p, d = u.shape
    grid = (u / (half + 0.5)).reshape(n, p, *([1] * (d - 1)), d)
    out = F.grid_sample(fld, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (N, d, P, 1[, 1])
    return out.reshape(n, d, p).transpose(1, 2)


def _gaussian_smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian filter of (N, C, *S) along every spatial axis, reflect padding, truncated at 4 sigma."""
    for axis in range(2, x.ndim):
        size = x.shape[axis]
        radius = max(1, min(int(4 * sigma + 0.5), size - 1))
        t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        kernel = torch.exp(-0.5 * (t / sigma) ** 2)
        kernel = kernel / kernel.sum()
        moved = x.movedim(axis, -1)
        shape = moved.shape
        flat = moved.reshape(-1, 1, size)
        flat = F.conv1d(F.pad(flat, (radius, radius), mode="reflect"), kernel.view(1, 1, -1))
        x = flat.reshape(shape).movedim(-1, axis)
    return x


def _rotation(d: int, angles: list[float]) -> torch.Tensor:
    if d == 2:
        c, s = math.cos(angles[0]), math.sin(angles[0])
        return torch.tensor([[c, -s], [s, c]])
    r = torch.eye(3)
    for axis, a in enumerate(angles):  # about x, then y, then z (grid order)
        c, s = math.cos(a), math.sin(a)
        i, j = [k for k in range(3) if k != axis]
        m = torch.eye(3)
        m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
        r = m @ r
    return r


def _operations(policy: AugmentationPolicy, d: int) -> list[tuple[str, int]]:
    ops: list[tuple[str, int]] = []
    if policy.flip > 0:
        ops += [("flip", a) for a in range(d)]
    if policy.translate > 0:
        ops += [("translate", a) for a in range(d)]
    for name, on in (("rotate", policy.rotate_deg > 0), ("shear", policy.shear > 0), ("scale", policy.scale > 0),
                     ("elastic", policy.elastic_alpha > 0)):
        if on:
            ops.append((name, -1))
    return ops


def draw_transform(policy: AugmentationPolicy, batch_size: int, size: tuple[int, ...] | list[int],
                   generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> ReplayableTransform:
    """Draw one transform per sample from ``policy`` (all random draws from ``generator`` on the CPU).

    The same generator state gives the same transform on any device.
    """
    with full_precision(torch.device(device)):
        return _draw(policy, batch_size, size, generator, device)


def _draw(policy: AugmentationPolicy, batch_size: int, size: tuple[int, ...] | list[int],
          generator: torch.Generator | None, device: torch.device | str) -> ReplayableTransform:
    size = tuple(int(s) for s in size)
    d = len(size)
    if d not in (2, 3):
        raise ValueError(f"size must have 2 or 3 entries; got {size}")
    g = generator if generator is not None else torch.Generator().manual_seed(int(torch.randint(2**62, (1,)).item()))

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=g))

    ops = _operations(policy, d)
    extent = torch.tensor(size[::-1], dtype=torch.float32)  # grid order
    per_sample: list[list[tuple[torch.Tensor, bool]]] = []
    wants_field = torch.zeros(batch_size, dtype=torch.bool)
    for i in range(batch_size):
        order = torch.randperm(len(ops), generator=g).tolist()
        if policy.min_ops is not None:
            hi = min(policy.max_ops, len(ops))  # type: ignore[type-var]
            lo = min(policy.min_ops, hi)
            k = int(torch.randint(lo, hi + 1, (1,), generator=g))
            order = order[:k]
        seq: list[tuple[torch.Tensor, bool]] = []
        for j in order:
            name, axis = ops[j]
            lin, shift = torch.eye(d), torch.zeros(d)
            if name == "flip":
                if float(torch.rand((), generator=g)) < policy.flip:
                    lin[axis, axis] = -1.0
            elif name == "translate":
                shift[axis] = -uniform(-policy.translate, policy.translate) * extent[axis]
            elif name == "rotate":
                r = math.radians(policy.rotate_deg)
                lin = _rotation(d, [uniform(-r, r) for _ in range(1 if d == 2 else 3)])
            elif name == "shear":
                for a in range(d):
                    for b in range(d):
                        if a != b:
                            lin[a, b] = uniform(-policy.shear, policy.shear)
            elif name == "scale":
                lin = lin / uniform(1 - policy.scale, 1 + policy.scale)
            seq.append((torch.cat([lin, shift[:, None]], dim=1), name == "elastic"))
            wants_field[i] |= name == "elastic"
        per_sample.append(seq)
    fld = None
    if bool(wants_field.any()):
        noise = torch.rand((int(wants_field.sum()), d, *size), generator=g) * 2 - 1
        smooth = _gaussian_smooth(noise.to(device), policy.elastic_sigma) * policy.elastic_alpha
        fld = torch.zeros((batch_size, d, *size), device=device)
        fld[wants_field.to(device)] = smooth
    n_steps = max((len(s) for s in per_sample), default=0)
    identity = torch.cat([torch.eye(d), torch.zeros(d, 1)], dim=1)
    steps = []
    for t in range(max(n_steps, 1)):
        mats = torch.stack([s[t][0] if t < len(s) else identity for s in per_sample]) if batch_size else torch.zeros(0, d, d + 1)
        flags = torch.tensor([t < len(s) and s[t][1] for s in per_sample], dtype=torch.bool)
        steps.append(_Step(mats.to(device), flags.to(device)))
    return ReplayableTransform(size, steps, fld)
