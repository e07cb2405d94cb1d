"""``semiseg export RUN_DIR OUT``: a trained model for deployment without semiseg's training code.

Writes ``OUT/model.pt2`` (the inference network in evaluation mode as a ``torch.export`` program with a
dynamic batch size; load it with ``torch.export.load(path).module()``, no semiseg import needed) and ``OUT/preprocessing.json`` (everything needed to feed it:
input channels, classes, the preprocessing and normalisation settings, the slicing or sliding-window
geometry, and where the model came from). The exported model gives the same probabilities as the run's
network (tested).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from semiseg.data.h5layout import stored_axes, stored_intensity
from semiseg.errors import ConfigError
from semiseg.evaluation.run_eval import load_model


def export_model(run_dir: Path, out: Path, which: str = "best", overwrite: bool = False) -> dict[str, Path]:
    """Trace the run's inference network and write it with its preprocessing parameters."""
    out = Path(out)
    targets = {"model": out / "model.pt2", "preprocessing": out / "preprocessing.json"}
    existing = [p for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{existing[0]} exists already; use --overwrite or another folder")
    model = load_model(Path(run_dir), "cpu", which)
    cfg = model.cfg
    net = model.network.eval()
    size = list(cfg.data.patch_size)
    example = torch.zeros(2, model.info.in_channels, *size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    out.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(targets["model"]))
    axis_order = "(C, Z, Y, X): a NIfTI/ITK volume's (x, y, z) axes reversed, as semiseg reads volumes"
    intensity = "as read"
    if cfg.data.layout == "h5":  # trained on the h5 release's arrays: a new scan is brought into their form first
        if stored_axes(cfg.data.h5) == "xyz":
            axis_order = "(C, X, Y, Z): a NIfTI/ITK volume's own (x, y, z) axis order (the training files' order)"
        intensity = f"{stored_intensity(cfg.data.h5)} per volume (how the training files were made), then 'preprocessing'"
    meta: dict[str, Any] = {
        "format": "semiseg-export-1",
        "source_checkpoint": str(model.checkpoint),
        "step": model.step,
        "network": {"name": cfg.network.name, "kwargs": cfg.network.kwargs, "spatial_dims": cfg.data.spatial_dims,
                    "size_divisor": int(net.size_divisor)},
        "input": {"channels": model.info.in_channels, "axis_order": axis_order,
                  "patch_size": size, "shape": "(batch, channels, *patch_size); any batch size", "slice_axis": cfg.data.slice_axis, "slice_mode": cfg.data.slice_mode},
        "intensity_before_preprocessing": intensity,
        "preprocessing": cfg.data.preprocessing.model_dump(mode="json"),
        "output": {"classes": model.info.class_names, "regions": model.info.regions,
                   "activation": "softmax over axis 1 of the logits"},
        "inference": {"sw_overlap": cfg.eval.sw_overlap, "sw_mode": cfg.eval.sw_mode,
                      "note": "2D resize mode: each slice resized to patch_size (bilinear) and back; otherwise "
                              "sliding windows of patch_size (MONAI's sliding_window_inference)"},
    }
    targets["preprocessing"].write_text(json.dumps(meta, indent=2) + "\n")
    return targets
