"""Typed configuration of a run: one pydantic model per section, unknown keys rejected.

A run is fully described by a :class:`RunConfig`; its resolved form is written to
``config.yaml`` in the run folder, so ``semiseg resume`` and ``semiseg predict``
rebuild exactly the same pipeline.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class H5LayoutConfig(_Strict):
    """The h5 layout of the semi-supervised literature (ACDC slices/volumes, left atrium)."""

    data_dir: str = "data"
    """Folder (relative to the dataset root) that holds the h5 files (ACDC: ``data``)."""
    train_list: str | None = "train.list"
    val_list: str | None = "val.list"
    test_list: str | None = "test.list"
    slice_pattern: str = "{case}_slice_{index}.h5"
    """How 2D training slices of a volume are named, when only slices are stored."""
    subject_regex: str = r"^(patient\d+)"
    """Groups volumes by subject (patient) so splits never separate a patient's frames."""
    case_file: str | None = None
    """Left-atrium variant: each list entry is a folder holding this h5 (e.g. ``mri_norm2.h5``)."""
    spacing: list[float] | None = None
    """Voxel spacing (mm, per stored axis) of every case: h5 files do not store it (LA 2018: 0.625 isotropic).
    None: unit spacing, distances in voxels."""
    axes: Literal["auto", "zyx", "xyz"] = "auto"
    """Order of the stored arrays' spatial axes. Training uses the arrays as stored (patch sizes and ``rot90_axes``
    are in this order, as in the literature's code); ``semiseg predict`` and ``advise`` bring a NIfTI/ITK volume
    (read as (z, y, x)) into this order and write the prediction back in the file's. ``auto``: ``xyz`` for the
    left-atrium variant (``case_file``: the UA-MT release stores pynrrd's (x, y, z) arrays, slice axis last),
    else ``zyx`` (SSL4MIS's ACDC files)."""
    intensity: Literal["auto", "as_read", "zscore", "minmax"] = "auto"
    """How the stored images were normalised, per volume, when the files were made. ``semiseg predict`` and
    ``advise`` apply it to a NIfTI/ITK volume before the run's own preprocessing, so that a raw scan reaches the
    network as the training files did. ``auto``: ``zscore`` for the left-atrium variant (UA-MT's ``mri_norm2``:
    (x - mean) / std over the whole scan, before the crop around the atrium, so a new uncropped scan gets exactly
    the release's normalisation), else ``minmax`` (SSL4MIS's ACDC files: (x - min) / (max - min) per volume).
    Inputs are taken to be scans as acquired: a volume cut out of the release itself is normalised already."""


class Folder2DConfig(_Strict):
    """2D image/mask folders (PNG, TIF, GIF; grey or RGB)."""

    images: str = "images"
    labels: str | None = "labels"
    unlabeled: str | None = None
    fov: str | None = None
    test_images: str | None = None
    test_labels: str | None = None
    test_fov: str | None = None
    id_regex: str = r"^(.*)$"
    """Regex applied to file stems; its first group is the case id that pairs image, mask and FOV."""
    label_values: dict[int, int] | None = None
    """Map of stored mask values to class indices, e.g. ``{0: 0, 255: 1}``."""
    label_threshold: int | None = None
    """Alternative to ``label_values`` for binary masks: value > threshold -> class 1."""
    grayscale: bool = False
    """Convert RGB images to one grey channel."""
    mask_palette: Literal["grey", "index"] = "grey"
    """Palette (indexed) masks: read their grey values (``grey``) or their palette indices (``index``)."""


class PreprocessingConfig(_Strict):
    normalize: Literal["zscore", "minmax", "percentile", "ct", "none"] = "zscore"
    percentiles: tuple[float, float] = (0.5, 99.5)
    ct_window: tuple[float, float] = (-1000.0, 1000.0)
    nonzero_only: bool = False
    """Compute z-score statistics inside the non-zero region only (brain MRI)."""
    target_spacing: list[float] | None = None
    crop_nonzero: bool = False
    """Crop to the bounding box of non-zero voxels (drops zero padding and all-zero slices; EquiReg Sec. 6.1)."""
    bias_correction: Literal["none", "n4"] = "none"
    """N4ITK bias-field correction per channel (SimpleITK, the ``itk`` extra), before normalisation."""
    histogram_equalization: bool = False
    """Per-channel histogram equalisation to [0, 1] over the whole volume (EquiReg Sec. 6.1; inside the
    non-zero region when ``nonzero_only``), before ``normalize`` (set ``normalize: none`` to keep [0, 1])."""
    histogram_bins: int = Field(256, ge=2)


