import numpy as np
import pytest

from semiseg.evaluation.postprocess import largest_component_per_class


def test_largest_component_per_class_2d_and_3d():
    lab = np.zeros((10, 10), np.int16)
    lab[1:4, 1:4] = 1  # 9 voxels: kept
    lab[7, 7] = 1  # stray voxel: removed
    lab[5:7, 1:3] = 2  # class 2, one component: kept
    out = largest_component_per_class(lab, 3)
    assert out[7, 7] == 0 and (out[1:4, 1:4] == 1).all() and (out[5:7, 1:3] == 2).all()
    assert (lab[7, 7] == 1)  # input untouched
    vol = np.zeros((4, 6, 6), np.int16)
    vol[0, 0, 0] = 1
    vol[2:4, 2:5, 2:5] = 1
    out3 = largest_component_per_class(vol, 2)
    assert out3[0, 0, 0] == 0 and out3.sum() == 18


def test_dense_crf_cleans_a_noisy_map_in_2d_and_3d():
    pytest.importorskip("pydensecrf", reason="the crf extra (pydensecrf2) is not installed")
    from semiseg.evaluation.postprocess import dense_crf

    rng = np.random.default_rng(0)
    img = np.zeros((32, 32), np.float32)
    img[8:24, 8:24] = 1
    p1 = np.clip(img * 0.7 + 0.15 + rng.normal(0, 0.25, img.shape), 0.01, 0.99)
    probs = np.stack([1 - p1, p1])
    truth = img > 0.5
    assert (probs.argmax(0) == truth).mean() < 0.95
    assert (dense_crf(probs, img) == truth).mean() > 0.99
    out3 = dense_crf(np.stack([probs] * 4, axis=1), np.stack([img] * 4))
    assert out3.shape == (4, 32, 32) and (out3 == truth[None]).mean() > 0.99


def test_pseudo_label_refinements():
    import torch

    from semiseg.methods import create_method
    from tests.methods.test_contract import batches, ctx

    _, unl = batches()
    for refine in ("none", "lcc"):
        m = create_method("pseudo_label", ctx(), {"refine": refine})
        out = m.pseudo_labels(unl["image"])
        assert out.shape == (2, 16, 16) and out.dtype == torch.long
    none = create_method("pseudo_label", ctx(), {"refine": "none"})
    torch.testing.assert_close(none.pseudo_labels(unl["image"]), none.labeler.eval()(unl["image"]).argmax(1))
    if __import__("importlib").util.find_spec("pydensecrf") is not None:
        crf = create_method("pseudo_label", ctx(), {"refine": "crf+lcc"})
        assert crf.pseudo_labels(unl["image"]).shape == (2, 16, 16)
