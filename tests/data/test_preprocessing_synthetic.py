import pytest
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


def test_histogram_equalisation_matches_scikit_image():
    import numpy as np
    from skimage.exposure import equalize_hist

    from semiseg.data.preprocessing import equalize_histogram

    x = np.random.default_rng(0).gamma(2.0, 50.0, size=(6, 20, 24)).astype(np.float32)
    np.testing.assert_allclose(equalize_histogram(x), equalize_hist(x, nbins=256), atol=1e-6)
    mask = x > 60
    ours = equalize_histogram(x, 256, mask)
    np.testing.assert_allclose(ours[mask], equalize_hist(x, nbins=256, mask=mask)[mask], atol=1e-6)
    assert (ours[~mask] == 0).all()


def test_n4_removes_a_multiplicative_bias_field():
    import numpy as np

    pytest.importorskip("SimpleITK")
    from semiseg.data.preprocessing import n4_bias_correction

    z, y, x = np.mgrid[0:12, 0:40, 0:40].astype(np.float32)
    body = ((y - 20) ** 2 + (x - 20) ** 2 < 16**2).astype(np.float32)
    tissue = body * (100 + 5 * np.random.default_rng(0).standard_normal(body.shape)).astype(np.float32)
    bias = np.exp(0.4 * (x - 20) / 20).astype(np.float32)  # +-40% across the image
    biased = tissue * bias
    corrected = n4_bias_correction(biased, (3.0, 1.0, 1.0), body > 0)
    inside = body > 0

    def cv(a):
        return float(a[inside].std() / a[inside].mean())

    assert cv(corrected) < 0.6 * cv(biased), (cv(corrected), cv(biased))


def test_preprocess_case_applies_histeq_and_n4_options():
    import numpy as np

    from semiseg.config.schema import PreprocessingConfig
    from semiseg.data.case import Case
    from semiseg.data.preprocessing import preprocess_case

    img = np.random.default_rng(1).gamma(2.0, 50.0, size=(2, 4, 16, 16)).astype(np.float32)
    case = Case("c", img, np.zeros((4, 16, 16), np.int16), (1.0, 1.0, 1.0), "c", {})
    out = preprocess_case(case, PreprocessingConfig(normalize="none", histogram_equalization=True))
    assert out.image.min() >= 0 and out.image.max() <= 1 and abs(float(out.image.mean()) - 0.5) < 0.05
