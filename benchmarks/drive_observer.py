"""The human ceiling on DRIVE: the second observer's vessel masks scored against the first's.

    .venv/bin/python benchmarks/drive_observer.py [--root ../shared/data/drive] [--out docs/benchmarks/drive_observer.md]

Both masks are binarised (value > 0; the second observer's GIFs store the class as palette index 0/1), restricted to the field-of-view mask, and scored per image with
semiseg's own Dice and Jaccard (the same code that scores the models); the table gives the mean over the
20 test images and its 95% bootstrap interval.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from semiseg.data.io import read_mask2d
from semiseg.evaluation.scoring import score_case
from semiseg.evaluation.statistics import bootstrap_ci


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="../shared/data/drive")
    ap.add_argument("--out", default="docs/benchmarks/drive_observer.md")
    a = ap.parse_args()
    test = Path(a.root) / "test"
    rows = []
    for second in sorted((test / "2nd_manual").glob("*.gif")):
        cid = re.match(r"^(\d+)_", second.name).group(1)  # type: ignore[union-attr]
        first = read_mask2d(test / "1st_manual" / f"{cid}_manual1.gif") > 0
        fov = read_mask2d(test / "mask" / f"{cid}_test_mask.gif") > 0
        rows += score_case(cid, (read_mask2d(second, palette="index") > 0).astype(np.int16), first.astype(np.int16), ["background", "vessel"],
                           (1.0, 1.0), ["dice", "jaccard"], fov=fov)
    dice = np.array([r["dice"] for r in rows])
    jac = np.array([r["jaccard"] for r in rows])
    lo, hi = bootstrap_ci(dice)
    text = "\n".join([
        "# DRIVE: second observer against the first (the human ceiling)", "",
        f"Command: `.venv/bin/python benchmarks/drive_observer.py --root {a.root}`", "",
        "Test images with a second observer, inside the field-of-view mask, vessel class.", "",
        "| images | Dice mean | 95% CI | Jaccard mean |", "|---|---|---|---|",
        f"| {len(dice)} | {dice.mean():.4f} | [{lo:.3f}, {hi:.3f}] | {jac.mean():.4f} |", "",
    ])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
