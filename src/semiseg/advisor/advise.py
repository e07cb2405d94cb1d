"""``semiseg advise RUN_DIR``: which unlabeled cases to label next (issue 15).

The candidates are the run's unlabeled cases (``splits.json``; never its validation or test cases) or
the images of a folder (``unlabeled``). Each case is scored on its preprocessed grid by the run's
trained networks (:mod:`semiseg.advisor.signals`); cases of one subject (patient) are ranked as one
unit -- their scores averaged -- because an expert labels a patient, never a slice of one.
Writes ``advice.csv`` (rank, subject, its cases, score and every signal computed), ``advice.md``
(the top ``k`` with thumbnails: image, prediction, per-voxel entropy) and, for a run's own cases,
``next_labeled_cases.txt`` (the run's labeled cases plus those of the top ``k`` subjects: what
``split.labeled_cases`` takes once the expert has labeled them).
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from semiseg.advisor.selection import SIGNALS, STRATEGIES, diverse_order, random_scores, rank_by_score
from semiseg.advisor.signals import (case_embedding, disagreement, foreground_fraction, predict_under, predictor,
                                     tta_transforms, tta_variance, voxel_entropy)
from semiseg.data.case import Case
from semiseg.data.preprocessing import preprocess_case
from semiseg.errors import ConfigError
from semiseg.evaluation.run_eval import LoadedModel, load_model
from semiseg.networks.base import SegmentationNetwork


@dataclass
class SubjectAdvice:
    """One unit of labeling: a subject (patient), its cases, its score and the signals behind it."""

    subject: str
    cases: list[str]
    score: float = 0.0
    signals: dict[str, float] = field(default_factory=dict)
    rank: int = 0


def member_networks(model: LoadedModel) -> dict[str, SegmentationNetwork]:
    """The segmentation networks the run's method trained (students, teachers, co-students), with their weights."""
    from semiseg.engine.checkpoint import load_checkpoint
    from semiseg.engine.data_setup import network_factory
    from semiseg.methods.base import MethodContext
    from semiseg.methods.registry import create_method

    cfg = model.cfg
    ckpt = load_checkpoint(model.checkpoint)
    ctx = MethodContext(model.info.num_classes, model.info.in_channels, cfg.data.spatial_dims, cfg.train.iterations,
                        network_factory(cfg, model.info))
    method = create_method(cfg.method.name, ctx, cfg.method.params)
    method.load_state_dict(ckpt["method_state"])
    nets = method.member_networks()
    for n in nets.values():
        n.to(next(model.network.parameters()).device).eval()
    return nets


def run_candidates(run_dir: Path, model: LoadedModel) -> tuple[list[str], dict[str, str], Callable[[str], Case], list[str]]:
    """The run's unlabeled cases: (ids, case -> subject, a loader of any case of the dataset, the run's labeled ids)."""
    from semiseg.data.layout import open_layout
    from semiseg.data.splits import Splits

    splits = Splits.load(run_dir / "splits.json")
    if not splits.unlabeled:
        raise ConfigError(f"run '{run_dir}' has no unlabeled cases to rank; give a folder of images with --unlabeled")
    layout = open_layout(model.cfg.data)
    refs = {r.case_id: r for r in layout.refs()}
    missing = [c for c in splits.unlabeled + splits.labeled if c not in refs]
    if missing:
        raise ConfigError(f"run '{run_dir}': cases of its splits.json are no longer in {layout.root}: {missing[:5]}")

    def load(cid: str) -> Case:
        return layout.load(refs[cid])

    return list(splits.unlabeled), {c: splits.subjects.get(c, c) for c in splits.unlabeled}, load, list(splits.labeled)


def folder_candidates(folder: Path, model: LoadedModel) -> tuple[list[str], dict[str, str], Callable[[str], Case]]:
    """The images of a folder (grouped as ``semiseg predict`` groups them); each case is its own subject."""
    from semiseg.evaluation.predict import group_inputs, read_input_case

    if not folder.is_dir():
        raise ConfigError(f"--unlabeled '{folder}' is not a folder")
    groups = group_inputs(folder)

    def load(cid: str) -> Case:
        return read_input_case(cid, groups[cid], model.cfg.data)

    return sorted(groups), {c: c for c in groups}, load


