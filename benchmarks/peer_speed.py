"""Side-by-side training speed: SSL4MIS's mean-teacher scripts vs ``semiseg train`` at identical network, batch,
patch and threads (issue 13).

    python benchmarks/peer_speed.py --ssl4mis /path/to/SSL4MIS --peer-python /path/to/venv/bin/python \\
        --out docs/benchmarks/peer_speed.md

SSL4MIS (github.com/HiLab-git/SSL4MIS) is never copied into this repository: point ``--ssl4mis`` at a checkout
(the folder holding ``code/``). Its scripts import torchvision and tensorboardX, so ``--peer-python`` is a Python
that has them (with torch); semiseg runs with this repository's ``.venv`` (``--semiseg``). The peer's scripts run
unchanged, through a small runner that (1) makes ``.cuda()`` a no-op so they run on the CPU, (2) turns their
``--patch_size`` (declared ``type=list``, which cannot be given on a command line) into integers, and (3) skips
their copy of the current folder into the run folder (``shutil.copytree`` with a list as an ignore pattern, an
error on Python >= 3.8). Data: the peer reads the layouts it expects, built as symbolic links to the same files
semiseg reads (ACDC: ``data/slices/``; LA: BraTS2019's ``data/<id>.h5`` and ``train.txt``, the 80 LA training
cases repeated to the 250 entries its 3D script assumes).

Each row runs the peer and semiseg alternately ``--repeats`` times. Seconds per step: the time between the
log lines of two steps divided by the steps between them, from the first logged step after a warm-up of 5 (the
peer logs every iteration; semiseg, with ``train.log_every=1``, a progress line every 10 steps) to the last one
before anything else runs, so start-up and validation are excluded on both sides and data loading (and
everything else each loop does per step) is included; the median over the repeats. The share of the fp32 GEMM peak: floating-point operations of one mean-teacher step of the row's
network and batch (``torch.utils.flop_counter``; forward and backward of the student, forward of the teacher),
divided by the step time and by the best rate of a 2048^3 fp32 GEMM measured in the same run at the same threads
(``torch.mm`` through MKL, or the same GEMM as a 1x1 convolution through oneDNN).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Row:
    name: str
    dims: int
    patch: tuple[int, ...]
    labeled: int
    unlabeled: int
    steps: int
    peer_script: str
    peer_args: tuple[str, ...]
    preset: str
    network: str
    network_kwargs: dict = field(default_factory=dict)
    labeled_cases: int = 7


ROWS = [
    Row("2D U-Net (SSL4MIS), 128x128, 4 + 4", 2, (128, 128), 4, 4, 40, "train_mean_teacher_2D.py",
        ("--model", "unet", "--num_classes", "4", "--labeled_num", "7"), "acdc2d_mean_teacher", "unet_ssl4mis"),
    Row("2D U-Net (SSL4MIS), 256x256, 12 + 12 (the paper default)", 2, (256, 256), 12, 12, 16, "train_mean_teacher_2D.py",
        ("--model", "unet", "--num_classes", "4", "--labeled_num", "7"), "acdc2d_mean_teacher", "unet_ssl4mis"),
    Row("3D V-Net 16, 64x64x32, 2 + 2 (the LA CPU protocol's patch and batch)", 3, (64, 64, 32), 2, 2, 30,
        "train_mean_teacher_3D.py", ("--model", "vnet", "--labeled_num", "8"), "la3d_mean_teacher", "vnet",
        {"n_filters": 16, "dropout": 0.5}, 8),
]


# ------------------------------------------------------------------ the peer's data layouts, as symbolic links
def peer_acdc(acdc: Path, into: Path) -> Path:
    """SSL4MIS's ACDC layout (``data/slices/<slice>.h5``, ``data/<volume>.h5``, the list files) linking to ``acdc``."""
    root = into / "ACDC"
    (root / "data" / "slices").mkdir(parents=True, exist_ok=True)
    for lst in ("train_slices.list", "val.list", "train.list", "test.list"):
        if (acdc / lst).is_file():
            (root / lst).write_text((acdc / lst).read_text())
    for f in (acdc / "data").glob("*.h5"):
        sub = root / "data" / ("slices" if "_slice_" in f.name else "") / f.name
        if not sub.exists():
            sub.symlink_to(f.resolve())
    return root


