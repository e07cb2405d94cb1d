"""Command line: ``semiseg verify | train | resume | predict | evaluate | export | advise | demo | benchmark | list``.

Exit codes: 0 success, 1 other failure, 2 usage or configuration error,
3 dataset error. Errors print one message without a traceback unless ``--debug``.
Heavy modules are imported inside the commands so ``semiseg --help`` is fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from semiseg.errors import ConfigError, SemisegError

METRICS = ("dice", "jaccard", "hd95", "asd", "assd")


def cmd_verify(a: argparse.Namespace) -> None:
    from semiseg.config import RunConfig, apply_overrides, load_config, validate_config
    from semiseg.data.layout import open_layout
    from semiseg.data.verify import verify_dataset

    path = Path(a.target)
    if path.is_dir() or a.target.startswith("builtin:"):  # a dataset (MSD layout, or the embedded one) as train names it
        base = RunConfig.model_validate({"data": {"layout": "msd", "root": a.target}}).model_dump(mode="json")
        cfg = validate_config(apply_overrides(base, a.overrides))
    else:
        cfg = load_config(a.target, a.overrides, user_file=True)
    layout = open_layout(cfg.data)
    report = verify_dataset(layout, cfg.data.in_channels)
    if not path.is_dir() and not a.target.startswith("builtin:"):  # a config names the split: it must be feasible
        from semiseg.data.splits import make_splits

        try:
            make_splits(layout.refs(), cfg.split)
        except SemisegError as exc:
            report.problems.append(f"the split of {a.target} is not feasible: {exc}")
    pools = ", ".join(f"{n} {p}" for p, n in sorted(report.pools.items()))
    print(f"{layout.root}: {report.cases} cases ({pools}); {layout.num_classes} classes {layout.class_names}")
    for w in report.warnings:
        print(f"warning: {w}")
    report.raise_if_failed(layout.root)
    print("ok: every check passed")


def cmd_train(a: argparse.Namespace) -> None:
    from semiseg.config import load_config
    from semiseg.engine.trainer import Trainer, describe_best

    cfg = load_config(a.config, a.overrides, user_file=True)
    out = Path(a.run_dir) if a.run_dir else Path("runs") / cfg.name
    result = Trainer(cfg, out, overwrite=a.overwrite).fit()
    if result["best_step"] >= 0:  # rank 0 (the only rank that validates under torchrun)
        print(f"{describe_best(result)}; {out}")


def cmd_resume(a: argparse.Namespace) -> None:
    from semiseg.engine.trainer import Trainer, describe_best

    result = Trainer.resume(Path(a.run_dir), a.overrides).fit()
    if result["best_step"] >= 0:
        print(f"{describe_best(result)}; {a.run_dir}")


def cmd_predict(a: argparse.Namespace) -> None:
    import torch

    from semiseg.evaluation.predict import predict_path

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    written = predict_path(Path(a.model), Path(a.input), Path(a.output), dev, a.overwrite,
                           postprocess="largest_component" if a.largest_component else "none")
    print(f"wrote {len(written)} prediction(s) to {a.output}")


def cmd_evaluate(a: argparse.Namespace) -> None:
    from semiseg.evaluation.scoring import format_summary_table

    pred = Path(a.pred)
    if a.gt is None:
        if not (pred / "config.yaml").is_file():
            raise ConfigError(f"'{pred}' is not a run folder; give a prediction folder and a reference folder")
        from semiseg.evaluation.run_eval import evaluate_run

        from semiseg.evaluation.run_eval import eval_dir_name

        pp = "largest_component" if a.largest_component else "none"
        target = Path(a.out) if a.out else pred / eval_dir_name(a.split, pp)
        if (target / "scores.csv").is_file() and not a.overwrite:
            raise ConfigError(f"{target} holds earlier results; use --overwrite to replace them or --out for another folder")
        res = evaluate_run(pred, a.split, out_dir=target, equivariance=a.equivariance or None, postprocess=pp)
        print(format_summary_table(res["summary"], res["metrics"], res["classes"]))
        print(f"scores: {target / 'scores.csv'}")
        return
    from semiseg.data.msd import parse_dataset_json
    from semiseg.evaluation.folders import evaluate_folders

    names, regions = None, None
    if a.dataset_json:
        meta = parse_dataset_json(Path(a.dataset_json))
        inv = {v: k for k, v in meta["labels"].items()}
        names, regions = [inv[i] for i in sorted(inv)], meta["regions"]
    mlist = [m.strip() for m in a.metrics.split(",") if m.strip()]
    bad = set(mlist) - set(METRICS)
    if bad:
        raise ConfigError(f"unknown metrics {sorted(bad)}; choose from {', '.join(METRICS)}")
    out = Path(a.out) if a.out else pred.parent / f"{pred.name}_evaluation"
    if (out / "scores.csv").is_file() and not a.overwrite:
        raise ConfigError(f"{out} holds earlier results; use --overwrite to replace them or --out for another folder")
    res = evaluate_folders(pred, Path(a.gt), out, mlist, names, regions, a.threshold)
    print(format_summary_table(res["summary"], mlist, res["classes"]))
    print(f"scores: {out / 'scores.csv'}")


def cmd_export(a: argparse.Namespace) -> None:
    from semiseg.evaluation.export import export_model

    written = export_model(Path(a.run_dir), Path(a.out), a.which, a.overwrite)
    print(f"wrote {written['model']} (torch.export program) and {written['preprocessing']}")


def cmd_advise(a: argparse.Namespace) -> None:
    import torch

    from semiseg.advisor import advise

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    ranked = advise(Path(a.run_dir), a.strategy, a.k, Path(a.unlabeled) if a.unlabeled else None, a.base,
                    Path(a.out) if a.out else None, a.which, dev, a.seed, a.overwrite)
    for u in ranked[: a.k]:
        print(f"{u.rank:3d}  {u.subject}  score {u.score:.4g}  ({', '.join(u.cases)})")


def cmd_demo(a: argparse.Namespace) -> None:
    from semiseg.demo import run_demo

    run_demo(Path(a.out), a.overrides)


def cmd_benchmark(a: argparse.Namespace) -> None:
    from semiseg.benchmark import run_benchmark
    from semiseg.benchmark.budget import is_budget_file, run_budget

    if is_budget_file(Path(a.config)):  # kind: label_budget (the annotation advisor's simulation)
        if a.runs is not None or a.labeled is not None:
            from semiseg.errors import ConfigError

            raise ConfigError(f"{a.config}: a label-budget simulation trains chains of rounds; --runs and --labeled "
                              "do not apply (--seeds does)")
        run_budget(Path(a.config), Path(a.output) if a.output else None, a.overrides, a.jobs, report_only=a.report_only,
                   records=Path(a.records) if a.records else None, seeds=a.seeds)
        return
    only = {k: v for k, v in (("runs", a.runs), ("labeled", a.labeled), ("seeds", a.seeds)) if v is not None}
    run_benchmark(Path(a.config), Path(a.output) if a.output else None, a.overrides, a.jobs, report_only=a.report_only,
                  records=Path(a.records) if a.records else None, only=only or None)


def cmd_list(a: argparse.Namespace) -> None:
    if a.what == "methods":
        from semiseg.methods import list_methods

        print("\n".join(list_methods()))
    elif a.what == "networks":
        from semiseg.networks import list_networks

        print("\n".join(list_networks()))
    elif a.what == "datasets":
        print("synthbrain  built-in (data.root=builtin:synthbrain): generated once and cached, MSD layout")
        print("layouts: msd (imagesTr/labelsTr/imagesTs/imagesUnlabeled + dataset.json), h5 (ACDC, left atrium), folder2d (PNG/TIF/GIF)")
    else:
        from semiseg.config import list_presets

        print("\n".join(list_presets()))


def _number(text: str) -> int | float:
    """A labeled count as the benchmark file writes it: an integer (cases) or a fraction."""
    return float(text) if any(c in text for c in ".eE") else int(text)


def _csv(item: Callable[[str], Any], what: str) -> Callable[[str], list[Any]]:
    """An argparse type: a comma-separated list of ``item`` (``what``: their name in the error message)."""

    def parse(text: str) -> list[Any]:
        try:
            return [item(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of {what}") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semiseg", description="Semi-supervised medical image segmentation.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    from semiseg import __version__

    p.add_argument("--version", action="version", version=f"semiseg {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ov = dict(nargs="*", default=[], help="dotted overrides, e.g. optim.lr=0.01 train.iterations=500")

    s = sub.add_parser("verify", help="run every dataset check; list all problems (exit 3 if any)")
    s.add_argument("target", help="a dataset folder (MSD layout), builtin:synthbrain, or a config preset/YAML naming the "
                                  "dataset (any layout: msd, h5, folder2d)")
    s.add_argument("overrides", **ov)
    s.set_defaults(fn=cmd_verify)

    s = sub.add_parser("train", help="train a method (checks the dataset first; writes a run folder)")
    s.add_argument("config", help="preset name (semiseg list presets) or YAML file")
    s.add_argument("overrides", **ov)
    s.add_argument("--run-dir", "-o", help="run folder (default runs/NAME)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("resume", help="continue a run from its checkpoint_latest.pt")
    s.add_argument("run_dir")
    s.add_argument("overrides", **ov)
    s.set_defaults(fn=cmd_resume)

    s = sub.add_parser("predict", help="segment new scans, keeping the input geometry")
    s.add_argument("model", help="run folder (its checkpoint_best.pt: the model selected on validation data; else checkpoint_final.pt) or a checkpoint file")
    s.add_argument("input", help="image file or folder")
    s.add_argument("output", help="output folder (not inside the input folder)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--overwrite", action="store_true", help="replace existing output files")
    s.add_argument("--largest-component", action="store_true",
                   help="keep each class's largest connected component (the LA literature's post-processing)")
    s.set_defaults(fn=cmd_predict)

    s = sub.add_parser("evaluate", help="Dice/Jaccard/HD95/ASD per case and class (medpy definitions) + summary")
    s.add_argument("pred", help="folder of predictions, or a run folder (evaluates its test split)")
    s.add_argument("gt", nargs="?", help="folder of reference labels (same file names)")
    s.add_argument("--out", help="where to write scores.csv and summary.csv")
    s.add_argument("--dataset-json", help="class names and regions from an MSD dataset.json")
    s.add_argument("--metrics", default="dice,jaccard,hd95,asd", help=f"comma-separated: {', '.join(METRICS)}")
    s.add_argument("--threshold", type=int, help="binarise labels: value > threshold is class 1 (0/255 PNG masks)")
    s.add_argument("--split", default="test", choices=["test", "val"], help="with a run folder: which split")
    s.add_argument("--equivariance", action="store_true",
                   help="with a run folder: also the equivariance Dice under strong transforms (EquiReg)")
    s.add_argument("--overwrite", action="store_true", help="replace earlier results in the output folder")
    s.add_argument("--largest-component", action="store_true",
                   help="run folders: keep each class's largest connected component before scoring (writes eval_<split>_lcc)")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("export", help="the inference network as a torch.export program + its preprocessing parameters (deployment)")
    s.add_argument("run_dir", help="run folder or checkpoint")
    s.add_argument("out", help="output folder (model.pt2, preprocessing.json)")
    s.add_argument("--which", default="best", choices=["best", "final", "latest"], help="which checkpoint of a run folder")
    s.add_argument("--overwrite", action="store_true")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("advise", help="rank unlabeled cases (patients) by how much labeling them is likely to help")
    s.add_argument("run_dir", help="a run folder: its unlabeled cases are ranked (or those of --unlabeled)")
    s.add_argument("--unlabeled", help="rank the images of this folder instead (NIfTI/ITK volumes or 2D images)")
    s.add_argument("--strategy", default="auto", choices=["auto", "random", "entropy", "disagreement", "tta", "diverse"],
                   help="auto (default): disagreement for a method with two or more networks, else diverse (the two that "
                        "beat random in docs/benchmarks/advisor.md); entropy: mean predictive entropy; disagreement: "
                        "between the method's networks (teacher/student, co-students); tta: variance under flips and a "
                        "rotation; diverse: score-weighted diversity over encoder features; random: the control")
    s.add_argument("--k", type=int, default=5, help="how many subjects to recommend (every candidate is ranked in advice.csv)")
    s.add_argument("--base", default="entropy", choices=["entropy", "disagreement", "tta"], help="the score diverse weights by")
    s.add_argument("--which", default="best", choices=["best", "final", "latest"], help="which checkpoint of the run")
    s.add_argument("--out", help="output folder (default RUN_DIR/advice_STRATEGY)")
    s.add_argument("--seed", type=int, default=0, help="the random strategy's seed")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--overwrite", action="store_true", help="replace earlier advice in the output folder")
    s.set_defaults(fn=cmd_advise)

    s = sub.add_parser("demo", help="the main job on the embedded dataset (< 10 min on 2 CPU cores)")
    s.add_argument("--out", default="runs/demo", help="demo folder (runs and report)")
    s.add_argument("overrides", **ov)
    s.set_defaults(fn=cmd_demo)

    s = sub.add_parser("benchmark", help="a grid of runs (methods x labeled counts x seeds), resumable; one results table")
    s.add_argument("config", help="benchmark YAML (see benchmarks/)")
    s.add_argument("overrides", nargs="*", default=[], help="dotted overrides applied to every run")
    s.add_argument("--output", help="grid folder (default: the file's 'output', else runs/benchmarks/NAME)")
    s.add_argument("--jobs", type=int, help="runs trained side by side (default: the file's 'jobs')")
    s.add_argument("--report-only", action="store_true", help="train nothing; tabulate the runs complete so far")
    s.add_argument("--records", help="folder of run records (run folders without weights): complete runs found there are "
                                     "copied in before the grid runs, and every complete run's record is written there after")
    s.add_argument("--runs", type=_csv(str, "run names"), help="train only these runs (comma-separated) and the runs they start from")
    s.add_argument("--labeled", type=_csv(_number, "labeled counts"), help="train only at these labeled counts (comma-separated)")
    s.add_argument("--seeds", type=_csv(int, "seeds"), help="train only these seeds (comma-separated)")
    s.set_defaults(fn=cmd_benchmark)

    s = sub.add_parser("list", help="list methods, networks, datasets or presets")
    s.add_argument("what", choices=["methods", "networks", "datasets", "presets"])
    s.set_defaults(fn=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse and run; maps errors to exit codes (2 config/usage, 3 dataset, 1 other)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return int(exc.code or 0)
    try:
        args.fn(args)
    except SemisegError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
