"""Time one training step (forward, loss, backward, optimizer step) of the package's method/network pairs.

    python benchmarks/step_time.py                 # this machine's device (CUDA if present, else CPU)
    python benchmarks/step_time.py --out docs/benchmarks/step_time_h100.md
    python benchmarks/step_time.py --all --out docs/benchmarks/step_time_cpu.md   # every preset, patch and batch sweeps

The step mirrors the engine's (``Trainer._train_step``): channels-last tensors, bf16 autocast on CUDA
(fp32 on the CPU), the method's ``training_step``, backward, the optimizer step, ``on_after_step``.
Random inputs of the preset's sizes; the median over timed steps after warm-up steps; data loading not
included. Paper-scale rows (FC-DenseNet103 at 224x224) run on CUDA only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import torch

from semiseg.engine.trainer import resolve_device
from semiseg.evaluation.inference import memory_format
from semiseg.methods import MethodContext, create_method
from semiseg.networks import create_network

class Spec(NamedTuple):
    row: str
    method: str
    network: str
    network_kwargs: dict
    dims: int
    patch: int | tuple[int, ...]
    labeled: int
    unlabeled: int
    gpu_only: bool = False  # paper scale
    params: dict | None = None  # the method's params (a preset's); None: the method's defaults


SPECS = [
    Spec("2D U-Net 16-256, supervised", "supervised", "unet", {}, 2, 128, 8, 0),
    Spec("2D U-Net 16-256, equireg", "equireg", "unet", {}, 2, 128, 4, 4),
    Spec("2D FC-DenseNet (growth 8, blocks 2-3-4-5/6; CPU preset), equireg", "equireg", "fc_densenet",
         {"growth_rate": 8, "first_channels": 24, "down_layers": [2, 3, 4, 5], "bottleneck_layers": 6}, 2, 128, 2, 6),
    Spec("3D V-Net 16, supervised", "supervised", "vnet", {"n_filters": 16}, 3, 64, 4, 0),
    Spec("3D V-Net 16, mean teacher", "mean_teacher", "vnet", {"n_filters": 16}, 3, 64, 2, 2),
    # the papers' LA setting (la3d_* presets): V-Net 16, 112x112x80 crops, 2 + 2
    Spec("LA paper: V-Net 16, hybrid_colearning", "hybrid_colearning", "vnet", {"n_filters": 16, "dropout": 0.5}, 3, (112, 112, 80), 2, 2),
    Spec("LA paper: V-Net 16, voxel_adversarial", "voxel_adversarial", "vnet", {"n_filters": 16, "dropout": 0.5}, 3, (112, 112, 80), 2, 2),
    Spec("FC-DenseNet103, supervised (EquiReg baseline)", "supervised", "fc_densenet103", {}, 2, 224, 8, 0, True),
    Spec("FC-DenseNet103, equireg (paper: 2 + 6)", "equireg", "fc_densenet103", {}, 2, 224, 2, 6, True),
]


def preset_specs() -> list[Spec]:
    """Every method as its presets configure it: the ACDC CPU protocol (``acdc2d_*``: 2D at 128x128, the preset's
    network and batch) and the LA CPU protocol (``la3d_*`` with V-Net 8, 64x64x32 crops, 2 + 2), and how a
    3D step grows with the patch (V-Net 16 mean teacher, 48^3 to the papers' 112x112x80) and with the batch."""
    from semiseg.config import list_presets, load_config

    out = []
    for preset in list_presets():
        kind = "ACDC CPU" if preset.startswith("acdc2d_") else "LA CPU" if preset.startswith("la3d_") else None
        if kind is None or preset.endswith("_base"):
            continue
        overrides = ["data.patch_size=[128,128]"] if kind == "ACDC CPU" else [
            "data.patch_size=[64,64,32]", "network.kwargs={n_filters: 8, dropout: 0.5}", "train.batch_size=2",
            "train.unlabeled_batch_size=2"]
        cfg = load_config(preset, overrides)
        unl = cfg.train.unlabeled_batch_size if cfg.split.unlabeled == "rest" and cfg.method.name != "supervised" else 0
        patch = 128 if kind == "ACDC CPU" else (64, 64, 32)
        out.append(Spec(f"{kind}: {preset}", cfg.method.name, cfg.network.name, dict(cfg.network.kwargs), cfg.data.spatial_dims,
                        patch, cfg.train.batch_size, unl, params=dict(cfg.method.params)))
    vnet16 = {"n_filters": 16, "dropout": 0.5}
    for patch in [(48, 48, 48), (64, 64, 64), (80, 80, 80), (96, 96, 96), (112, 112, 80)]:
        out.append(Spec(f"patch sweep: V-Net 16, mean teacher, {'x'.join(map(str, patch))}", "mean_teacher", "vnet", vnet16, 3,
                        patch, 2, 2))
    for b in (1, 4):
        out.append(Spec(f"batch sweep: V-Net 16, mean teacher, 64^3, {b} + {b}", "mean_teacher", "vnet", vnet16, 3, 64, b, b))
    return out


def batches(dims: int, patch: int | tuple[int, ...], n_l: int, n_u: int, classes: int, device: torch.device):
    shape = (patch,) * dims if isinstance(patch, int) else tuple(patch)
    fmt = memory_format(dims)
    lab = {"image": torch.randn(n_l, 1, *shape, device=device).contiguous(memory_format=fmt),
           "label": torch.randint(0, classes, (n_l, *shape), device=device)}
    unl = {"image": torch.randn(n_u, 1, *shape, device=device).contiguous(memory_format=fmt)} if n_u else None
    return lab, unl


def time_step(spec: Spec, device: torch.device, warmup: int, steps: int, classes: int = 4) -> float:
    torch.manual_seed(0)
    ctx = MethodContext(classes, 1, spec.dims, 10_000, lambda **kw: create_network(
        spec.network, spatial_dims=spec.dims, in_channels=1, num_classes=classes, **{**spec.network_kwargs, **kw}))
    m = create_method(spec.method, ctx, spec.params or {}).to(device).to(memory_format=memory_format(spec.dims))
    m.train()
    opts = {n: torch.optim.SGD(ps, lr=1e-3, momentum=0.9) for n, ps in m.configure_optimizers().items()}

    def optimize(loss: torch.Tensor, name: str) -> None:  # what the engine does for manual optimisation
        loss.backward()
        opts[name].step()
        opts[name].zero_grad(set_to_none=True)

    m.attach_optimize(optimize)
    lab, unl = batches(spec.dims, spec.patch, spec.labeled, spec.unlabeled, classes, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast:
            loss = m.training_step(lab, unl, i)["loss"]
        if not m.manual_optimization:
            loss.backward()
            for opt in opts.values():
                opt.step()
                opt.zero_grad(set_to_none=True)
        m.on_after_step(i)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, help="markdown table (a .json beside it); default: print only")
    ap.add_argument("--only", help="rows whose name contains this text")
    ap.add_argument("--all", action="store_true", help="also every acdc2d_* and la3d_* preset, and the patch and batch "
                                                       "sweeps of a 3D step")
    a = ap.parse_args()
    device = resolve_device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(0)
    else:
        name = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    rows = []
    for spec in SPECS + (preset_specs() if a.all else []):
        if (spec.gpu_only and device.type != "cuda") or (a.only and a.only not in spec.row):
            continue
        s = time_step(spec, device, a.warmup, a.steps)
        batch = f"{spec.labeled} + {spec.unlabeled}" if spec.unlabeled else str(spec.labeled)
        patch = f"{spec.patch}^{spec.dims}" if isinstance(spec.patch, int) else "x".join(map(str, spec.patch))
        rows.append({"row": spec.row, "patch": patch, "batch": batch, "step_ms": round(s * 1000, 1),
                     "steps_per_s": round(1 / s, 1)})
        print(f"{spec.row:50s} {rows[-1]['step_ms']:8.1f} ms/step")
    md = [f"# Training-step time on {name}", "",
          f"Command: `python benchmarks/step_time.py {' '.join(shlex.quote(x) for x in sys.argv[1:])}` "
          f"(torch {torch.__version__}, {'bf16 autocast' if device.type == 'cuda' else 'fp32'}, channels-last, "
          f"median of {a.steps} steps after {a.warmup} warm-up steps; random inputs, data loading excluded).", "",
          "| method / network | patch | batch (labeled + unlabeled) | ms / step | steps / s |", "|---|---|---|---|---|"]
    md += [f"| {r['row']} | {r['patch']} | {r['batch']} | {r['step_ms']} | {r['steps_per_s']} |" for r in rows]
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text("\n".join(md) + "\n")
        a.out.with_suffix(".json").write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows}, indent=1))
        print(f"table: {a.out}")


if __name__ == "__main__":
    main()
