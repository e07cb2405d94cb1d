"""The advisor's signals and strategies on constructed cases whose answer is known (issue 15)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from semiseg.advisor.advise import score_and_rank
from semiseg.advisor.selection import diverse_order, random_scores, rank_by_score
from semiseg.advisor.signals import disagreement, mean_entropy, tta_transforms, tta_variance
from semiseg.config import RunConfig
from semiseg.data.case import Case
from semiseg.engine.data_setup import DatasetInfo
from semiseg.evaluation.run_eval import LoadedModel


def test_mean_entropy_exact():
    p = torch.tensor([[0.5, 1.0], [0.5, 0.0]])  # two voxels: maximal and zero entropy
    assert mean_entropy(p) == pytest.approx(0.5)
    p3 = torch.full((3, 4), 1 / 3)
    assert mean_entropy(p3) == pytest.approx(1.0)
    q = torch.tensor([[0.9], [0.1]])
    assert mean_entropy(q) == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2))


def test_disagreement_exact():
    def onehot(lab, k=3):
        return torch.nn.functional.one_hot(torch.tensor(lab), k).T.float()

    a = onehot([0, 1, 1, 2, 0, 0])
    b = onehot([0, 1, 0, 0, 0, 0])
    d = disagreement([a, b])
    # class 1: Dice 2*1/(2+1); class 2: Dice 0 (only a predicts it)
    assert d["disagreement"] == pytest.approx(1 - (2 / 3 + 0) / 2)
    assert d["voxel_disagreement"] == pytest.approx(2 / 6)
    same = disagreement([a, a, a])
    assert same["disagreement"] == 0 and same["voxel_disagreement"] == 0
    empty = onehot([0, 0, 0])
    assert disagreement([empty, empty])["disagreement"] == 0  # a class neither predicts is agreement
    with pytest.raises(ValueError):
        disagreement([a])


def test_tta_variance_exact():
    p1 = torch.tensor([[1.0, 0.5], [0.0, 0.5]])
    p2 = torch.tensor([[0.0, 0.5], [1.0, 0.5]])
    # foreground probabilities (1, 0) and (0, 0): variances 0.25 and 0
    assert tta_variance([p1, p2]) == pytest.approx(0.125)
    assert tta_variance([p1, p1]) == 0


@pytest.mark.parametrize("dims,slice_axis", [(2, 0), (2, 2), (3, 0)])
def test_tta_transforms_are_undone_exactly(dims, slice_axis):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 4, 6, 6)).astype(np.float32)
    names = [t[0] for t in tta_transforms(dims, slice_axis)]
    assert names[0] == "identity" and names[-1] == "rot90" and len(names) == (5 if dims == 3 else 4)
    for name, forward, inverse in tta_transforms(dims, slice_axis):
        # an equivariant "network" (per-voxel softmax of the image) predicts the same after undoing the transform
        fwd = forward(image)
        if dims == 2 and name != "identity":  # a 2D model's transforms keep every slice a slice of the same index
            assert np.allclose(np.sort(np.take(fwd, 1, axis=slice_axis + 1).ravel()),
                               np.sort(np.take(image, 1, axis=slice_axis + 1).ravel()))
        probs = torch.softmax(torch.from_numpy(np.concatenate([fwd, -fwd])), 0)
        expect = torch.softmax(torch.from_numpy(np.concatenate([image, -image])), 0)
        torch.testing.assert_close(inverse(probs), expect, msg=name)


def test_random_scores_depend_on_the_seed_only():
    assert np.array_equal(random_scores(6, 3), random_scores(6, 3))
    assert not np.array_equal(random_scores(6, 3), random_scores(6, 4))
    assert sorted(rank_by_score(random_scores(6, 3))) == list(range(6))


def test_rank_by_score_is_descending_and_stable():
    assert rank_by_score(np.array([0.1, 0.5, 0.5, 0.2])) == [1, 2, 3, 0]


def test_diverse_skips_a_near_copy_of_a_pick_and_of_a_labeled_case():
    e = np.array([[1.0, 0.0, 0.0], [0.999, 0.045, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    scores = np.array([1.0, 0.95, 0.5, 0.45])
    assert rank_by_score(scores)[:2] == [0, 1]  # by score alone: A and its near-copy A'
    order, values = diverse_order(scores, e)
    assert order[:3] == [0, 2, 3] and order[3] == 1  # A, then the distinct cases; A' last
    assert values[0] == pytest.approx(1.0) and all(v >= 0 for v in values)
    # a candidate identical to a labeled case comes after every other candidate
    order, _ = diverse_order(scores, e, covered=e[[0]])
    assert order == [2, 3, 1, 0]


# ---------------------------------------------------------------- constructed models and cases, through score_and_rank
class SignNet(nn.Module):
    """Foreground logit = +scale * x, background = -scale * x; ``flip_above``: voxels brighter than it get the
    opposite label (a second network that reads a marker the other way: the flipped-label ambiguity);
    ``halves``: the sign flips between the left and right half of the image (not flip-equivariant)."""

    def __init__(self, scale: float = 4.0, flip_above: float | None = None, halves: bool = False) -> None:
        super().__init__()
        self.scale, self.flip_above, self.halves = scale, flip_above, halves
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.full_like(x, self.scale)
        if self.flip_above is not None:
            s = torch.where(x > self.flip_above, -s, s)
        if self.halves:
            w = x.shape[-1]
            s[..., w // 2 :] *= -1
        return torch.cat([-s * x, s * x], 1)


def _model(net: nn.Module) -> LoadedModel:
    cfg = RunConfig.model_validate({"data": {"spatial_dims": 2, "patch_size": [16, 16], "preprocessing": {"normalize": "none"}}})
    return LoadedModel(net, cfg, DatasetInfo(2, 1, ["background", "fg"], {}), Path("constructed.pt"), 0)  # type: ignore[arg-type]


def _cases(values: dict[str, np.ndarray]) -> tuple[list[str], dict[str, str], callable]:
    cases = {cid: Case(cid, v[None].astype(np.float32), None, (1.0, 1.0, 1.0), cid) for cid, v in values.items()}
    ids = sorted(cases)
    return ids, {c: c for c in ids}, lambda cid: cases[cid]


def _constant(v: float) -> np.ndarray:
    return np.full((2, 16, 16), v, np.float32)


def test_entropy_ranks_the_ambiguous_case_first():
    marker = _constant(2.0)
    marker[:, :, :8] = 4.0
    ids, subjects, load = _cases({"a_confident_fg": _constant(2.0), "b_confident_bg": _constant(-2.0),
                                  "c_ambiguous": _constant(0.01), "d_marker": marker})
    ranked, thumbs = score_and_rank(_model(SignNet()), ids, subjects, load, "entropy")
    assert ranked[0].subject == "c_ambiguous" and ranked[0].signals["entropy"] > 0.99
    assert ranked[0].score == ranked[0].signals["entropy"]
    assert set(thumbs["c_ambiguous"]) == {"image", "prediction", "entropy", "slice"}


def test_disagreement_ranks_the_flipped_label_case_first():
    marker = _constant(2.0)
    marker[:, :, :8] = 4.0  # the second network labels the bright half background
    ids, subjects, load = _cases({"a_confident_fg": _constant(2.0), "b_confident_bg": _constant(-2.0),
                                  "c_ambiguous": _constant(0.01), "d_marker": marker})
    members = {"student": SignNet(), "teacher": SignNet(flip_above=3.0)}
    ranked, _ = score_and_rank(_model(SignNet()), ids, subjects, load, "disagreement", members=members)
    assert ranked[0].subject == "d_marker"
    assert ranked[0].signals["disagreement"] == pytest.approx(1 - 2 * 256 / (512 + 256))
    assert [u.signals["disagreement"] for u in ranked[1:]] == [0, 0, 0]
    # entropy alone does not find it: the marker case is predicted confidently
    by_entropy, _ = score_and_rank(_model(SignNet()), ids, subjects, load, "entropy")
    assert by_entropy[0].subject == "c_ambiguous"


def test_tta_ranks_the_case_whose_prediction_moves_under_flips_first():
    ids, subjects, load = _cases({"a_zero": _constant(0.0), "b_bright": _constant(2.0), "c_faint": _constant(0.05)})
    ranked, _ = score_and_rank(_model(SignNet(halves=True)), ids, subjects, load, "tta")
    assert [u.subject for u in ranked] == ["b_bright", "c_faint", "a_zero"]
    assert ranked[-1].signals["tta"] == 0  # p = 0.5 everywhere under every transform
    # ... while entropy ranks the zero image (p = 0.5 everywhere) first
    by_entropy, _ = score_and_rank(_model(SignNet(halves=True)), ids, subjects, load, "entropy")
    assert by_entropy[0].subject == "a_zero"


def test_cases_of_one_subject_are_ranked_as_one_unit():
    ids, _, load = _cases({"p1_ed": _constant(0.01), "p1_es": _constant(2.0), "p2_ed": _constant(0.5), "p2_es": _constant(0.5)})
    subjects = {"p1_ed": "p1", "p1_es": "p1", "p2_ed": "p2", "p2_es": "p2"}
    ranked, _ = score_and_rank(_model(SignNet()), ids, subjects, load, "entropy")
    assert [u.subject for u in ranked] == ["p1", "p2"] and ranked[0].cases == ["p1_ed", "p1_es"]
    one = {c: mean_entropy(torch.softmax(torch.tensor([[-4 * v], [4 * v]]), 0)) for c, v in (("ed", 0.01), ("es", 2.0))}
    assert ranked[0].score == pytest.approx((one["ed"] + one["es"]) / 2, rel=1e-5)


def test_random_strategy_is_a_seeded_permutation():
    ids, subjects, load = _cases({f"c{i}": _constant(float(i)) for i in range(5)})
    a, _ = score_and_rank(_model(SignNet()), ids, subjects, load, "random", seed=1)
    b, _ = score_and_rank(_model(SignNet()), ids, subjects, load, "random", seed=1)
    c, _ = score_and_rank(_model(SignNet()), ids, subjects, load, "random", seed=2)
    assert [u.subject for u in a] == [u.subject for u in b] and sorted(u.subject for u in a) == ids
    assert [u.subject for u in a] != [u.subject for u in c]


def test_embeddings_are_centred_before_distances():
    from semiseg.advisor.advise import centred_embeddings

    # pooled post-ReLU features: all in one orthant, cosine similarity near 1 before centring
    cand = np.array([[1.0, 1.0, 1.1], [1.0, 1.1, 1.0], [1.1, 1.0, 1.0]])
    cov = np.array([[1.0, 1.0, 1.0]])
    raw = cand / np.linalg.norm(cand, axis=1, keepdims=True)
    assert (raw @ raw.T).min() > 0.99
    c, k = centred_embeddings(cand, cov)
    assert np.allclose(np.linalg.norm(c, axis=1), 1) and k.shape == (1, 3)
    assert (c @ c.T)[~np.eye(3, dtype=bool)].max() < 0.0  # distinct directions once centred
    c2, none = centred_embeddings(cand, None)
    assert none is None and np.allclose((c2 @ c2.T)[0, 1], -0.5)  # three symmetric points around their mean
