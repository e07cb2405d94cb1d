"""Dice of every network a run trained (students, teacher, co-students) on cases of its unlabeled pool,
and how far apart their parameters are (``|a - b| / |a|`` per weight tensor, averaged).

A diagnostic for methods with several networks, on cases whose labels training never used and that are not
the test set: ``hybrid_colearning``'s Eq. 1 teacher against its two students (the method's docstring quotes
its numbers). The last ``--cases`` labeled names of the run's ``splits.json`` unlabeled list are predicted on the
preprocessed grid (the run's sliding window) and scored against their labels there (foreground Dice); cases
without a label (a dataset's unlabeled scans) are passed over.

    .venv/bin/python benchmarks/member_dice.py runs/benchmarks/la_cpu/labeled_8/seed_0/hybrid_colearning --cases 12
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--cases", type=int, default=12, help="how many unlabeled-pool cases (the last of the list)")
    ap.add_argument("--which", default="final", help="checkpoint: final, latest or best")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from semiseg.advisor.advise import member_networks, run_candidates
    from semiseg.advisor.signals import predictor
    from semiseg.data.preprocessing import preprocess_case
    from semiseg.evaluation.run_eval import load_model

    model = load_model(a.run, "cpu", a.which)
    members = member_networks(model)
    ids, _, load, _ = run_candidates(a.run, model)
    cfg = model.cfg
    predict = predictor(cfg.data.spatial_dims, cfg.data.patch_size, cfg.eval, cfg.data.slice_axis, "cpu",
                        cfg.train.channels_last, cfg.data.slice_mode)
    dice: dict[str, list[float]] = {k: [] for k in members}
    labeled_pool = []
    for cid in reversed(ids):  # the last cases of the pool whose labels the dataset has (unlabeled scans have none)
        if len(labeled_pool) == a.cases:
            break
        case = preprocess_case(load(cid), cfg.data.preprocessing)
        if case.label is not None:
            labeled_pool.append(case)
    if not labeled_pool:
        raise SystemExit(f"{a.run}: no case of its unlabeled pool has a label in the dataset; nothing to score")
    for case in reversed(labeled_pool):
        y = np.asarray(case.label).squeeze() > 0
        for name, net in members.items():
            p = predict(net, case.image).argmax(0).numpy() > 0
            dice[name].append(float(2 * (p & y).sum() / max(p.sum() + y.sum(), 1)))
    print(f"{a.run} ({a.which}, step {model.step}), foreground Dice on the last {len(labeled_pool)} unlabeled-pool "
          "cases with labels:")
    for name, v in dice.items():
        print(f"  {name:10s} {np.mean(v):.3f}   per case: {' '.join(f'{x:.3f}' for x in v)}")
    names = list(members)
    for i, m in enumerate(names):
        for n in names[i + 1:]:
            pa, pb = [p.detach() for p in members[m].parameters()], [p.detach() for p in members[n].parameters()]
            if len(pa) == len(pb) and all(x.shape == y.shape for x, y in zip(pa, pb)):
                d = [float((x - y).norm() / x.norm()) for x, y in zip(pa, pb) if x.dim() > 1 and float(x.norm()) > 0]
                print(f"  relative parameter distance {m} - {n}: mean {np.mean(d):.3f} over {len(d)} weight tensors")


if __name__ == "__main__":
    main()
