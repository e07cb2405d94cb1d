"""The two-stream sampler: a labeled and an unlabeled batch per step, each stream cycled independently.

Batch composition is a pure function of (run seed, stream, step): the stream
walks through a fresh seeded permutation of its samples every epoch, and each
sample gets its own augmentation seed. Resuming at step ``s`` therefore
reproduces exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from semiseg.data.transforms import sample_seed

LABELED, UNLABELED = 0, 1


class StepBatchSampler:
    """Infinite batches of ``(index, seed)`` pairs starting at ``start_step``."""

    def __init__(self, n_items: int, batch_size: int, seed: int, stream: int, start_step: int = 0) -> None:
        if n_items <= 0:
            raise ValueError("cannot sample batches from an empty dataset")
        self.n, self.batch_size, self.seed, self.stream, self.start_step = n_items, batch_size, seed, stream, start_step
        self._perm_epoch, self._perm = -1, np.arange(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, self.stream, epoch]).permutation(self.n)
            self._perm_epoch = epoch
        return self._perm

    def batch(self, step: int) -> list[tuple[int, int]]:
        out = []
        for j in range(self.batch_size):
            pos = step * self.batch_size + j
            epoch, i = divmod(pos, self.n)
            out.append((int(self._permutation(epoch)[i]), sample_seed(self.seed, self.stream, pos)))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def make_loader(dataset: Dataset, batch_size: int, seed: int, stream: int, start_step: int, num_workers: int) -> DataLoader:
    sampler = StepBatchSampler(len(dataset), batch_size, seed, stream, start_step)  # type: ignore[arg-type]
    # A private generator: creating the iterator must not draw from the global torch RNG, which
    # drives dropout and is restored on resume (all sample randomness comes from the sampler's seeds).
    generator = torch.Generator().manual_seed(seed * 2 + stream)
    return DataLoader(
        dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=_collate,
        persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available(), generator=generator,
    )


class TwoStreamLoader:
    """Yields ``(labeled_batch, unlabeled_batch_or_None)`` per step."""

    def __init__(
        self, labeled: Dataset, unlabeled: Dataset | None, batch_size: int, unlabeled_batch_size: int,
        seed: int, start_step: int = 0, num_workers: int = 0,
    ) -> None:
        self.labeled = make_loader(labeled, batch_size, seed, LABELED, start_step, num_workers)
        use_unl = unlabeled is not None and unlabeled_batch_size > 0 and len(unlabeled) > 0  # type: ignore[arg-type]
        self.unlabeled = (
            make_loader(unlabeled, unlabeled_batch_size, seed, UNLABELED, start_step, num_workers) if use_unl else None  # type: ignore[arg-type]
        )

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]]:
        lab_it = iter(self.labeled)
        unl_it = iter(self.unlabeled) if self.unlabeled is not None else None
        while True:
            yield next(lab_it), (next(unl_it) if unl_it is not None else None)
