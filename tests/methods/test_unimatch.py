"""UniMatch (Yang et al., CVPR 2023): the strong views, CutMix provenance, feature dropout on the perturbed
stream only, and the confidence threshold."""

import torch

from semiseg.methods import create_method
from semiseg.methods.unimatch import colour_jitter, cutmix_boxes, gaussian_blur
from semiseg.networks.base import LayerState
from tests.conftest import tiny_unet_context

C = 3


def ctx(dims=2):
    return tiny_unet_context(dims, classes=C)


def test_jitter_and_blur_follow_their_probabilities_and_keep_constant_images_sensible():
    torch.manual_seed(0)
    x = torch.rand(6, 1, 8, 8)
    assert torch.equal(colour_jitter(x, 0.0, 0.5), x) and torch.equal(gaussian_blur(x, 0.0, (0.1, 2.0)), x)
    flat = torch.full((3, 1, 8, 8), 2.0)
    assert not torch.equal(colour_jitter(flat, 1.0, 0.5), flat)  # brightness changes a constant image
    blurred = gaussian_blur(flat, 1.0, (0.5, 2.0))
    torch.testing.assert_close(blurred, flat)  # a normalised kernel keeps a constant image
    vol = torch.rand(2, 1, 8, 8, 8)
    assert gaussian_blur(vol, 1.0, (1.0, 1.0)).std() < vol.std()  # 3D blur smooths


def test_cutmix_box_area_and_probability():
    torch.manual_seed(0)
    boxes = cutmix_boxes(200, (32, 32), 0.5, (0.02, 0.4), 0.3)
    frac = boxes.flatten(1).mean(1)
    present = frac > 0
    assert 0.35 < present.float().mean() < 0.65
    assert frac[present].min() > 0.01 and frac[present].max() < 0.45
    assert cutmix_boxes(3, (8, 8, 8), 1.0, (0.1, 0.2), 0.5).flatten(1).sum(1).min() > 0  # 3D boxes too


def test_strong_view_takes_the_box_from_the_mix_partner():
    m = create_method("unimatch", ctx(), {"jitter_p": 0.0, "blur_p": 0.0, "cutmix_p": 1.0})
    x, partner = torch.zeros(2, 1, 16, 16), torch.ones(2, 1, 16, 16)
    view, box = m.strong_view(x, partner)
    assert torch.equal(view[:, 0], box) and box.sum() > 0


def test_feature_dropout_only_on_the_perturbed_stream(monkeypatch):
    torch.manual_seed(0)
    m = create_method("unimatch", ctx(), {})
    seen = {}
    orig_fp, orig_from = m.feature_perturbed, m.network.forward_from

    def fp(state):
        seen["clean_unlabeled"] = state.h.clone()
        out = orig_fp(state)
        seen["perturbed"] = out.h.clone()
        return out

    def forward_from(state, k):
        if k == m.k:  # the split forward (plain forwards resume from layer 0)
            seen["joint"] = state.h.clone()
        return orig_from(state, k)

    monkeypatch.setattr(m, "feature_perturbed", fp)
    monkeypatch.setattr(m.network, "forward_from", forward_from)
    lab = {"image": torch.randn(2, 1, 16, 16), "label": torch.randint(0, C, (2, 16, 16))}
    unl = {"image": torch.randn(3, 1, 16, 16)}
    m.training_step(lab, unl, 0)
    joint = seen["joint"]
    assert joint.shape[0] == 2 + 3 + 3
    torch.testing.assert_close(joint[2:5], seen["clean_unlabeled"])  # the weak stream is not perturbed
    torch.testing.assert_close(joint[5:], seen["perturbed"])
    zeroed = (seen["perturbed"].flatten(2).abs().sum(2) == 0).float().mean()
    assert 0.3 < zeroed < 0.7  # half of the channels dropped
    st = LayerState(torch.ones(4, 8, 4, 4), [torch.ones(4, 4, 8, 8)])
    out = m.feature_perturbed(st)
    assert (out.skips[0] == 0).any() and (out.h == 0).any()  # skips are perturbed too


def test_no_confident_pixel_means_only_the_supervised_term():
    torch.manual_seed(0)
    m = create_method("unimatch", ctx(), {"threshold": 1.01})
    m.eval()
    lab = {"image": torch.randn(2, 1, 16, 16), "label": torch.randint(0, C, (2, 16, 16))}
    out = m.training_step(lab, {"image": torch.randn(2, 1, 16, 16)}, 0)
    assert out["confident"] == 0 and out["strong1"] == 0 and out["fp"] == 0
    torch.testing.assert_close(out["loss"], (0.5 * out["ce"] + 0.5 * out["dice"]) / 2)
