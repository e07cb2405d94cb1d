"""The left-atrium (UA-MT) h5 layout end to end: the literature's splits, clear errors for a partial folder,
3D training of the two seed methods, scoring in mm and voxels with and without the largest component.

A tiny LA-like folder is generated; the real release (``~/data/la2018``, or ``$SEMISEG_LA2018``) is used
only by the last test, which skips when it is absent.
"""

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from semiseg.config import load_config
from semiseg.engine.trainer import Trainer
from semiseg.errors import DatasetError

LA_DIR = "2018LA_Seg_Training Set"
REAL_LA = Path(os.environ.get("SEMISEG_LA2018", "~/data/la2018")).expanduser()


def make_la_like(root: Path, n_train=6, n_test=2, shape=(20, 18, 16), seed=0) -> list[str]:
    rng = np.random.default_rng(seed)
    names = [f"C{i:02d}{'XYZ'[i % 3]}" for i in range(n_train + n_test)]
    for name in names:
        z, y, x = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
        c = [rng.uniform(s * 0.4, s * 0.6) for s in shape]
        label = (((z - c[0]) / 5) ** 2 + ((y - c[1]) / 4) ** 2 + ((x - c[2]) / 4) ** 2 < 1).astype(np.uint8)
        image = (label * 2.0 + rng.normal(0, 0.5, shape)).astype(np.float32)
        (root / LA_DIR / name).mkdir(parents=True)
        with h5py.File(root / LA_DIR / name / "mri_norm2.h5", "w") as h:
            h["image"], h["label"] = image, label
    (root / "train.list").write_text("\n".join(names[:n_train]) + "\n")
    (root / "test.list").write_text("\n".join(names[n_train:]) + "\n")
    return names


def la_overrides(root: Path, *extra: str) -> list[str]:
    return [f"data.root={root}", "data.patch_size=[16,16,16]", "network.kwargs={n_filters: 2}", "train.iterations=2",
            "train.val_every=2", "train.checkpoint_every=2", "train.progress=off", "split.labeled=2", *extra]


def test_labeled_are_the_first_names_of_train_list_and_validation_comes_from_the_unlabeled(tmp_path):
    names = make_la_like(tmp_path)
    cfg = load_config("la3d_hybrid_colearning", la_overrides(tmp_path, "split.val=1", "eval.select_by=dice"))
    t = Trainer(cfg, tmp_path / "run")
    t._setup()
    s = t.splits
    assert s.labeled == names[:2]  # train.list order (the literature's first 4 / 8 / 16)
    assert s.test == sorted(names[6:])
    assert len(s.val) == 1 and s.val[0] in names[2:6] and set(s.unlabeled) == set(names[2:6]) - set(s.val)
    case = t.val_cases[0]
    assert case.spacing == (0.625, 0.625, 0.625)


@pytest.mark.parametrize("broken, message", [
    ("missing_case", "no h5 file for case 'C01Y' listed in train.list"),
    ("missing_list", "test.list: list file is missing"),
])
def test_partial_la_folder_is_a_clear_error_before_training(tmp_path, broken, message):
    make_la_like(tmp_path)
    if broken == "missing_case":
        (tmp_path / LA_DIR / "C01Y" / "mri_norm2.h5").unlink()
    else:
        (tmp_path / "test.list").unlink()
    cfg = load_config("la3d_supervised", la_overrides(tmp_path))
    with pytest.raises(DatasetError, match=message):
        Trainer(cfg, tmp_path / "run").fit()
    assert not (tmp_path / "run" / "checkpoint_latest.pt").exists()


def test_la_root_from_an_environment_variable(tmp_path, monkeypatch):
    make_la_like(tmp_path)
    monkeypatch.setenv("MY_LA_ROOT", str(tmp_path))
    cfg = load_config("la3d_supervised", la_overrides(tmp_path) + ["data.root=$MY_LA_ROOT"])
    from semiseg.data.layout import open_layout

    assert open_layout(cfg.data).root == tmp_path
    monkeypatch.delenv("MY_LA_ROOT")
    with pytest.raises(DatasetError, match="MY_LA_ROOT is not set"):
        open_layout(cfg.data)


@pytest.mark.slow
@pytest.mark.parametrize("preset, extra", [
    ("la3d_hybrid_colearning", []), ("la3d_voxel_adversarial", []),
    ("la3d_bcp", ["method.params.pretrain_iterations=1", "optim.hold_iterations=1"]),  # both of BCP's stages
])
def test_seed_methods_train_on_la_and_score_in_mm_and_voxels(tmp_path, preset, extra):
    from semiseg.evaluation.run_eval import evaluate_run

    make_la_like(tmp_path)
    cfg = load_config(preset, la_overrides(tmp_path, "data.preprocessing.target_spacing=[1.25,1.25,1.25]",
                                           "data.patch_size=[16,16,16]", "eval.sw_overlap=[0.5,0.5,0.25]", *extra))
    result = Trainer(cfg, tmp_path / "run").fit()
    assert result["step"] == 2 and result["select_by"] == "last"
    assert not (tmp_path / "run" / "checkpoint_best.pt").exists()  # no selection: the final checkpoint is the model
    raw = evaluate_run(tmp_path / "run", "test", which="best")
    lcc = evaluate_run(tmp_path / "run", "test", which="best", postprocess="largest_component")
    assert (tmp_path / "run" / "eval_test_lcc" / "summary.csv").is_file()
    for res in (raw, lcc):
        assert {"hd95", "asd", "hd95_vox", "asd_vox"} <= set(res["metrics"])
        for row in res["rows"]:  # scored on the original 0.625 mm grid: mm = 0.625 x voxels
            assert row["hd95"] == pytest.approx(0.625 * row["hd95_vox"])
    for cid, pred in lcc["predictions"].items():
        assert pred.shape == (20, 18, 16)


@pytest.mark.realdata
@pytest.mark.skipif(not (REAL_LA / "train.list").is_file(), reason=f"LA 2018 not found at {REAL_LA} (see ../shared/data/README.md)")
def test_real_la_release_splits():
    from semiseg.data.layout import open_layout
    from semiseg.data.splits import make_splits

    for n in (4, 8, 16):
        cfg = load_config("la3d_supervised", [f"data.root={REAL_LA}", f"split.labeled={n}"])
        layout = open_layout(cfg.data)
        s = make_splits(layout.refs(), cfg.split)
        train = (REAL_LA / "train.list").read_text().split()
        assert s.labeled == train[:n] and sorted(s.unlabeled) == sorted(train[n:]) and len(s.test) == 20
        assert s.val == []
    case = layout.load(next(r for r in layout.refs() if r.case_id == train[0]))
    assert case.image.shape[1:] == case.label.shape and set(np.unique(case.label)) == {0, 1}