def peer_la(la: Path, into: Path, entries: int = 250) -> Path:
    """The BraTS2019 layout SSL4MIS's 3D scripts read (``data/<id>.h5``, ``train.txt``) linking to LA's h5 files;
    ``train.txt`` repeats the training cases up to the ``entries`` its script indexes."""
    root = into / "LA"
    (root / "data").mkdir(parents=True, exist_ok=True)
    ids = [i.strip() for i in (la / "train.list").read_text().split() if i.strip()]
    for i in ids:
        target = root / "data" / f"{i}.h5"
        if not target.exists():
            target.symlink_to((la / "2018LA_Seg_Training Set" / i / "mri_norm2.h5").resolve())
    (root / "train.txt").write_text("\n".join(ids[k % len(ids)] for k in range(entries)) + "\n")
    tests = [i.strip() for i in (la / "test.list").read_text().split() if i.strip()]
    for i in tests:
        target = root / "data" / f"{i}.h5"
        if not target.exists():
            target.symlink_to((la / "2018LA_Seg_Training Set" / i / "mri_norm2.h5").resolve())
    (root / "val.txt").write_text("\n".join(tests) + "\n")
    return root


# ------------------------------------------------------------------ the peer runner (runs inside --peer-python)
PEER_RUNNER = r"""
import argparse, os, runpy, shutil, sys
import torch
code, script, workdir, threads, patch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
args = sys.argv[6:]
torch.set_num_threads(threads)
torch.nn.Module.cuda = lambda self, *a, **k: self          # (1) run on the CPU
torch.Tensor.cuda = lambda self, *a, **k: self
_parse = argparse.ArgumentParser.parse_args
def parse_args(self, a=None, ns=None):                    # (2) --patch_size is type=list: give it integers
    r = _parse(self, a, ns)
    if hasattr(r, "patch_size"):
        r.patch_size = [int(v) for v in patch.split(",")]
    return r
argparse.ArgumentParser.parse_args = parse_args
shutil.copytree = lambda src, dst, *a, **k: dst           # (3) no copy of the working folder
sys.path.insert(0, code)
os.makedirs(workdir, exist_ok=True)                      # a 'code' folder of its own, for the paths the scripts
if not os.path.exists(os.path.join(workdir, "configs")):  # resolve from '../code' (configs) and '../model' (outputs)
    os.symlink(os.path.join(code, "configs"), os.path.join(workdir, "configs"))
os.chdir(workdir)
sys.argv = [script] + args
runpy.run_path(os.path.join(code, script), run_name="__main__")
"""


