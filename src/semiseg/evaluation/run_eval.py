"""Load a trained model; evaluate a run on its held-out cases at the input's original geometry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from semiseg.config import RunConfig, validate_config
from semiseg.data.case import Case
from semiseg.data.layout import open_layout
from semiseg.data.preprocessing import preprocess_case, restore_probabilities
from semiseg.data.splits import Splits
from semiseg.engine.checkpoint import load_checkpoint, non_finite_entries, resolve_checkpoint
from semiseg.engine.data_setup import DatasetInfo, network_factory
from semiseg.errors import ConfigError
from semiseg.evaluation.inference import predict_probabilities
from semiseg.evaluation.postprocess import largest_component_per_class
from semiseg.evaluation.scoring import score_case, summarize, write_csv
from semiseg.networks import SegmentationNetwork


@dataclass
class LoadedModel:
    network: SegmentationNetwork
    cfg: RunConfig
    info: DatasetInfo
    checkpoint: Path
    step: int


def load_model(model: Path, device: torch.device | str = "cpu", which: str = "best") -> LoadedModel:
    path = resolve_checkpoint(model, which)
    ckpt = load_checkpoint(path, "cpu")
    cfg = validate_config(ckpt["config"])
    ds = ckpt["dataset"]
    info = DatasetInfo(ds["num_classes"], ds["in_channels"], list(ds["class_names"]), dict(ds.get("regions", {})))
    bad = non_finite_entries(ckpt["inference_state"])
    if bad:
        raise ConfigError(f"checkpoint '{path}' holds non-finite weights ({', '.join(bad[:3])}); it cannot predict. "
                          "Use an earlier checkpoint or retrain with a lower optim.lr")
    net = network_factory(cfg, info)()
    net.load_trunk(ckpt["inference_state"])  # a method's inference network may carry training-only heads (SASSNet's SDF)
    net.to(device).eval()
    return LoadedModel(net, cfg, info, path, int(ckpt["step"]))


def predict_preprocessed(model: LoadedModel, raw: Case, device: torch.device | str = "cpu") -> tuple[Case, torch.Tensor]:
    """Preprocess ``raw`` and predict: (the preprocessed case, probabilities on its grid)."""
    cfg = model.cfg
    case = preprocess_case(raw, cfg.data.preprocessing)
    if case.in_channels != model.info.in_channels:
        raise ConfigError(
            f"{raw.meta.get('source', raw.case_id)}: image has {case.in_channels} channels, the model expects {model.info.in_channels}"
        )
    probs = predict_probabilities(model.network, case.image, cfg.data.spatial_dims, cfg.data.patch_size, cfg.eval,
                                  cfg.data.slice_axis, device, cfg.train.channels_last, cfg.data.slice_mode)
    return case, probs


def restored_prediction(case: Case, probs: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
    """Probabilities on ``case``'s preprocessed grid back to the original geometry: (label map, probabilities)."""
    probs = restore_probabilities(probs, case)
    return probs.argmax(0).numpy().astype(np.int16), probs


def predict_case(model: LoadedModel, raw: Case, device: torch.device | str = "cpu") -> tuple[np.ndarray, torch.Tensor]:
    """Preprocess, predict and restore to ``raw``'s geometry: (label map, probabilities)."""
    return restored_prediction(*predict_preprocessed(model, raw, device))


POSTPROCESS = ("none", "largest_component")


def postprocess_variants(postprocess: str | Sequence[str]) -> list[str]:
    """The post-processing choices as a list; a :class:`ConfigError` for an unknown one (or none)."""
    variants = [postprocess] if isinstance(postprocess, str) else list(postprocess)
    unknown = [v for v in variants if v not in POSTPROCESS]
    if unknown or not variants:
        raise ConfigError(f"unknown post-processing {unknown}; choose {' or '.join(POSTPROCESS)}")
    return variants


def eval_dir_name(split: str, postprocess: str = "none") -> str:
    """``eval_{split}``, or ``eval_{split}_lcc`` for predictions reduced to their largest connected component."""
    return f"eval_{split}" if postprocess == "none" else f"eval_{split}_lcc"


