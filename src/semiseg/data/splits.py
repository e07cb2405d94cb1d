"""Splits by subject (patient), never by slice, written to ``splits.json`` with their seed.

Validation and test subjects come from the layout when it names them (h5 list
files, an MSD ``imagesTs`` + ``labelsTs``), otherwise they are drawn from the
training subjects with the split seed. With ``labeled_selection: first`` (the
ACDC and LA protocol) the labeled subjects are the first N training subjects in
sorted order, taken before validation and test subjects are drawn from the
rest (so validation cases come out of the unlabeled pool); with ``random`` they
are drawn after validation and test. Every other training subject and every
``unlabeled`` case form the unlabeled set.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from semiseg.config.schema import SplitConfig
from semiseg.data.case import CaseRef
from semiseg.errors import ConfigError, DatasetError


@dataclass
class Splits:
    labeled: list[str]
    unlabeled: list[str]
    val: list[str]
    test: list[str]
    seed: int
    subjects: dict[str, str]
    """case id -> subject."""

    def check_disjoint(self) -> None:
        """Labeled/unlabeled/val/test hold disjoint cases and disjoint subjects."""
        sets = {"labeled": self.labeled, "unlabeled": self.unlabeled, "val": self.val, "test": self.test}
        names = list(sets)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                both = set(sets[a]) & set(sets[b])
                if both:
                    raise DatasetError(f"splits '{a}' and '{b}' share cases: {sorted(both)[:5]}")
                sa = {self.subjects[c] for c in sets[a]}
                sb = {self.subjects[c] for c in sets[b]}
                if sa & sb:
                    raise DatasetError(f"splits '{a}' and '{b}' share subjects: {sorted(sa & sb)[:5]}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> "Splits":
        return cls(**json.loads(Path(path).read_text()))


def _count(value: float, total: int, what: str) -> int:
    if value < 0:
        raise ConfigError(f"split.{what} must be >= 0; got {value}")
    n = int(round(value * total)) if 0 < value < 1 else int(value)
    if 0 < value < 1:
        n = max(n, 1)
    return n


def make_splits(refs: list[CaseRef], cfg: SplitConfig) -> Splits:
    """Deterministic subject-level splits from the layout's cases and the split config."""
    rng = np.random.default_rng(cfg.seed)
    subjects = {r.case_id: r.subject for r in refs}
    by_pool: dict[str, list[CaseRef]] = {}
    for r in refs:
        by_pool.setdefault(r.pool, []).append(r)

    def subj(rs: list[CaseRef]) -> list[str]:
        return sorted({r.subject for r in rs})

    train_subjects = subj(by_pool.get("train", []))
    if not train_subjects:
        raise DatasetError("the dataset has no labeled training cases")
    drawn = list(rng.permutation(train_subjects))
    taken: set[str] = set()

    def draw(n: int, what: str) -> list[str]:
        pool = [s for s in drawn if s not in taken]
        if n > len(pool):
            raise ConfigError(f"split.{what} asks for {n} subjects but only {len(pool)} training subjects remain")
        out = pool[:n]
        taken.update(out)
        return out

    first = (cfg.labeled_selection == "first" or cfg.labeled_cases is not None) and not cfg.all_labeled
    if cfg.labeled_cases is not None and not cfg.all_labeled:
        train_ids = {r.case_id: r.subject for r in by_pool.get("train", [])}
        unknown = [c for c in cfg.labeled_cases if c not in train_ids]
        if unknown or not cfg.labeled_cases:
            raise ConfigError(f"split.labeled_cases: {unknown[:5] or 'an empty list'} "
                              f"{'are not labeled training cases' if unknown else 'names no case'}; "
                              f"training cases include {sorted(train_ids)[:5]}")
        labeled_subjects = sorted({train_ids[c] for c in cfg.labeled_cases})
        taken.update(labeled_subjects)
    elif first:
        # the literature's protocol: the labeled set is the first N training subjects in sorted order
        # (LA: the first names of train.list), chosen before validation/test cases are drawn from the rest
        n_lab = _count(cfg.labeled, len(train_subjects), "labeled")
        if n_lab < 1 or n_lab > len(train_subjects):
            raise ConfigError(f"split.labeled = {cfg.labeled} gives {n_lab} subjects; {len(train_subjects)} are available")
        labeled_subjects = train_subjects[:n_lab]
        taken.update(labeled_subjects)
    val_subjects = subj(by_pool["val"]) if by_pool.get("val") else draw(_count(cfg.val, len(train_subjects), "val"), "val")
    test_subjects = subj(by_pool["test"]) if by_pool.get("test") else draw(_count(cfg.test, len(train_subjects), "test"), "test")
    remaining = [s for s in train_subjects if s not in taken or (first and s in labeled_subjects)]
    if not remaining:
        raise ConfigError("no training subjects are left after taking validation and test subjects")
    if cfg.all_labeled:
        labeled_subjects = remaining
    elif not first:
        n_lab = _count(cfg.labeled, len(remaining), "labeled")
        if n_lab < 1 or n_lab > len(remaining):
            raise ConfigError(f"split.labeled = {cfg.labeled} gives {n_lab} subjects; {len(remaining)} are available")
        labeled_subjects = [s for s in drawn if s in set(remaining)][:n_lab]
    lab_set = set(labeled_subjects)
    cases = {p: sorted(r.case_id for r in rs) for p, rs in by_pool.items()}

    def cases_of(subjects_: set[str], pools: tuple[str, ...]) -> list[str]:
        return sorted(c for p in pools for c in cases.get(p, []) if subjects[c] in subjects_)

    unl: list[str] = []
    if cfg.unlabeled == "rest" and not cfg.all_labeled:
        unl = cases_of(set(remaining) - lab_set, ("train",)) + cases.get("unlabeled", [])
    splits = Splits(
        labeled=cases_of(lab_set, ("train",)),
        unlabeled=sorted(unl),
        val=cases_of(set(val_subjects), ("val", "train")),
        test=cases_of(set(test_subjects), ("test", "train")),
        seed=cfg.seed,
        subjects=subjects,
    )
    splits.check_disjoint()
    return splits