def run_peer(row: Row, ssl4mis: Path, python: str, data: Path, work: Path, threads: int) -> float:
    code = ssl4mis / "code"
    workdir = work / "peer" / "code"
    if workdir.parent.exists():
        import shutil

        shutil.rmtree(workdir.parent)
    args = ["--root_path", str(data), "--exp", "peer_speed", "--max_iterations", str(row.steps),
            "--batch_size", str(row.labeled + row.unlabeled), "--labeled_bs", str(row.labeled), *row.peer_args]
    cmd = [python, "-c", PEER_RUNNER, str(code), row.peer_script, str(workdir), str(threads), ",".join(map(str, row.patch)), *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    logs = list((work / "peer").rglob("log.txt"))
    if proc.returncode != 0 or not logs:
        raise RuntimeError(f"the peer's {row.peer_script} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    times = {}
    for line in logs[0].read_text().splitlines():
        m = re.match(r"\[(\d\d:\d\d:\d\d\.\d{3})\] iteration (\d+) :", line)
        if m:
            times[int(m.group(2))] = datetime.strptime(m.group(1), "%H:%M:%S.%f")
    return _mean_step(times)


def run_semiseg(row: Row, semiseg: str, data: Path, work: Path, threads: int) -> float:
    out = work / "semiseg"
    ov = [f"data.root={data}", f"network.name={row.network}", f"network.kwargs={json.dumps(row.network_kwargs)}",
          f"data.patch_size=[{','.join(map(str, row.patch))}]", f"train.batch_size={row.labeled}",
          f"train.unlabeled_batch_size={row.unlabeled}", f"split.labeled={row.labeled_cases}",
          f"train.iterations={row.steps + 10}", f"train.val_every={row.steps + 10}", f"train.checkpoint_every={row.steps + 10}",
          "train.log_every=1", f"train.threads={threads}", "train.progress=off", "eval.select_by=last"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([semiseg, "train", row.preset, *ov, "--run-dir", str(out), "--overwrite"], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"semiseg train failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    times = {}
    for line in (out / "train.log").read_text().splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO step (\d+)/", line)
        if m:
            times[int(m.group(2))] = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
    return _mean_step(times, before=row.steps + 10)  # semiseg logs a progress line every 10 steps


WARMUP = 5


def _mean_step(times: dict[int, datetime], before: int | None = None) -> float:
    """Seconds per step between the first logged step at or after ``WARMUP`` and the last logged step before
    ``before`` (a final step whose line follows validation is left out)."""
    steps = sorted(k for k in times if k >= WARMUP and (before is None or k < before))
    if len(steps) < 2:
        raise RuntimeError(f"too few step log lines after the warm-up ({sorted(times)[:5]} ...)")
    a, b = steps[0], steps[-1]
    d = (times[b] - times[a]).total_seconds()
    return (d + 86400 if d < 0 else d) / (b - a)  # past midnight (the peer logs the time of day only)


# ------------------------------------------------------------------ FLOPs and the GEMM peak (this process)
def step_flops(row: Row) -> float:
    """Floating-point operations of one semiseg mean-teacher step (student forward + backward, teacher forward)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from semiseg.methods import MethodContext, create_method
    from semiseg.networks import create_network

    classes = 4 if row.dims == 2 else 2
    ctx = MethodContext(classes, 1, row.dims, 1000, lambda **kw: create_network(
        row.network, spatial_dims=row.dims, in_channels=1, num_classes=classes, **{**row.network_kwargs, **kw}))
    m = create_method("mean_teacher", ctx, {})
    lab = {"image": torch.randn(row.labeled, 1, *row.patch), "label": torch.randint(0, classes, (row.labeled, *row.patch))}
    unl = {"image": torch.randn(row.unlabeled, 1, *row.patch)}
    with FlopCounterMode(display=False) as fc:
        m.training_step(lab, unl, 10)["loss"].backward()
        m.on_after_step(10)
    return float(fc.get_total_flops())


def matmul_peak(threads: int, n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of fp32 GEMMs at ``threads`` threads (the best of ``repeats``): ``mkl``, an ``n``^3 ``torch.mm``
    (MKL); ``onednn``, the same GEMM as a 1x1 convolution (oneDNN, the library torch's CPU convolutions use; MKL
    takes a slower path on some AMD processors); ``peak``, the higher of the two."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    mkl = 2 * n**3 / min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats)) / 1e9
    h, w_ = 32, n // 32  # n pixels x n channels -> n channels: an n x n x n GEMM
    x = torch.randn(1, n, h, w_).contiguous(memory_format=torch.channels_last)
    w = torch.randn(n, n, 1, 1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.nn.functional.conv2d(x, w)
        onednn = 2 * n**3 / min(_timed(lambda: torch.nn.functional.conv2d(x, w)) for _ in range(repeats)) / 1e9
    return {"mkl": mkl, "onednn": onednn, "peak": max(mkl, onednn)}


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ssl4mis", type=Path, required=True, help="a checkout of HiLab-git/SSL4MIS (holding code/)")
    ap.add_argument("--peer-python", default=sys.executable, help="a Python with torch, torchvision, tensorboardX, "
                                                                   "h5py, scipy, opencv, medpy for the peer's scripts")
    ap.add_argument("--semiseg", default=str(REPO / ".venv" / "bin" / "semiseg"))
    ap.add_argument("--acdc", type=Path, default=REPO.parent / "shared" / "data" / "acdc")
    ap.add_argument("--la", type=Path, default=Path(os.path.expanduser("~/data/la2018")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", default="", help="comma-separated row numbers (1-based); default all")
    ap.add_argument("--steps-scale", type=float, default=1.0, help="multiply every row's steps (a quick check: 0.5)")
    ap.add_argument("--out", type=Path, help="markdown table (a .json beside it)")
    a = ap.parse_args()
    rows = [r for i, r in enumerate(ROWS, 1) if not a.rows or str(i) in a.rows.split(",")]
    if a.steps_scale != 1.0:
        rows = [Row(**{**asdict(r), "steps": max(WARMUP + 3, int(r.steps * a.steps_scale))}) for r in rows]
    with tempfile.TemporaryDirectory(prefix="peer_speed_") as tmp:
        work = Path(tmp)
        data = {2: (peer_acdc(a.acdc, work / "data"), a.acdc), 3: (peer_la(a.la, work / "data"), a.la)}
        results = []
        peaks = []
        for row in rows:
            peer_t, ours_t = [], []
            for rep in range(a.repeats):
                peaks.append(matmul_peak(a.threads))
                order = ("peer", "semiseg") if rep % 2 == 0 else ("semiseg", "peer")  # alternate who goes first
                for who in order:
                    if who == "peer":
                        peer_t.append(run_peer(row, a.ssl4mis, a.peer_python, data[row.dims][0], work, a.threads))
                    else:
                        ours_t.append(run_semiseg(row, a.semiseg, data[row.dims][1], work, a.threads))
                    print(f"{row.name}: {who} {(peer_t if who == 'peer' else ours_t)[-1]:.3f} s/step", flush=True)
            flops = step_flops(row)
            results.append({"row": row.name, "peer_s": statistics.median(peer_t), "semiseg_s": statistics.median(ours_t),
                            "peer_all": peer_t, "semiseg_all": ours_t, "gflop_per_step": flops / 1e9})
        peak = statistics.median(p["peak"] for p in peaks)
        rates = {k: statistics.median(p[k] for p in peaks) for k in ("mkl", "onednn")}
    for r in results:
        r["ratio"] = r["peer_s"] / r["semiseg_s"]
        r["semiseg_share"] = r["gflop_per_step"] / r["semiseg_s"] / peak
        r["peer_share"] = r["gflop_per_step"] / r["peer_s"] / peak
    import torch

    peer_torch = subprocess.run([a.peer_python, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                                text=True).stdout.strip()
    cmd = " ".join(["python benchmarks/peer_speed.py", f"--ssl4mis {a.ssl4mis}", f"--peer-python {a.peer_python}",
                    f"--threads {a.threads}", f"--repeats {a.repeats}"] + ([f"--rows {a.rows}"] if a.rows else [])
                   + ([f"--steps-scale {a.steps_scale}"] if a.steps_scale != 1 else []) + ([f"--out {a.out}"] if a.out else []))
    md = ["# Training speed side by side: SSL4MIS vs semiseg (mean teacher)", "",
          f"Command: `{cmd}`", "",
          f"This machine: {os.cpu_count()} CPU cores, {a.threads} threads per run, nothing else running. semiseg: torch "
          f"{torch.__version__}; the peer: torch {peer_torch} (its scripts need torchvision, which does not install beside "
          f"the CPU build semiseg pins). fp32 GEMM peak (2048^3 at {a.threads} threads, median over the run): "
          f"{peak:.1f} GFLOP/s, the higher of torch.mm through MKL ({rates['mkl']:.1f}) and the same GEMM as a 1x1 "
          f"convolution through oneDNN ({rates['onednn']:.1f}), the library of torch's CPU convolutions. Median seconds per step over {a.repeats} alternating runs each; steps after the first "
          f"{WARMUP}, data loading included, start-up and validation excluded (see the script's docstring for what its "
          "runner changes to run the peer's scripts on a CPU: nothing in their training code).", "",
          "| setting | SSL4MIS s/step | semiseg s/step | ratio | GFLOP/step | semiseg share of GEMM peak | SSL4MIS share |",
          "|---|---|---|---|---|---|---|"]
    for r in results:
        md.append(f"| {r['row']} | {r['peer_s']:.3f} | {r['semiseg_s']:.3f} | {r['ratio']:.2f}x | {r['gflop_per_step']:.1f} | "
                  f"{100 * r['semiseg_share']:.0f}% | {100 * r['peer_share']:.0f}% |")
    print("\n".join(md))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text("\n".join(md) + "\n")
        a.out.with_suffix(".json").write_text(json.dumps({"peak_gflops": peak, "gemm_rates": rates, "threads": a.threads, "rows": results,
                                                          "torch": torch.__version__, "peer_torch": peer_torch}, indent=1))


if __name__ == "__main__":
    main()