def needed_signals(strategy: str, base: str) -> set[str]:
    """The signals a strategy needs (entropy is always computed: it comes with the prediction)."""
    want = {"entropy"}
    if strategy in ("disagreement", "tta"):
        want.add(strategy)
    if strategy == "diverse":
        want |= {base, "embedding"}
    return want


def case_signals(model: LoadedModel, case: Case, want: set[str], members: dict[str, SegmentationNetwork],
                 device: str) -> tuple[dict[str, float], np.ndarray | None, dict[str, np.ndarray]]:
    """Signals of one preprocessed case: (signals, embedding or None, arrays for the thumbnail)."""
    cfg = model.cfg
    dims = cfg.data.spatial_dims
    predict = predictor(dims, cfg.data.patch_size, cfg.eval, cfg.data.slice_axis, device, cfg.train.channels_last,
                        cfg.data.slice_mode)
    probs = predict(model.network, case.image)
    entropy_map = voxel_entropy(probs)
    out = {"entropy": float(entropy_map.mean()), "foreground": foreground_fraction(probs)}
    if "disagreement" in want:
        out.update(disagreement([predict(n, case.image) for n in members.values()]))
    if "tta" in want:
        _identity, *others = tta_transforms(dims, cfg.data.slice_axis)  # the identity's prediction is ``probs``
        out["tta"] = tta_variance([probs] + predict_under(model.network, case.image, others, predict))
    emb = None
    if "embedding" in want:
        emb = case_embedding(model.network, case.image, dims, cfg.data.patch_size, cfg.data.slice_axis, device,
                             cfg.train.channels_last)
    z = int(entropy_map.flatten(1).mean(1).argmax())  # the slice (along Z) where the model is least certain
    arrays = {"image": case.image[0, z], "prediction": probs[:, z].argmax(0).numpy(), "entropy": entropy_map[z].numpy(),
              "slice": np.array(z)}
    return out, emb, arrays


AUTO = "auto"
"""The default strategy: ``disagreement`` where the run's method trains two or more networks, else ``diverse``
(over ``base``) -- the two that beat ``random`` on the ACDC label-budget simulation (docs/benchmarks/advisor.md:
3 seeds, +0.029 and +0.025 mean Dice at 7 labeled patients; ``entropy`` +0.005, ``tta`` -0.038)."""


def advise(run_dir: Path, strategy: str = AUTO, k: int = 5, unlabeled: Path | None = None, base: str = "entropy",
           out_dir: Path | None = None, which: str = "best", device: str = "cpu", seed: int = 0, overwrite: bool = False,
           say: Callable[[str], None] | None = None) -> list[SubjectAdvice]:
    """Rank the candidates of ``run_dir`` (or of the folder ``unlabeled``) by ``strategy`` (see :data:`AUTO`); write the advice files.

    ``base``: the signal ``diverse`` weights its picks by. ``seed``: the ``random`` strategy's order.
    Returns every subject, best first.
    """
    say = say or (lambda m: print(m, file=sys.stderr))
    if strategy not in STRATEGIES + (AUTO,):
        raise ConfigError(f"unknown strategy '{strategy}'; choose from {', '.join(STRATEGIES + (AUTO,))}")
    if base not in SIGNALS:
        raise ConfigError(f"unknown base signal '{base}' for diverse; choose from {', '.join(SIGNALS)}")
    if k < 1:
        raise ConfigError(f"--k must be >= 1; got {k}")
    run_dir = Path(run_dir)
    model = load_model(run_dir, device, which)
    members: dict[str, SegmentationNetwork] = {}
    if strategy == AUTO:
        members = member_networks(model)
        strategy = "disagreement" if len(members) >= 2 else "diverse"
        say(f"advise: strategy auto -> {strategy} (method '{model.cfg.method.name}' trains {len(members)} network(s))")
    target = Path(out_dir) if out_dir else run_dir / f"advice_{strategy}"
    if (target / "advice.csv").is_file() and not overwrite:
        raise ConfigError(f"{target} holds earlier advice; use --overwrite to replace it or --out for another folder")
    if "disagreement" in needed_signals(strategy, base):
        members = members or member_networks(model)
        if len(members) < 2:
            raise ConfigError(f"strategy 'disagreement' compares two or more networks; method '{model.cfg.method.name}' "
                              f"trains {len(members)} ({', '.join(members) or 'none'}). Use entropy, tta or diverse, or a "
                              "run of a method with a teacher or co-students (e.g. mean_teacher, cps, hybrid_colearning)")
    labeled: list[str] = []
    if unlabeled is None:
        ids, subjects, load, labeled = run_candidates(run_dir, model)
    else:
        ids, subjects, load = folder_candidates(Path(unlabeled), model)
    covered = None
    if strategy == "diverse" and unlabeled is None and labeled:  # the run's loader reads its labeled cases too
        covered = np.stack([case_embedding(model.network, preprocess_case(load(c), model.cfg.data.preprocessing).image,
                                           model.cfg.data.spatial_dims, model.cfg.data.patch_size, model.cfg.data.slice_axis,
                                           device, model.cfg.train.channels_last) for c in labeled])
    ranked, thumbs = score_and_rank(model, ids, subjects, load, strategy, base, members, device, seed, covered, say)
    _write(target, ranked, strategy, k, run_dir, labeled if unlabeled is None else None, thumbs, model)
    say(f"advice ({strategy}): {target / 'advice.csv'}")
    return ranked