class AugmentationConfig(_Strict):
    flip: float = Field(0.5, ge=0, le=1)
    """Probability of a flip along each spatial axis."""
    rot90: float = Field(0.5, ge=0, le=1)
    """Probability of a random 90-degree rotation in the in-plane axes."""
    rot90_axes: tuple[int, int] | None = None
    """The two spatial axes rot90 turns (default: the in-plane axes, (0, 1) in 2D and (1, 2) of (z, y, x) in 3D;
    the LA h5 files store the slice axis last, so their in-plane axes are (0, 1))."""
    affine: float = Field(0.2, ge=0, le=1)
    rotate_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.25)
    elastic: float = Field(0.0, ge=0, le=1)
    elastic_sigma: tuple[float, float] = (9.0, 13.0)
    elastic_magnitude: tuple[float, float] = (0.0, 900.0)
    intensity: float = Field(0.15, ge=0, le=1)
    """Probability of each intensity change (gamma, scale/shift, Gaussian noise)."""


class DataConfig(_Strict):
    layout: Literal["msd", "h5", "folder2d"] = "msd"
    root: str = "builtin:synthbrain"
    """Dataset folder (``~`` and ``$VARIABLES`` expanded), or ``builtin:synthbrain`` for the embedded dataset
    (generated and cached)."""
    spatial_dims: Literal[2, 3] = 2
    """2: the network sees 2D slices of volumes along ``slice_axis``; 3: 3D patches."""
    slice_axis: int = 0
    """Axis of the (z, y, x) volume along which 2D models slice (0 = axial for h5/NIfTI)."""
    num_classes: int | None = Field(None, ge=1)
    """Including background. Taken from dataset.json for the MSD layout."""
    class_names: list[str] | None = None
    in_channels: int | None = Field(None, ge=1)
    patch_size: list[int] = Field(default_factory=lambda: [128, 128])
    """2D: every slice is resized to this size (``slice_mode: resize``) or random crops of this size are taken
    (``slice_mode: patch``); 3D: size of random training patches and of the sliding window."""
    slice_mode: Literal["resize", "patch"] = "resize"
    """2D only. ``resize``: whole slices resized to ``patch_size`` (the ACDC protocol of the literature);
    ``patch``: random ``patch_size`` crops of full-resolution slices for training and a 2D sliding window
    for prediction (thin structures such as retinal vessels or EM membranes, large images)."""
    foreground_oversample: float = Field(0.33, ge=0, le=1)
    """3D: fraction of patches centred on a foreground voxel (nnU-Net's 1/3)."""
    preprocessing: PreprocessingConfig = Field(default_factory=PreprocessingConfig)
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    h5: H5LayoutConfig = Field(default_factory=H5LayoutConfig)
    folder2d: Folder2DConfig = Field(default_factory=Folder2DConfig)
    synthbrain: dict[str, Any] = Field(default_factory=dict)
    """Options of the embedded generator (``n_cases``, ``spacing``, ``seed``)."""
    cache_in_memory: bool = True


class SplitConfig(_Strict):
    """Splits by subject (patient), never by slice.

    Counts are numbers of subjects; fractions (0 < x < 1) are fractions of the
    training subjects. Lists given by the layout (h5 list files, an MSD
    ``imagesTs`` with ``labelsTs``) take precedence for validation and test.
    """

    seed: int = 0
    labeled: float = Field(2, ge=0)
    """Labeled subjects: a count (>= 1) or a fraction of the training subjects (< 1)."""
    labeled_cases: list[str] | None = None
    """Explicit labeled cases (case ids); their subjects are labeled, ``labeled`` and ``labeled_selection`` are ignored."""
    labeled_selection: Literal["random", "first"] = "random"
    """``first``: the first subjects in sorted order (the ACDC protocol); ``random``: drawn with ``seed``."""
    unlabeled: Literal["rest", "none"] = "rest"
    """``rest``: every training subject that is not labeled; ``none``: no unlabeled data."""
    val: float = Field(2, ge=0)
    test: float = Field(4, ge=0)
    all_labeled: bool = False
    """Upper bound: every training subject is labeled (unlabeled set empty)."""


class NetworkConfig(_Strict):
    name: str = "unet"
    kwargs: dict[str, Any] = Field(default_factory=dict)


class MethodConfig(_Strict):
    name: str = "supervised"
    params: dict[str, Any] = Field(default_factory=dict)
    init_from: str | None = None
    """Checkpoint file, or run folder (its best checkpoint), whose inference network initialises the method's
    networks (e.g. ROAM's pre-trained model)."""


