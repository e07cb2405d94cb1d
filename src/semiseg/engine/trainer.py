"""The training engine: iteration loop, devices, AMP (CUDA only), non-finite guard, validation,
best/latest/final checkpoints, exact resume, CSV + TensorBoard logs, progress bar.

Usage: ``Trainer(cfg, run_dir).fit()`` for a new run, ``Trainer.resume(run_dir).fit()`` to continue.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semiseg import __version__
from semiseg.config import RunConfig, dump_config, load_config
from semiseg.config.schema import EXECUTION_ONLY, OptimConfig
from semiseg.data.datasets import PatchDataset, SliceDataset
from semiseg.data.sampling import TwoStreamLoader
from semiseg.data.splits import Splits, make_splits
from semiseg.data.transforms import build_augmentation
from semiseg.engine.phase_timer import PhaseTimer, peak_rss_gib
from semiseg.engine.checkpoint import (
    CHECKPOINT_FORMAT, load_checkpoint, non_finite_entries, resolve_checkpoint, rng_state, save_atomic, seed_everything,
    set_rng_state,
)
from semiseg.engine.data_setup import (
    check_patch_size, dataset_info, load_cases, network_factory, open_verified_layout,
)
from semiseg.engine.optim import build_optimizer, build_scheduler
from semiseg.engine.distributed import any_rank, average_gradients, broadcast_module, init_from_environment, rank, world_size
from semiseg.engine.run_dir import (
    check_not_in_use, close_logger, is_main_process, method_revision_of, prepare_run_dir, remove_orphan_temp_files, setup_logger,
    training_lock, write_environment, write_init_from,
)
from semiseg.errors import ConfigError, SemisegError
from semiseg.evaluation.inference import memory_format, predict_probabilities
from semiseg.evaluation.scoring import mean_dice, score_case
from semiseg.methods import MethodContext, create_method
from semiseg.methods.registry import get_method_class, resolved_config, validate_method_params


class NonFiniteLoss(Exception):
    def __init__(self, terms: list[str]) -> None:
        super().__init__(", ".join(terms))
        self.terms = terms


class TrainingAborted(SemisegError):
    exit_code = 1


def resolve_device(kind: str) -> torch.device:
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = cuda but no CUDA device is available")
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(kind)


class Trainer:
    def __init__(self, cfg: RunConfig, run_dir: Path, overwrite: bool = False, _resuming: bool = False) -> None:
        validate_method_params(cfg.method.name, cfg.method.params)  # config errors before any work
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = init_from_environment(resolve_device(cfg.train.device))  # joins torchrun's process group
        if not _resuming:
            problem: ConfigError | None = None
            if is_main_process():
                try:
                    prepare_run_dir(self.run_dir, overwrite)
                    # the method's params with every default written out: a later change of a default is visible
                    resolved = cfg.model_copy(deep=True)
                    resolved.method.params = resolved_config(cfg)["method"]["params"]
                    (self.run_dir / "config.yaml").write_text(dump_config(resolved))
                except ConfigError as exc:
                    problem = exc
            if any_rank(problem is not None, self.device):
                raise problem or ConfigError(f"rank 0 could not prepare the run folder {self.run_dir}")
        self.logger = setup_logger(self.run_dir)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.step = 0
        self.best_metric = -math.inf
        self.best_step = -1
        self.stopped_early = False
        self.bad_steps = 0
        self.train_seconds = 0.0  # wall time inside the training loop, summed over resumes
        self.peak_rss = 0.0  # peak resident memory (GiB) of the processes that trained the run, over resumes
        self._resuming = _resuming

    @classmethod
    def resume(cls, run_dir: Path, overrides: list[str] | None = None) -> "Trainer":
        """Continue a run from ``checkpoint_latest.pt`` with its saved config (overrides such as
        ``train.iterations=2000`` may extend it)."""
        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"'{run_dir}' is not a run folder (no config.yaml)")
        check_not_in_use(run_dir, "resume it")  # before anything in it is touched
        cfg = load_config(run_dir / "config.yaml", overrides)
        remove_orphan_temp_files(run_dir)
        if not (run_dir / "checkpoint_latest.pt").is_file():  # killed before its first checkpoint: start it again
            return cls(cfg, run_dir, overwrite=True)
        if overrides:
            (run_dir / "config.yaml").write_text(dump_config(cfg))
        return cls(cfg, run_dir, _resuming=True)

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        self.logger.info(f"semiseg {__version__}: method '{cfg.method.name}', network '{cfg.network.name}', device {self.device}")
        layout = open_verified_layout(cfg, self.logger)
        method_cls = get_method_class(cfg.method.name)
        splits_path = self.run_dir / "splits.json"
        if self._resuming and splits_path.is_file():
            self.splits = Splits.load(splits_path)
        else:
            self.splits = make_splits(layout.refs(), cfg.split)  # deterministic: the same on every rank
            if is_main_process():
                self.splits.save(splits_path)
                write_environment(self.run_dir, f"{self.device} x {world_size()} ranks" if world_size() > 1 else str(self.device),
                                  method_cls.revision)
        s = self.splits
        self.logger.info(
            f"splits (seed {s.seed}): {len(s.labeled)} labeled, {len(s.unlabeled)} unlabeled, {len(s.val)} validation, {len(s.test)} test cases"
        )
        if not s.val and cfg.eval.select_by != "last":
            raise ConfigError(f"eval.select_by = {cfg.eval.select_by} needs validation cases but the split has none; "
                              "set split.val (cases taken out of the unlabeled pool) or eval.select_by=last")
        if cfg.train.unlabeled_batch_size > 0 and not method_cls.uses_unlabeled:
            self.logger.warning(f"warning: method '{cfg.method.name}' does not use unlabeled data; "
                                f"train.unlabeled_batch_size = {cfg.train.unlabeled_batch_size} is ignored (no unlabeled cases loaded)")
        needs_unl = cfg.train.unlabeled_batch_size > 0 and bool(s.unlabeled) and method_cls.uses_unlabeled
        cases = load_cases(layout, s.labeled + (s.unlabeled if needs_unl else []) + s.val, cfg)
        first = cases[s.labeled[0]]
        self.info = dataset_info(cfg, layout, first)
        self.val_cases = [cases[c] for c in s.val]
        factory = network_factory(cfg, self.info)
        ctx = MethodContext(self.info.num_classes, self.info.in_channels, cfg.data.spatial_dims, cfg.train.iterations, factory)
        self.method = create_method(cfg.method.name, ctx, cfg.method.params)
        check_patch_size(cfg, self.method.inference_network())
        if cfg.method.init_from and not self._resuming:
            start = resolve_checkpoint(Path(cfg.method.init_from))
            init = load_checkpoint(start)
            self.method.load_initial_weights(init["inference_state"])
            self.logger.info(f"initialised from {cfg.method.init_from} (step {init['step']})")
            if is_main_process():
                write_init_from(self.run_dir, Path(cfg.method.init_from), start, init["step"])
        if self.method.uses_unlabeled and not needs_unl:
            self.logger.warning(f"warning: method '{cfg.method.name}' uses unlabeled data but this run has none "
                                f"(train.unlabeled_batch_size = {cfg.train.unlabeled_batch_size}, {len(s.unlabeled)} unlabeled cases)")
        self.method.to(self.device)
        broadcast_module(self.method)  # every rank starts from rank 0's weights
        self.channels_last = cfg.train.channels_last
        if self.channels_last:
            self.method.to(memory_format=memory_format(cfg.data.spatial_dims))
        aug = build_augmentation(cfg.data.augmentation, cfg.data.spatial_dims)
        lab_cases = [cases[c] for c in s.labeled]
        unl_cases = [cases[c] for c in s.unlabeled] if needs_unl else []
        if cfg.data.spatial_dims == 2 and cfg.data.slice_mode == "patch":
            ax, fg = cfg.data.slice_axis, cfg.data.foreground_oversample
            lab_ds = PatchDataset(lab_cases, cfg.data.patch_size, True, fg, aug, slice_axis=ax)
            unl_ds = PatchDataset(unl_cases, cfg.data.patch_size, False, 0.0, aug, slice_axis=ax) if unl_cases else None
        elif cfg.data.spatial_dims == 2:
            lab_ds = SliceDataset(lab_cases, cfg.data.slice_axis, cfg.data.patch_size, True, aug)
            unl_ds = SliceDataset(unl_cases, cfg.data.slice_axis, cfg.data.patch_size, False, aug) if unl_cases else None
        else:
            lab_ds = PatchDataset(lab_cases, cfg.data.patch_size, True, cfg.data.foreground_oversample, aug)
            unl_ds = PatchDataset(unl_cases, cfg.data.patch_size, False, 0.0, aug) if unl_cases else None
        self.datasets = (lab_ds, unl_ds)
        groups = self.method.configure_optimizers()
        optim_cfgs = optimizer_configs(cfg, groups, self.method.optimizer_overrides())
        self.optimizers = {name: build_optimizer(params, optim_cfgs[name]) for name, params in groups.items()}
        self.schedulers = {n: build_scheduler(o, cfg.train.iterations, optim_cfgs[n]) for n, o in self.optimizers.items()}
        self.use_amp = cfg.train.amp and self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.method.attach_optimize(self._optimize)
        profiling = cfg.train.profile == "on" or (cfg.train.profile == "auto" and self.device.type == "cpu")
        self.timer = PhaseTimer(torch.cuda.synchronize if self.device.type == "cuda" else None) if profiling else None
        if self.timer is not None:
            self.timer.hook_forwards(self.method.member_networks())
        self.train_method = self.method
        if cfg.train.compile and self.device.type == "cuda":
            self.train_method = torch.compile(self.method)  # type: ignore[assignment]
        if self._resuming:
            self._load_latest()
        self.csv_path = self.run_dir / "metrics.csv"
        self._truncate_metrics(self.step)
        self.tb = None
        if is_main_process():
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step if self.step else None)
            except ImportError:  # pragma: no cover
                self.tb = None

    # ------------------------------------------------------------- checkpoints
    def _checkpoint(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "semiseg_version": __version__,
            "step": self.step,
            "method_state": self.method.state_dict(),
            "inference_state": self.method.inference_network().state_dict(),
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict(),
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "stopped_early": self.stopped_early,
            "train_seconds": self.train_seconds,
            "peak_rss_gib": self._peak_rss(),
            "phase_seconds": self.timer.state_dict() if self.timer is not None else None,
            "rng": rng_state(),
            "config": self.cfg.model_dump(mode="json"),
            "dataset": {"num_classes": self.info.num_classes, "in_channels": self.info.in_channels,
                        "class_names": self.info.class_names, "regions": self.info.regions},
        }

    def _phase(self, name: str, forwards: bool = False) -> contextlib.AbstractContextManager:
        """A profiled phase of the loop (see :mod:`semiseg.engine.phase_timer`); nothing when not profiling."""
        return self.timer.phase(name, forwards) if self.timer is not None else contextlib.nullcontext()

    def save(self, kind: str) -> Path:
        with self._phase("checkpoints"):
            return self._save(kind)

    def _save(self, kind: str) -> Path:
        path = self.run_dir / f"checkpoint_{kind}.pt"
        bad = non_finite_entries(self.method.state_dict())
        if bad:  # never write a model that cannot predict (guarded after every step; this is the last line)
            raise TrainingAborted(f"not saving checkpoint_{kind}.pt: non-finite values in {', '.join(bad[:5])}")
        if is_main_process():
            save_atomic(self._checkpoint(), path)
        return path

    def _check_weights(self) -> None:
        """After an optimizer step: every parameter and buffer must be finite (a finite loss can still blow up
        batch-norm statistics), else the run stops before anything is saved."""
        with self._phase("non-finite weight check"):
            bad = non_finite_entries(self.method.state_dict())
        if any_rank(bool(bad), self.device):
            last = self.run_dir / "checkpoint_latest.pt"
            where = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written"
            raise TrainingAborted(
                f"step {self.step + 1}: parameters or buffers became non-finite ({', '.join(bad[:5]) or 'on another rank'}); "
                f"nothing from this step was saved and {where}; lower optim.lr or set optim.grad_clip"
            )

    def _load_latest(self) -> None:
        path = self.run_dir / "checkpoint_latest.pt"
        ckpt = load_checkpoint(path, "cpu")  # RNG states must stay on the CPU; load_state_dict moves the rest
        self.method.load_state_dict(ckpt["method_state"])
        for n, o in self.optimizers.items():
            o.load_state_dict(ckpt["optimizers"][n])
        for n, s in self.schedulers.items():
            s.load_state_dict(ckpt["schedulers"][n])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step, self.best_metric, self.best_step = ckpt["step"], ckpt["best_metric"], ckpt["best_step"]
        self.train_seconds = float(ckpt.get("train_seconds", 0.0))
        self.peak_rss = float(ckpt.get("peak_rss_gib", 0.0))
        if self.timer is not None and ckpt.get("phase_seconds"):
            self.timer.load_state_dict(ckpt["phase_seconds"])
        self.stopped_early = bool(ckpt.get("stopped_early", False))
        set_rng_state(ckpt["rng"])
        self.logger.info(f"resumed from {path} at step {self.step}")

    # ------------------------------------------------------------------ logging
    def _truncate_metrics(self, step: int) -> None:
        """Drop metric rows past ``step`` (written after the last checkpoint of an interrupted run)."""
        if not self.csv_path.is_file():
            with self.csv_path.open("w", newline="") as fh:
                csv.writer(fh).writerow(["step", "split", "name", "value"])
            return
        with self.csv_path.open() as fh:
            rows = list(csv.reader(fh))
        kept = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= step]
        with self.csv_path.open("w", newline="") as fh:
            csv.writer(fh).writerows(kept)

    def _log_scalars(self, step: int, split: str, values: dict[str, float]) -> None:
        if not is_main_process():
            return
        with self.csv_path.open("a", newline="") as fh:
            w = csv.writer(fh)
            for k, v in values.items():
                w.writerow([step, split, k, f"{v:.6g}"])
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{split}/{k}", v, step)

    # ------------------------------------------------------------ optimisation
    def _to_device(self, batch: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
        if batch is None:
            return None
        out = {}
        for k, v in batch.items():
            v = v.to(self.device, non_blocking=True)
            if k == "image" and self.channels_last:
                v = v.contiguous(memory_format=memory_format(self.cfg.data.spatial_dims))
            out[k] = v
        return out

    def _optimize(self, loss: torch.Tensor, name: str) -> None:
        if name not in self.optimizers:
            raise KeyError(f"no optimizer named '{name}' (configure_optimizers returned {sorted(self.optimizers)})")
        if any_rank(not bool(torch.isfinite(loss.detach()).all()), self.device):
            raise NonFiniteLoss([f"loss passed to optimizer '{name}'"])
        opt = self.optimizers[name]
        with self._phase("backward + optimizer step"):
            self.scaler.scale(loss).backward()
            average_gradients(p for g in opt.param_groups for p in g["params"])
            self._clip_and_step(opt)
            self.scaler.update()
            opt.zero_grad(set_to_none=True)
            self._check_weights()

    def _clip_and_step(self, opt: torch.optim.Optimizer) -> None:
        """Unscale and clip (when ``optim.grad_clip``) then step one optimizer through the AMP scaler."""
        if self.cfg.optim.grad_clip:
            self.scaler.unscale_(opt)
            params = [p for g in opt.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
        self.scaler.step(opt)

    def _zero_all(self) -> None:
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=True)

    def _train_step(self, labeled: dict[str, torch.Tensor], unlabeled: dict[str, torch.Tensor] | None) -> dict[str, float] | None:
        autocast = torch.autocast("cuda", dtype=self.amp_dtype) if self.use_amp else contextlib.nullcontext()
        self.method.train()
        try:
            with autocast, self._phase("training step (losses, mixing, perturbation)", forwards=True):
                out = self.train_method.training_step(labeled, unlabeled, self.step)
            if "loss" not in out:
                raise RuntimeError(f"method '{self.cfg.method.name}' returned no 'loss' entry")
            bad = [k for k, v in out.items() if not torch.isfinite(torch.as_tensor(v).detach()).all()]
            if any_rank(bool(bad), self.device):
                raise NonFiniteLoss(bad or ["a loss term on another rank"])
            if not self.method.manual_optimization:
                loss = out["loss"]
                with self._phase("backward + optimizer step"):
                    self.scaler.scale(loss).backward()
                    average_gradients(p for o in self.optimizers.values() for g in o.param_groups for p in g["params"])
                    for opt in self.optimizers.values():
                        self._clip_and_step(opt)
                    self.scaler.update()
                    self._zero_all()
                    self._check_weights()
        except NonFiniteLoss as exc:
            self._zero_all()
            self.bad_steps += 1
            self.logger.warning(f"step {self.step + 1}: non-finite value in {exc}; step skipped ({self.bad_steps} in a row)")
            if self.bad_steps >= self.cfg.train.max_bad_steps:
                raise TrainingAborted(
                    f"{self.bad_steps} steps in a row had a non-finite loss (last: {exc}); lower optim.lr or check the data"
                ) from None
            return None
        self.bad_steps = 0
        with self._phase("after step (EMA updates)"):
            self.method.on_after_step(self.step)
            if self.method.restarts_optimizers_after(self.step):
                for opt in self.optimizers.values():
                    opt.state.clear()
        return {k: float(torch.as_tensor(v).detach().float().mean()) for k, v in out.items()}

    # --------------------------------------------------------------- validation
    def validate(self) -> dict[str, float]:
        with self._phase("validation"):
            return self._validate()

    def _validate(self) -> dict[str, float]:
        net = self.method.inference_network()
        rows: list[dict[str, Any]] = []
        losses: list[float] = []
        for case in self.val_cases:
            probs = predict_probabilities(
                net, case.image, self.cfg.data.spatial_dims, self.cfg.data.patch_size, self.cfg.eval,
                self.cfg.data.slice_axis, self.device, self.channels_last, self.cfg.data.slice_mode,
            )
            pred = probs.argmax(0).numpy()
            losses.append(validation_cross_entropy(probs, case.label, case.meta.get("fov")))
            rows += score_case(case.case_id, pred, case.label, self.info.class_names, case.spacing,
                               self.cfg.eval.val_metrics, None, case.meta.get("fov"))
        out = {"dice": mean_dice(rows), "loss": float(np.mean(losses))}
        for m in self.cfg.eval.val_metrics:
            if m != "dice":
                out[m] = float(np.mean([r[m] for r in rows]))
        for c in self.info.class_names[1:]:
            out[f"dice_{c}"] = mean_dice(rows, [c])
        return out

    # ---------------------------------------------------------------------- fit
    def fit(self) -> dict[str, Any]:
        try:
            with training_lock(self.run_dir) if is_main_process() else contextlib.nullcontext():
                self._setup()
                return self._loop()
        finally:
            if getattr(self, "tb", None) is not None:
                self.tb.close()
            close_logger(self.logger)

    def _loop(self) -> dict[str, Any]:
        cfg = self.cfg
        total = cfg.train.iterations
        if self.step >= total or self.stopped_early:
            self.logger.info(f"run already complete ({self.step}/{total} iterations{', stopped early' if self.stopped_early else ''})")
            return self._result()
        lab_ds, unl_ds = self.datasets
        loader = TwoStreamLoader(lab_ds, unl_ds, cfg.train.batch_size, cfg.train.unlabeled_batch_size,
                                 cfg.seed + 1_000_003 * rank(), start_step=self.step, num_workers=cfg.train.num_workers)
        show = cfg.train.progress == "on" or (cfg.train.progress == "auto" and sys.stderr.isatty())
        bar = None
        redirect: contextlib.AbstractContextManager = contextlib.nullcontext()
        if show and is_main_process():
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            bar = tqdm(total=total, initial=self.step, desc=cfg.name, dynamic_ncols=True, leave=False)
            redirect = logging_redirect_tqdm(loggers=[self.logger])
        with redirect:
            self._iterate(loader, bar)
        if bar is not None:
            bar.close()
        self.save("final")
        if is_main_process():
            write_progress_plot(self.csv_path, self.run_dir / "progress.png")
            self._write_profile()
        self.logger.info(f"done: {describe_best(self._result())}; run folder {self.run_dir}")
        return self._result()

    def _write_profile(self) -> None:
        """``profile.csv``: where the loop's time went, per phase (summed over resumes)."""
        if self.timer is None:
            return
        from semiseg.evaluation.scoring import write_csv

        # steps timed: a run resumed from a checkpoint written before profiling existed counts from there on
        rows = self.timer.rows(self.timer.calls.get("data (sampling, augmentation, to device)", self.step))
        write_csv(rows, self.run_dir / "profile.csv")
        top = ", ".join(f"{r['phase']} {100 * r['share']:.0f}%" for r in rows[:4])
        self.logger.info(f"where the time went ({self.run_dir / 'profile.csv'}): {top}")

    def _result(self) -> dict[str, Any]:
        return {"best_metric": self.best_metric, "best_step": self.best_step, "step": self.step,
                "select_by": self.cfg.eval.select_by, "stopped_early": self.stopped_early,
                "train_seconds": self.train_seconds, "peak_rss_gib": self._peak_rss()}

    def _peak_rss(self) -> float:
        """Peak resident memory of this run (GiB): this process's, or an earlier part's when that was higher."""
        return max(self.peak_rss, peak_rss_gib())

    def _iterate(self, loader: TwoStreamLoader, bar: Any) -> None:
        cfg = self.cfg
        total = cfg.train.iterations
        running: dict[str, list[float]] = {}
        t0, s0 = time.time(), self.step
        # without a progress bar: a progress line every min(val_every, 10 log_every) steps, a multiple of log_every
        progress_every = cfg.train.log_every * max(1, min(cfg.train.val_every, 10 * cfg.train.log_every) // cfg.train.log_every)
        tick = t0
        batches = iter(loader)
        while True:
            with self._phase("data (sampling, augmentation, to device)"):
                try:
                    labeled, unlabeled = next(batches)
                except StopIteration:
                    break
                labeled, unlabeled = self._to_device(labeled), self._to_device(unlabeled)
            terms = self._train_step(labeled, unlabeled)  # type: ignore[arg-type]
            with self._phase("loop (schedules, logging)"):
                for sch in self.schedulers.values():
                    sch.step()
                self.step += 1
                if terms is not None:
                    for k, v in terms.items():
                        running.setdefault(k, []).append(v)
                if bar is not None:
                    bar.update(1)
                    if terms is not None:
                        bar.set_postfix(loss=f"{terms['loss']:.4f}")
                if self.step % cfg.train.log_every == 0 or self.step == total:
                    avg = {k: float(np.mean(v)) for k, v in running.items()}
                    avg["lr"] = next(iter(self.optimizers.values())).param_groups[0]["lr"]
                    self._log_scalars(self.step, "train", avg)
                    running = {}
                    if bar is None and self.step % progress_every == 0 and is_main_process():
                        # no progress bar (not a terminal: nohup, a scheduler): a progress line at a fixed interval
                        rate = (self.step - s0) / max(time.time() - t0, 1e-6)
                        eta = (total - self.step) / max(rate, 1e-9)
                        self.logger.info(f"step {self.step}/{total}  loss {avg.get('loss', float('nan')):.4f}  "
                                         f"({rate:.2f} it/s, ETA {eta / 60:.0f} min)")
            if (self.step % cfg.train.val_every == 0 or self.step == total) and is_main_process() and self.val_cases:
                val = self.validate()
                self._log_scalars(self.step, "val", val)
                score = selection_score(val, cfg.eval.select_by)
                if cfg.eval.select_by == "last":  # logged only; the final checkpoint is the model
                    self.best_metric, self.best_step = score, self.step
                elif score > self.best_metric:
                    self.best_metric, self.best_step = score, self.step
                    self.save("best")
                rate = (self.step - s0) / max(time.time() - t0, 1e-6)
                msg = (f"step {self.step}/{total}  val dice {val['dice']:.4f}  val loss {val['loss']:.4f}  "
                       f"best {cfg.eval.select_by} {abs(self.best_metric):.4f} @ {self.best_step}  ({rate:.2f} it/s)")
                self.logger.info(msg)
                patience = cfg.train.early_stop_patience if cfg.eval.select_by != "last" else None
                if patience and self.step - self.best_step >= patience * cfg.train.val_every and self.step < total:
                    self.stopped_early = True
                    self.logger.info(f"early stop at step {self.step}: no better validation {cfg.eval.select_by} "
                                     f"in {patience} validations")
            if self.step % cfg.train.val_every == 0 or self.step == total:
                self.stopped_early = any_rank(self.stopped_early, self.device)  # rank 0 validated and decided
            now = time.time()
            self.train_seconds += now - tick
            tick = now
            if self.step % cfg.train.checkpoint_every == 0 or self.step == total or self.stopped_early:
                self.save("latest")
            if self.step >= total or self.stopped_early:
                break


def optimizer_configs(cfg: RunConfig, groups: dict[str, Any], overrides: dict[str, dict[str, Any]]) -> dict[str, OptimConfig]:
    """The run's ``optim`` section for every optimizer, with the method's per-optimizer overrides applied."""
    unknown = set(overrides) - set(groups)
    if unknown:
        raise ConfigError(f"method '{cfg.method.name}' overrides optimizers it does not have: {sorted(unknown)}")
    return {n: OptimConfig.model_validate({**cfg.optim.model_dump(), **overrides.get(n, {})}) for n in groups}


def validation_cross_entropy(probs: torch.Tensor, label: np.ndarray, fov: np.ndarray | None = None) -> float:
    """Mean ``-log p(label)`` over the voxels of one case (inside its field of view when given)."""
    lab = torch.from_numpy(np.asarray(label, dtype=np.int64))
    nll = -torch.log(probs.float().gather(0, lab[None]).clamp_min(1e-12))[0]
    if fov is not None:
        nll = nll[torch.from_numpy(np.asarray(fov, dtype=bool))]
    return float(nll.mean())


def selection_score(val: dict[str, float], select_by: str) -> float:
    """Higher is better: the mean validation Dice (also what ``last`` logs), or minus the validation
    cross-entropy (EquiReg Sec. 7)."""
    return -val["loss"] if select_by == "loss" else val["dice"]


def describe_best(result: dict[str, Any]) -> str:
    """One line: the selected checkpoint's validation score and step."""
    if result.get("select_by") == "last":
        last = f"last validation Dice {result['best_metric']:.4f}; " if result["best_step"] >= 0 else ""
        return f"{last}the final checkpoint is the model (eval.select_by = last)"
    name = "Dice" if result.get("select_by", "dice") == "dice" else "loss"
    early = ", stopped early" if result.get("stopped_early") else ""
    return f"best validation {name} {abs(result['best_metric']):.4f} at step {result['best_step']}{early}"


def run_or_resume(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Train a run, resume it when interrupted, or skip it when ``checkpoint_final.pt`` exists.

    The result's ``train_seconds``: wall time in the training loop summed over every part of the run that was
    kept (each resume continues from a checkpoint's sum), whichever process trained it.

    A folder holding a run with a different configuration, or one that an earlier revision of the method's code
    trained (:attr:`semiseg.methods.base.Method.revision`), is an error (never overwritten).
    """
    if (run_dir / "config.yaml").is_file():
        stored = load_config(run_dir / "config.yaml")  # options added later take their defaults
        if resolved_config(stored) != resolved_config(cfg):
            raise ConfigError(f"'{run_dir}' holds a run with another configuration; remove it or choose another folder")
        have, want = method_revision_of(run_dir), get_method_class(cfg.method.name).revision
        if have is not None and have != want:
            raise ConfigError(f"'{run_dir}' holds a run that revision {have} of method '{cfg.method.name}' trained; "
                              f"its code is at revision {want} now (a fix changed what it computes): remove the "
                              "folder or choose another")
        if (run_dir / "checkpoint_final.pt").is_file():
            final = load_checkpoint(run_dir / "checkpoint_final.pt", "cpu")
            return {"skipped": True, "train_seconds": float(final.get("train_seconds", 0.0)),
                    "peak_rss_gib": float(final.get("peak_rss_gib", 0.0))}
        if (run_dir / "checkpoint_latest.pt").is_file():  # with the caller's threads and display, not the stored ones
            now = [f"train.{key}={json.dumps(getattr(cfg.train, key))}" for key in EXECUTION_ONLY]
            return Trainer.resume(run_dir, now).fit()
        return Trainer(cfg, run_dir, overwrite=True).fit()
    return Trainer(cfg, run_dir).fit()


def write_progress_plot(csv_path: Path, out: Path) -> None:
    """Training loss and validation Dice against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(csv_path.open()))
    loss = [(int(r["step"]), float(r["value"])) for r in rows if r["split"] == "train" and r["name"] == "loss"]
    dice = [(int(r["step"]), float(r["value"])) for r in rows if r["split"] == "val" and r["name"] == "dice"]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    if loss:
        ax[0].plot(*zip(*loss))
    ax[0].set(title="training loss", xlabel="step")
    if dice:
        ax[1].plot(*zip(*dice), marker="o")
    ax[1].set(title="validation Dice", xlabel="step")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