def score_and_rank(model: LoadedModel, ids: list[str], subjects: dict[str, str], load: Callable[[str], Case],
                   strategy: str, base: str = "entropy", members: dict[str, SegmentationNetwork] | None = None,
                   device: str = "cpu", seed: int = 0, covered: np.ndarray | None = None,
                   say: Callable[[str], None] = lambda m: None) -> tuple[list[SubjectAdvice], dict[str, dict[str, np.ndarray]]]:
    """Score each case (``load(id)`` gives it raw; it is preprocessed as the run was), average per subject and
    rank the subjects by ``strategy``: (subjects best first, each case's thumbnail arrays).
    ``covered``: embeddings of the cases labeled already (``diverse`` keeps away from them)."""
    want = needed_signals(strategy, base)
    signals: dict[str, dict[str, float]] = {}
    embeddings: dict[str, np.ndarray] = {}
    thumbs: dict[str, dict[str, np.ndarray]] = {}
    for i, cid in enumerate(ids):
        case = preprocess_case(load(cid), model.cfg.data.preprocessing)
        if case.in_channels != model.info.in_channels:
            raise ConfigError(f"{case.meta.get('source', cid)}: image has {case.in_channels} channels, the model expects "
                              f"{model.info.in_channels}")
        signals[cid], emb, thumbs[cid] = case_signals(model, case, want, members or {}, device)
        if emb is not None:
            embeddings[cid] = emb
        say(f"advise: {i + 1}/{len(ids)} {cid}")
    units = _subjects(ids, subjects, signals)
    return _rank(units, strategy, base, seed, embeddings, covered), thumbs


def _subjects(ids: list[str], subjects: dict[str, str], signals: dict[str, dict[str, float]]) -> list[SubjectAdvice]:
    by: dict[str, list[str]] = {}
    for cid in ids:
        by.setdefault(subjects[cid], []).append(cid)
    units = []
    for subj in sorted(by):
        cases = sorted(by[subj])
        names = list(dict.fromkeys(n for c in cases for n in signals[c]))
        units.append(SubjectAdvice(subj, cases, signals={n: float(np.mean([signals[c][n] for c in cases])) for n in names}))
    return units


