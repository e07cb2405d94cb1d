import numpy as np
import torch

from semiseg.config.schema import PreprocessingConfig
from semiseg.data.case import Case
from semiseg.data.preprocessing import normalize_intensity, preprocess_case, restore_probabilities
from semiseg.data.synthetic import generate_synthbrain, load_tissue_maps, synthesize_case


def test_normalisations():
    x = np.arange(1, 101, dtype=np.float32).reshape(1, 4, 25)
    z = normalize_intensity(x, PreprocessingConfig(normalize="zscore"))
    assert abs(z.mean()) < 1e-5 and abs(z.std() - 1) < 1e-4
    m = normalize_intensity(x, PreprocessingConfig(normalize="minmax"))
    assert m.min() == 0 and m.max() == 1
    ct = normalize_intensity(x, PreprocessingConfig(normalize="ct", ct_window=(10, 20)))
    assert ct.min() == 0 and ct.max() == 1 and ct.reshape(-1)[14] == 0.5
    p = normalize_intensity(x, PreprocessingConfig(normalize="percentile", percentiles=(10, 90)))
    assert p.min() == 0 and p.max() == 1


def test_crop_resample_restore_round_trip():
    img = np.zeros((1, 10, 20, 20), np.float32)
    img[0, 2:8, 5:15, 4:16] = 1 + np.random.default_rng(0).random((6, 10, 12))
    lab = (img[0] > 1.5).astype(np.int16)
    case = Case("c", img, lab, (2.0, 1.0, 1.0))
    pre = preprocess_case(case, PreprocessingConfig(crop_nonzero=True, target_spacing=[1.0, 1.0, 1.0]))
    assert pre.image.shape == (1, 12, 10, 12) and pre.spacing == (1.0, 1.0, 1.0)
    probs = torch.stack([torch.from_numpy(pre.label == 0), torch.from_numpy(pre.label == 1)]).float()
    back = restore_probabilities(probs, pre).argmax(0).numpy()
    assert back.shape == lab.shape
    assert (back[:, :5] == 0).all() and (back[:, 15:] == 0).all()
    assert np.mean(back == lab) > 0.95


def test_synthbrain_is_deterministic_and_multiclass(tmp_path):
    maps, sp = load_tissue_maps(4.0)
    a = synthesize_case(maps, sp, np.random.default_rng([0, 1]))
    b = synthesize_case(maps, sp, np.random.default_rng([0, 1]))
    c = synthesize_case(maps, sp, np.random.default_rng([0, 2]))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])  # cases differ in shape
    counts = np.bincount(a[1].ravel(), minlength=4)
    assert (counts > 0).all() and counts[2] > counts[1]  # GM more voxels than CSF
    means = [a[0][a[1] == k].mean() for k in (1, 2, 3)]
    assert means[0] < means[1] < means[2]  # T1-like: CSF < GM < WM
    out = generate_synthbrain(tmp_path / "sb", n_cases=2, spacing=4.0, seed=0)
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == ["synth_000.nii.gz", "synth_001.nii.gz"]