class OptimConfig(_Strict):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam/AdamW coefficients."""
    nesterov: bool = False
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["poly", "step", "cosine", "constant"] = "poly"
    poly_power: float = Field(0.9, gt=0)
    step_size: int = Field(2500, ge=1)
    step_gamma: float = Field(0.1, gt=0, le=1)
    warmup_iterations: int = Field(0, ge=0)
    hold_iterations: int = Field(0, ge=0)
    """Iterations at the base learning rate before the schedule (and its warm-up) starts from its own step 0 over
    the remaining iterations: a method's first stage that the paper trains with its own optimizer (BCP's
    pre-training, whose self-training schedule counts from the switch)."""
    grad_clip: float | None = Field(None, gt=0)


class TrainConfig(_Strict):
    iterations: int = Field(1000, ge=1)
    batch_size: int = Field(8, ge=1)
    """Labeled samples per step."""
    unlabeled_batch_size: int = Field(0, ge=0)
    """Unlabeled samples per step (0: the method gets no unlabeled batch)."""
    val_every: int = Field(200, ge=1)
    log_every: int = Field(20, ge=1)
    checkpoint_every: int = Field(200, ge=1)
    num_workers: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    """Mixed precision, applied on CUDA only (bf16/fp16 autocast is slow on CPU)."""
    compile: bool = False
    """torch.compile, applied on CUDA only."""
    channels_last: bool = True
    max_bad_steps: int = Field(10, ge=1)
    """A non-finite loss skips the step; this many in a row abort the run."""
    progress: Literal["auto", "on", "off"] = "auto"
    """Progress bar: ``auto`` shows it when stderr is a terminal (YAML's true/false also accepted)."""

    @field_validator("progress", "profile", mode="before")
    @classmethod
    def _progress_bool(cls, v: object) -> object:
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v
    threads: int | None = Field(None, ge=1)
    """torch intra-op threads (None: torch's default)."""
    profile: Literal["auto", "on", "off"] = "auto"
    """Wall time per phase of the loop (data, forward per network, losses, backward, EMA, validation, checkpoints)
    written to ``profile.csv``; ``auto``: on the CPU only (on CUDA each phase boundary synchronises the device)."""
    early_stop_patience: int | None = Field(None, ge=1)
    """Stop when this many validations in a row bring no better selection score (None: train every iteration)."""


EXECUTION_ONLY = ("threads", "progress", "profile")
"""``train`` settings that change how fast a run goes and what it prints, not what it trains: left out when runs are
compared (:func:`semiseg.methods.registry.resolved_config`), so a grid resumed or completed with more threads (or
without a progress bar) reuses its runs, and a resumed run takes the new values."""


class EvalConfig(_Strict):
    metrics: list[Literal["dice", "jaccard", "hd95", "asd", "assd", "hd95_vox", "asd_vox", "assd_vox"]] = Field(
        default_factory=lambda: ["dice", "jaccard", "hd95", "asd"]
    )
    """Distances in mm (the data's spacing); the ``_vox`` variants in voxels (the LA literature's unit)."""
    sw_overlap: float | list[float] = 0.5
    """Sliding-window overlap, one value or one per axis (UA-MT's stride 18/18/4 on 112x112x80: [0.84, 0.84, 0.95])."""
    sw_mode: Literal["gaussian", "constant"] = "gaussian"
    sw_batch_size: int = Field(4, ge=1)
    slice_batch_size: int = Field(16, ge=1)
    val_metrics: list[Literal["dice", "jaccard", "hd95", "asd", "assd", "hd95_vox", "asd_vox", "assd_vox"]] = Field(
        default_factory=lambda: ["dice"]
    )
    """Metrics computed at each validation (mean Dice and cross-entropy are always computed)."""
    equivariance: bool = False
    """Also score the equivariance Dice (EquiReg Sec. 7) of the evaluated cases under strong transforms."""
    equivariance_seed: int = 0
    select_by: Literal["dice", "loss", "last"] = "dice"
    """Keep the checkpoint with the best mean validation Dice, or the lowest validation cross-entropy
    (EquiReg Sec. 7: "the model version with the lowest categorical cross-entropy loss on the validation set"),
    or the final one (``last``: no selection; validation, if any cases, is only logged)."""


class RunConfig(_Strict):
    name: str = "run"
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _check(self) -> "RunConfig":
        if any(p < 1 for p in self.data.patch_size):
            raise ValueError(f"data.patch_size {self.data.patch_size}: every size must be >= 1")
        overlaps = self.eval.sw_overlap if isinstance(self.eval.sw_overlap, list) else [self.eval.sw_overlap]
        if any(not 0 <= o < 1 for o in overlaps):
            raise ValueError(f"eval.sw_overlap {self.eval.sw_overlap}: each value must be in [0, 1)")
        for key in ("labeled", "val", "test"):
            v = getattr(self.split, key)
            if v >= 1 and v != int(v):
                raise ValueError(f"split.{key} = {v}: a count (a whole number >= 1) or a fraction (0 < x < 1)")
        if len(self.data.patch_size) != self.data.spatial_dims:
            raise ValueError(
                f"data.patch_size {self.data.patch_size} has {len(self.data.patch_size)} entries "
                f"but data.spatial_dims is {self.data.spatial_dims}"
            )
        return self