def evaluate_run(run_dir: Path, split: str = "test", which: str = "best", device: str = "cpu",
                 out_dir: Path | None = None, save_predictions: bool = True, equivariance: bool | None = None,
                 postprocess: str | Sequence[str] = "none") -> dict[str, Any]:
    """Score a run's ``split`` cases (never used for model selection when ``split`` is test).

    Writes ``scores.csv`` (per case and class) and ``summary.csv`` into ``out_dir``
    (default ``RUN_DIR/eval_{split}``, ``..._lcc`` with post-processing) and returns both plus the
    predictions. ``equivariance`` (default: the run's ``eval.equivariance``) adds the equivariance
    Dice per case and class (``equivariance.csv``; metric ``equivariance_dice`` in the summary).
    ``postprocess``: ``largest_component`` keeps each class's largest connected component (the LA
    literature's post-processing) before scoring; several choices are scored from one prediction per
    case, each into its own folder (``out_dir`` then applies to the first), and the first is returned
    (all of them under ``"variants"``).
    """
    variants = postprocess_variants(postprocess)
    run_dir = Path(run_dir)
    model = load_model(run_dir, device, which)
    splits = Splits.load(run_dir / "splits.json")
    ids = getattr(splits, split)
    if not ids:
        raise ConfigError(f"run '{run_dir}' has no {split} cases")
    layout = open_layout(model.cfg.data)
    refs = {r.case_id: r for r in layout.refs()}
    metrics = list(model.cfg.eval.metrics)
    with_eq = model.cfg.eval.equivariance if equivariance is None else equivariance
    rows: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    predictions: dict[str, dict[str, np.ndarray]] = {v: {} for v in variants}
    eq_rows: list[dict[str, Any]] = []
    for cid in ids:
        raw = layout.load(refs[cid])
        case, probs = predict_preprocessed(model, raw, device)
        pred, _ = restored_prediction(case, probs)
        for v in variants:
            p = largest_component_per_class(pred, model.info.num_classes) if v == "largest_component" else pred
            predictions[v][cid] = p
            rows[v] += score_case(cid, p, raw.label.astype(np.int16), model.info.class_names, raw.spacing, metrics,
                                  model.info.regions, raw.meta.get("fov"))
        if with_eq:
            eq_rows += equivariance_rows(model, case, probs, cid, device)
    classes = model.info.class_names[1:] + list(model.info.regions)
    results = {}
    for i, v in enumerate(variants):
        summary = summarize(rows[v], metrics, classes)
        v_metrics = list(metrics)
        if with_eq and i == 0:
            summary += summarize(eq_rows, ["equivariance_dice"], classes)
            v_metrics.append("equivariance_dice")
        folder = Path(out_dir) if out_dir and i == 0 else run_dir / eval_dir_name(split, v)
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(rows[v], folder / "scores.csv")
        write_csv(summary, folder / "summary.csv")
        if with_eq and i == 0:
            write_csv(eq_rows, folder / "equivariance.csv")
        if save_predictions:
            np.savez_compressed(folder / "predictions.npz", **predictions[v])
        results[v] = {"rows": rows[v], "summary": summary, "classes": classes, "metrics": v_metrics,
                      "predictions": predictions[v], "model": model, "layout": layout, "ids": ids}
    return {**results[variants[0]], "variants": results}


def equivariance_rows(model: LoadedModel, case: Case, probs: torch.Tensor, case_id: str,
                      device: torch.device | str = "cpu") -> list[dict[str, Any]]:
    """Equivariance Dice of one preprocessed case (``probs``: the model's prediction on it) per class and region,
    under strong transforms seeded by the case id."""
    import zlib

    from semiseg.data.replay import strong_policy
    from semiseg.evaluation.equivariance import equivariance_dice

    cfg = model.cfg
    names = model.info.class_names
    groups: dict[str, list[int]] = {names[c]: [c] for c in range(1, len(names))}
    groups.update(model.info.regions)
    seed = zlib.crc32(case_id.encode()) ^ cfg.eval.equivariance_seed
    scores = equivariance_dice(model.network, case.image, groups, strong_policy(), cfg.data.spatial_dims, cfg.data.patch_size,
                               cfg.eval, cfg.data.slice_axis, device, cfg.train.channels_last, seed, cfg.data.slice_mode,
                               probs)
    return [{"case": case_id, "class": name, "equivariance_dice": v} for name, v in scores.items()]