def _rank(units: list[SubjectAdvice], strategy: str, base: str, seed: int, embeddings: dict[str, np.ndarray],
          covered: np.ndarray | None) -> list[SubjectAdvice]:
    if strategy == "random":
        scores = random_scores(len(units), seed)
        order = rank_by_score(scores)
    elif strategy == "diverse":
        emb, cov = centred_embeddings(np.stack([np.mean([embeddings[c] for c in u.cases], 0) for u in units]), covered)
        order, values = diverse_order(np.array([u.signals[base] for u in units]), emb, cov)
        scores = np.empty(len(units))
        scores[order] = values
    else:
        scores = np.array([u.signals[strategy] for u in units])
        order = rank_by_score(scores)
    ranked = []
    for r, i in enumerate(order, start=1):
        units[i].score, units[i].rank = float(scores[i]), r
        ranked.append(units[i])
    return ranked


def centred_embeddings(candidates: np.ndarray, covered: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Embeddings centred on the mean of every candidate and covered case, then L2-normalised: pooled post-ReLU
    features all point into one orthant (cosine similarities near 1), so distances are measured from their mean."""
    allv = candidates if covered is None or not len(covered) else np.concatenate([candidates, covered])
    mean = allv.mean(0, keepdims=True)

    def unit(x: np.ndarray) -> np.ndarray:
        x = x - mean
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)

    return unit(candidates), (unit(covered) if covered is not None and len(covered) else None)


def _write(target: Path, ranked: list[SubjectAdvice], strategy: str, k: int, run_dir: Path, labeled: list[str] | None,
           thumbs: dict[str, dict[str, np.ndarray]], model: LoadedModel) -> None:
    target.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(n for u in ranked for n in u.signals))
    with open(target / "advice.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "subject", "cases", "score"] + names)
        for u in ranked:
            w.writerow([u.rank, u.subject, ";".join(u.cases), f"{u.score:.6g}"] + [f"{u.signals[n]:.6g}" for n in names])
    top = ranked[:k]
    (target / "thumbnails").mkdir(exist_ok=True)
    lines = [f"# Which cases to label next: strategy `{strategy}`", "",
             f"Run `{run_dir}` (method `{model.cfg.method.name}`, checkpoint `{model.checkpoint.name}`, step {model.step}); "
             f"{len(ranked)} candidate subjects, the top {len(top)} below. Every candidate: `advice.csv`.", "",
             "| rank | subject | cases | score | " + " | ".join(names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for u in top:
        lines.append(f"| {u.rank} | {u.subject} | {', '.join(u.cases)} | {u.score:.4g} | "
                     + " | ".join(f"{u.signals[n]:.4g}" for n in names) + " |")
    lines.append("")
    for u in top:
        png = target / "thumbnails" / f"{_safe(u.subject)}.png"
        thumbnail_png(thumbs[u.cases[0]], png, f"{u.rank}. {u.cases[0]}")
        lines.append(f"![{u.subject}](thumbnails/{png.name})")
    if labeled is not None:
        nxt = sorted(set(labeled) | {c for u in top for c in u.cases})
        (target / "next_labeled_cases.txt").write_text("\n".join(nxt) + "\n")
        lines += ["", f"Once these are labeled: `split.labeled_cases` = the {len(nxt)} cases in `next_labeled_cases.txt` "
                      "(the run's labeled cases and the ones above)."]
    (target / "advice.md").write_text("\n".join(lines) + "\n")


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def thumbnail_png(arrays: dict[str, np.ndarray], out: Path, title: str) -> None:
    """Image, prediction and per-voxel entropy on one slice (``arrays``: 2D ``image``, ``prediction``, ``entropy``
    and the index ``slice``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.7))
    img = arrays["image"]
    for ax in axes:
        ax.imshow(img, cmap="gray")
        ax.set_axis_off()
    seg = arrays["prediction"].astype(float)
    axes[1].imshow(np.ma.masked_where(seg == 0, seg), cmap="jet", alpha=0.45, interpolation="nearest")
    axes[2].imshow(arrays["entropy"], cmap="magma", alpha=0.7, vmin=0, vmax=1)
    for ax, name in zip(axes, ("image", "prediction", "entropy")):
        ax.set_title(name, fontsize=9)
    fig.suptitle(f"{title} (slice {int(arrays['slice'])})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def read_advice(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of an ``advice.csv``."""
    with open(path, newline="") as f:
        yield from csv.DictReader(f)
