import numpy as np
import pytest

from semiseg.evaluation import metrics as M

medpy = pytest.importorskip("medpy.metric.binary")


def random_masks(rng, shape):
    def blob():
        m = np.zeros(shape, bool)
        c = [rng.integers(s // 4, 3 * s // 4) for s in shape]
        r = [rng.integers(2, s // 3) for s in shape]
        grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
        d = sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, r))
        return d < 1 + 0.3 * rng.random(shape)

    return blob(), blob()


@pytest.mark.parametrize("shape,spacing", [((40, 40), (1.0, 1.0)), ((40, 30), (0.7, 1.3)), ((16, 24, 20), (2.5, 0.8, 0.8))])
@pytest.mark.parametrize("seed", range(4))
def test_equal_to_medpy(shape, spacing, seed):
    a, b = random_masks(np.random.default_rng(seed), shape)
    assert M.dice(a, b) == pytest.approx(medpy.dc(a, b), abs=1e-12)
    assert M.jaccard(a, b) == pytest.approx(medpy.jc(a, b), abs=1e-12)
    assert M.hd95(a, b, spacing) == pytest.approx(medpy.hd95(a, b, voxelspacing=spacing), abs=1e-9)
    assert M.asd(a, b, spacing) == pytest.approx(medpy.asd(a, b, voxelspacing=spacing), abs=1e-9)
    assert M.asd(b, a, spacing) == pytest.approx(medpy.asd(b, a, voxelspacing=spacing), abs=1e-9)
    assert M.assd(a, b, spacing) == pytest.approx(medpy.assd(a, b, voxelspacing=spacing), abs=1e-9)


def test_hand_computed_distances():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[2, 2] = True
    b[2, 6] = True
    assert M.hd95(a, b, (1.0, 2.0)) == pytest.approx(8.0)
    assert M.asd(a, b) == pytest.approx(4.0)


def test_empty_mask_policy():
    z = np.zeros((10, 20), bool)
    m = z.copy()
    m[3:5, 3:5] = True
    both = M.binary_scores(z, z, (1.0, 1.0))
    assert both.empty == "both" and both.values == {"dice": 1.0, "jaccard": 1.0, "hd95": 0.0, "asd": 0.0, "assd": 0.0}
    miss = M.binary_scores(z, m, (2.0, 1.0))
    diag = float(np.hypot(20.0, 20.0))
    assert miss.empty == "prediction" and miss.values["dice"] == 0.0 and miss.values["hd95"] == pytest.approx(diag)
    extra = M.binary_scores(m, z)
    assert extra.empty == "reference" and extra.values["asd"] == pytest.approx(np.hypot(10, 20))
    vox = M.binary_scores(z, m, (2.0, 1.0), ["hd95", "hd95_vox"])  # the worst distance in voxels ignores the spacing
    assert vox.values == {"hd95": pytest.approx(diag), "hd95_vox": pytest.approx(np.hypot(10, 20))}


def test_voxel_distances_are_the_mm_distances_with_unit_spacing():
    a = np.zeros((12, 12, 12), bool)
    b = np.zeros((12, 12, 12), bool)
    a[2:7, 3:8, 3:9] = True
    b[3:9, 3:8, 2:8] = True
    s = M.binary_scores(a, b, (0.625, 0.625, 0.625), ["hd95", "asd", "hd95_vox", "asd_vox"]).values
    assert s["hd95_vox"] == pytest.approx(M.hd95(a, b)) and s["asd_vox"] == pytest.approx(M.asd(a, b))
    assert s["hd95"] == pytest.approx(0.625 * s["hd95_vox"]) and s["asd"] == pytest.approx(0.625 * s["asd_vox"])


def test_multiclass_and_regions():
    pred = np.array([[0, 1, 2, 2]])
    ref = np.array([[0, 1, 1, 2]])
    s = M.multiclass_scores(pred, ref, {"a": [1], "b": [2], "ab": [1, 2]}, metrics=["dice"])
    assert s["a"].values["dice"] == pytest.approx(2 / 3)
    assert s["b"].values["dice"] == pytest.approx(2 / 3)
    assert s["ab"].values["dice"] == 1.0


def test_errors():
    with pytest.raises(ValueError, match="shape"):
        M.binary_scores(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="unknown metrics"):
        M.binary_scores(np.zeros((3, 3)), np.zeros((3, 3)), metrics=["hd100"])
