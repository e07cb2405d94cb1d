import math

import pytest
import torch
import torch.nn.functional as F

from semiseg.data.replay import AugmentationPolicy, ReplayableTransform, _Step, draw_transform, strong_policy, weak_policy


def manual(size, *matrices):
    """A transform from explicit per-step coordinate maps (one sample)."""
    steps = [_Step(torch.as_tensor(m, dtype=torch.float32)[None], torch.zeros(1, dtype=torch.bool)) for m in matrices]
    return ReplayableTransform(tuple(size), steps)


def smooth_image(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(n, 1, *[max(2, s // 8) for s in size], generator=g), size=size,
                         mode="bilinear" if len(size) == 2 else "trilinear", align_corners=False)


def test_translation_and_flip_follow_pixel_conventions():
    x = torch.arange(6 * 8, dtype=torch.float32).view(1, 1, 6, 8)
    # image op "move content 3 px right" = coordinate map u -> u - 3 along x
    t = manual((6, 8), [[1, 0, -3], [0, 1, 0]])
    out = t.apply_image(x)
    expected = torch.zeros_like(x)
    expected[..., 3:] = x[..., :-3]
    torch.testing.assert_close(out, expected)
    assert t.valid[0, 0, :, :3].logical_not().all() and t.valid[0, 0, :, 3:].all()
    flip = manual((6, 8), [[1, 0, 0], [0, -1, 0]])  # y -> -y: a vertical flip
    torch.testing.assert_close(flip.apply_image(x), torch.flip(x, dims=[2]))
    assert flip.valid.all()


def test_pixels_lost_between_operations_stay_invalid():
    """Sequential warps zero-fill what leaves the image: +3 then -3 px is identity except 3 lost columns."""
    x = torch.rand(1, 1, 6, 8) + 1
    t = manual((6, 8), [[1, 0, -3], [0, 1, 0]], [[1, 0, 3], [0, 1, 0]])
    out = t.apply_image(x)
    assert t.valid[0, 0, :, 5:].logical_not().all() and t.valid[0, 0, :, :5].all()
    torch.testing.assert_close(out[..., :5], x[..., :5])
    assert (out[..., 5:] == 0).all()


@pytest.mark.parametrize("size", [(32, 40), (12, 16, 20)])
def test_replay_on_one_hot_equals_label_warp_nearest(size):
    g = torch.Generator().manual_seed(3)
    label = torch.randint(0, 4, (3, 1, *size), generator=g)
    policy = strong_policy().model_copy(update={"elastic_sigma": 4.0, "elastic_alpha": 60.0})
    t = draw_transform(policy, 3, size, torch.Generator().manual_seed(1))
    one_hot = F.one_hot(label[:, 0], 4).movedim(-1, 1).float()
    warped_one_hot = t.apply(one_hot, mode="nearest")
    warped_one_hot[:, :1][~t.valid] = 1.0  # background probability 1 where the warp created pixels
    assert torch.equal(warped_one_hot.argmax(1, keepdim=True), t.apply_label(label))
    assert (t.apply_label(label)[~t.valid] == 0).all()
    probs = t.apply_probabilities(one_hot)
    torch.testing.assert_close(probs.sum(1), torch.ones_like(probs[:, 0]))
    assert (probs[:, 0:1][~t.valid] == 1).all()
    assert not t.valid.all() and t.valid.any()


@pytest.mark.parametrize("size", [(48, 40), (16, 20, 24)])
def test_inverse_round_trips_the_affine_part(size):
    policy = strong_policy().model_copy(update={"elastic_alpha": 0.0})
    t = draw_transform(policy, 4, size, torch.Generator().manual_seed(7))
    inv = t.inverse()
    eye = torch.eye(len(size) + 1).expand(4, -1, -1)
    torch.testing.assert_close(inv.affine_matrix() @ t.affine_matrix(), eye, atol=1e-5, rtol=0)
    x = smooth_image(4, size)
    back = inv.apply_image(t.apply_image(x))
    both = inv.valid & (inv.apply(t.valid.float(), "bilinear") > 0.999)  # all four source pixels valid
    err = (back - x).abs()[both]
    assert both.float().mean() > 0.3 and err.max() < 0.08, (both.float().mean(), err.max())


def test_same_seed_same_transform_and_replay_is_identical():
    a = draw_transform(strong_policy(), 4, (32, 32), torch.Generator().manual_seed(5))
    b = draw_transform(strong_policy(), 4, (32, 32), torch.Generator().manual_seed(5))
    c = draw_transform(strong_policy(), 4, (32, 32), torch.Generator().manual_seed(6))
    assert torch.equal(a.coordinates, b.coordinates) and torch.equal(a.valid, b.valid)
    assert not torch.equal(a.coordinates, c.coordinates)
    x = smooth_image(4, (32, 32))
    assert torch.equal(a.apply_image(x), a.apply_image(x))


def test_strong_policy_draws_3_to_8_operations_and_weak_all_four():
    strong = draw_transform(strong_policy(), 64, (16, 16), torch.Generator().manual_seed(0))
    counts = torch.zeros(64, dtype=torch.long)
    for s in strong.steps:
        counts += (~torch.isclose(s.matrix, torch.cat([torch.eye(2), torch.zeros(2, 1)], 1)).all(-1).all(-1)) | s.elastic
    assert counts.max() <= 8 and len(strong.steps) <= 8
    assert len(draw_transform(weak_policy(), 2, (16, 16), torch.Generator().manual_seed(0)).steps) == 4
    fixed = strong_policy().model_copy(update={"min_ops": 8, "max_ops": 8})
    t = draw_transform(fixed, 5, (16, 16), torch.Generator().manual_seed(0))
    assert len(t.steps) == 8
    assert int(sum(s.elastic.long() for s in t.steps).min()) == 1  # every sample got its elastic step


def test_elastic_field_has_the_size_imgaug_parameters_give():
    """alpha * gaussian(U(-1,1), sigma): std = alpha * sqrt(1/3) / (2 sigma sqrt(pi)) ~ 4.9 px for 720/24."""
    only_elastic = AugmentationPolicy(flip=0, translate=0, elastic_alpha=720.0, elastic_sigma=24.0)
    t = draw_transform(only_elastic, 2, (224, 224), torch.Generator().manual_seed(0))
    std = float(t.displacement.std())
    expected = 720 * math.sqrt(1 / 3) / (2 * 24 * math.sqrt(math.pi))
    assert 0.6 * expected < std < 1.4 * expected, (std, expected)


def test_wrong_shape_and_bad_policy_fail_clearly():
    t = draw_transform(weak_policy(), 2, (16, 16))
    with pytest.raises(ValueError, match="drawn for 2 samples of size"):
        t.apply_image(torch.zeros(3, 1, 16, 16))
    with pytest.raises(ValueError, match="min_ops"):
        AugmentationPolicy(min_ops=3)
    with pytest.raises(ValueError, match="elastic step"):
        draw_transform(AugmentationPolicy(elastic_alpha=10.0, elastic_sigma=2.0), 1, (16, 16)).inverse()


@pytest.mark.parametrize("dims", [2, 3])
def test_transform_geometry_stays_float32_under_autocast(dims):
    """Inside a mixed-precision step the transform is the one drawn outside it (bf16 coordinates would
    be off by up to a pixel, and the elastic field's bf16 smoothing failed to store)."""
    size = (48,) * dims
    x = torch.softmax(torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1)), 1)
    ref = draw_transform(strong_policy(), 2, size, torch.Generator().manual_seed(3)).apply_probabilities(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = draw_transform(strong_policy(), 2, size, torch.Generator().manual_seed(3)).apply_probabilities(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref)
