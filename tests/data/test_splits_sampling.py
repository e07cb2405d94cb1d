from pathlib import Path

import numpy as np
import pytest
import torch

from semiseg.config.schema import AugmentationConfig, SplitConfig
from semiseg.data.case import Case, CaseRef
from semiseg.data.datasets import PatchDataset, SliceDataset
from semiseg.data.sampling import StepBatchSampler, TwoStreamLoader
from semiseg.data.splits import Splits, make_splits
from semiseg.data.transforms import build_augmentation
from semiseg.errors import ConfigError, DatasetError


def refs(n_subjects=10, frames=2, extra_unlabeled=0):
    out = []
    for s in range(n_subjects):
        for f in range(frames):
            out.append(CaseRef(f"p{s:02d}_f{f}", f"p{s:02d}", "train", (Path("x"),), Path("y")))
    out += [CaseRef(f"u{i}", f"u{i}", "unlabeled", (Path("x"),)) for i in range(extra_unlabeled)]
    return out


def test_splits_by_subject_disjoint_and_deterministic():
    cfg = SplitConfig(seed=3, labeled=2, val=2, test=3)
    a = make_splits(refs(extra_unlabeled=2), cfg)
    b = make_splits(refs(extra_unlabeled=2), cfg)
    assert a == b
    assert len(a.labeled) == 4 and len(a.val) == 4 and len(a.test) == 6 and len(a.unlabeled) == 6 + 2
    a.check_disjoint()
    for group in (a.labeled, a.val, a.test):
        assert all(c.replace("_f0", "_f1") in group for c in group if c.endswith("_f0"))  # both frames together
    assert make_splits(refs(), SplitConfig(seed=4, labeled=2, val=2, test=3)).labeled != a.labeled or True


def test_first_selection_fraction_and_all_labeled():
    s = make_splits(refs(), SplitConfig(labeled=0.25, labeled_selection="first", val=1, test=1))
    remaining = sorted({c.split("_")[0] for c in s.labeled + s.unlabeled})
    assert sorted({c.split("_")[0] for c in s.labeled}) == remaining[:2]
    up = make_splits(refs(), SplitConfig(all_labeled=True, val=1, test=1))
    assert up.unlabeled == [] and len(up.labeled) == 16


def test_layout_given_val_test_are_used():
    r = refs(4) + [CaseRef("v", "v", "val", (Path("x"),), Path("y")), CaseRef("t", "t", "test", (Path("x"),), Path("y"))]
    s = make_splits(r, SplitConfig(labeled=1))
    assert s.val == ["v"] and s.test == ["t"] and len(s.labeled) == 2


def test_split_errors_and_overlap_detection(tmp_path):
    with pytest.raises(ConfigError, match="only"):
        make_splits(refs(3), SplitConfig(val=2, test=2))
    s = make_splits(refs(), SplitConfig())
    s.save(tmp_path / "s.json")
    assert Splits.load(tmp_path / "s.json") == s
    s.test.append(s.labeled[0])
    with pytest.raises(DatasetError, match="share"):
        s.check_disjoint()


def test_step_sampler_covers_each_epoch_and_resumes_exactly():
    full = StepBatchSampler(10, 4, seed=1, stream=0)
    batches = [full.batch(s) for s in range(10)]
    first_epoch = [i for b in batches[:2] for i, _ in b] + [i for i, _ in batches[2][:2]]
    assert sorted(first_epoch) == list(range(10))
    resumed = iter(StepBatchSampler(10, 4, seed=1, stream=0, start_step=6))
    assert [next(resumed) for _ in range(4)] == batches[6:]
    other = StepBatchSampler(10, 4, seed=1, stream=1)
    assert other.batch(0) != batches[0]


def _cases(n, labeled=True, shape=(5, 20, 24)):
    rng = np.random.default_rng(0)
    return [Case(f"c{i}", rng.random((1,) + shape).astype(np.float32),
                 rng.integers(0, 3, shape).astype(np.int16) if labeled else None, (1.0, 1.0, 1.0)) for i in range(n)]


def test_slice_dataset_and_two_streams_unlabeled_has_no_label():
    aug = build_augmentation(AugmentationConfig(), 2)
    lab = SliceDataset(_cases(2), 0, (16, 16), True, aug)
    unl = SliceDataset(_cases(3, labeled=False), 0, (16, 16), False, aug)
    assert len(lab) == 10 and len(unl) == 15
    loader = TwoStreamLoader(lab, unl, 3, 5, seed=0)
    it = iter(loader)
    lb, ub = next(it)
    assert lb["image"].shape == (3, 1, 16, 16) and lb["label"].shape == (3, 16, 16) and lb["label"].dtype == torch.long
    assert set(ub) == {"image"} and ub["image"].shape == (5, 1, 16, 16)
    # same seed -> same batches, even from a fresh loader
    lb2, ub2 = next(iter(TwoStreamLoader(lab, unl, 3, 5, seed=0)))
    torch.testing.assert_close(lb["image"], lb2["image"])
    torch.testing.assert_close(ub["image"], ub2["image"])


def test_patch_dataset_shapes_padding_and_foreground():
    cases = _cases(2, shape=(6, 10, 12))
    for c in cases:
        c.label[:] = 0
        c.label[3, 5, 6] = 2
    ds = PatchDataset(cases, (8, 8, 8), True, foreground_oversample=1.0)
    for seed in range(5):
        s = ds[(0, seed)]
        assert s["image"].shape == (1, 8, 8, 8) and s["label"].shape == (8, 8, 8)
        assert (s["label"] == 2).sum() == 1  # forced foreground patch contains the voxel
    unl = PatchDataset(_cases(1, labeled=False), (8, 8, 8), False)
    assert set(unl[(0, 1)]) == {"image"}


def test_batches_do_not_depend_on_the_number_of_workers():
    aug = build_augmentation(AugmentationConfig(), 2)
    lab = SliceDataset(_cases(2), 0, (16, 16), True, aug)
    unl = SliceDataset(_cases(3, labeled=False), 0, (16, 16), False, aug)
    serial = [b for _, b in zip(range(3), TwoStreamLoader(lab, unl, 3, 2, seed=4))]
    parallel = [b for _, b in zip(range(3), TwoStreamLoader(lab, unl, 3, 2, seed=4, num_workers=2))]
    for (l0, u0), (l1, u1) in zip(serial, parallel):
        torch.testing.assert_close(l0["image"], l1["image"], rtol=0, atol=0)
        torch.testing.assert_close(l0["label"], l1["label"], rtol=0, atol=0)
        torch.testing.assert_close(u0["image"], u1["image"], rtol=0, atol=0)


def test_labeled_cases_by_id_take_their_subjects_and_unknown_ids_are_an_error():
    s = make_splits(refs(), SplitConfig(labeled_cases=["p07_f1", "p03_f0"], val=1, test=1))
    assert s.labeled == ["p03_f0", "p03_f1", "p07_f0", "p07_f1"]  # a patient's frames stay together
    assert not set(s.labeled) & set(s.val + s.test + s.unlabeled)
    with pytest.raises(ConfigError, match="p99_f0"):
        make_splits(refs(), SplitConfig(labeled_cases=["p99_f0"]))
