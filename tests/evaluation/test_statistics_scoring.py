import numpy as np
import pytest

from semiseg.evaluation.scoring import score_case, summarize
from semiseg.evaluation.statistics import bridging_coefficient, relative_improvement


def test_relative_improvement_and_bridging():
    assert relative_improvement(0.6, 0.5) == pytest.approx(0.2)
    assert bridging_coefficient(0.7, 0.5, 0.9) == pytest.approx(0.5)
    assert bridging_coefficient(0.5, 0.5, 0.9) == 0.0 and bridging_coefficient(0.9, 0.5, 0.9) == 1.0
    with pytest.raises(ZeroDivisionError):
        bridging_coefficient(0.7, 0.5, 0.5)


def test_score_case_fov_squeeze_and_summary():
    ref = np.zeros((1, 8, 8), np.int16)
    ref[0, 2:5, 2:5] = 1
    pred = ref.copy()
    pred[0, 7, 7] = 1  # outside the field of view: ignored
    fov = np.ones((1, 8, 8), bool)
    fov[0, 7, 7] = False
    rows = score_case("a", pred, ref, ["bg", "fg"], (1.0, 1.0, 1.0), ["dice", "hd95"], fov=fov)
    assert rows == [{"case": "a", "class": "fg", "dice": 1.0, "hd95": 0.0, "empty": "none"}]
    rows2 = score_case("b", np.zeros_like(ref), ref, ["bg", "fg"], None, ["dice", "hd95"])
    s = summarize(rows + rows2, ["dice"], ["fg"])
    fg = next(x for x in s if x["class"] == "fg")
    assert fg["mean"] == 0.5 and fg["n"] == 2 and fg["median"] == 0.5


def test_bootstrap_ci_matches_scipy_percentile_bootstrap():
    import numpy as np
    import scipy.stats

    from semiseg.evaluation.statistics import bootstrap_ci

    x = np.random.default_rng(1).beta(5, 2, size=40)
    lo, hi = bootstrap_ci(x, n_resamples=20000)
    ref = scipy.stats.bootstrap((x,), np.mean, n_resamples=20000, method="percentile", random_state=0).confidence_interval
    assert abs(lo - ref.low) < 0.004 and abs(hi - ref.high) < 0.004
    assert lo < x.mean() < hi


def test_bootstrap_ci_two_levels_is_wider_with_seed_spread():
    import numpy as np

    from semiseg.evaluation.statistics import bootstrap_ci

    cases = np.random.default_rng(2).uniform(0.6, 0.9, size=20)
    same = np.stack([cases] * 3)
    spread = np.stack([cases - 0.1, cases, cases + 0.1])
    w_same = np.subtract(*bootstrap_ci(same)[::-1])
    w_spread = np.subtract(*bootstrap_ci(spread)[::-1])
    assert w_spread > w_same > 0
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])
