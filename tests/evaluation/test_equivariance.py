import numpy as np
import pytest
import torch

from semiseg.config.schema import EvalConfig
from semiseg.data.replay import AugmentationPolicy, strong_policy
from semiseg.evaluation.equivariance import equivariance_dice, masked_dice


class Pointwise(torch.nn.Module):
    """Class 1 where the intensity is above 0.5: commutes exactly with any pixel permutation."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x[:, :1]), 20 * (x[:, :1] - 0.5)], dim=1)


class LeftHalf(torch.nn.Module):
    """Class 1 on the left half of the image whatever it shows: not equivariant to flips."""

    def forward(self, x):
        ramp = torch.linspace(1, -1, x.shape[-1]).expand_as(x[:, :1])
        return torch.cat([torch.zeros_like(ramp), 10 * ramp], dim=1)


FLIPS = AugmentationPolicy(flip=1.0, translate=0.0)


def image(shape=(1, 3, 16, 16)):
    return np.random.default_rng(0).random(shape).astype(np.float32)


def test_masked_dice_policy():
    e = torch.zeros(4, dtype=torch.bool)
    assert masked_dice(e, e, ~e) == 1.0
    a = torch.tensor([True, True, False, False])
    b = torch.tensor([True, False, True, False])
    assert masked_dice(a, b, torch.ones(4, dtype=torch.bool)) == pytest.approx(0.5)
    assert masked_dice(a, b, torch.tensor([True, True, False, True])) == pytest.approx(2 / 3)


@pytest.mark.parametrize("dims", [2, 3])
def test_equivariant_model_scores_one_and_position_model_does_not(dims):
    patch = (16, 16) if dims == 2 else (3, 16, 16)
    kw = dict(groups={"fg": [1]}, policy=FLIPS, spatial_dims=dims, patch_size=patch, eval_cfg=EvalConfig(sw_overlap=0.0))
    assert equivariance_dice(Pointwise(), image(), **kw) == {"fg": 1.0}
    assert equivariance_dice(LeftHalf(), image(), **kw)["fg"] < 0.1


def test_strong_transforms_are_seeded_per_call():
    kw = dict(groups={"fg": [1]}, policy=strong_policy().model_copy(update={"elastic_sigma": 3.0, "elastic_alpha": 40.0}),
              spatial_dims=2, patch_size=(16, 16), eval_cfg=EvalConfig())
    a = equivariance_dice(LeftHalf(), image(), seed=1, **kw)
    assert a == equivariance_dice(LeftHalf(), image(), seed=1, **kw)
    assert 0.0 <= a["fg"] <= 1.0


@pytest.mark.slow
def test_evaluate_run_reports_equivariance_dice(msd_dataset, tmp_path):
    from semiseg.config import load_config
    from semiseg.engine.trainer import Trainer
    from semiseg.evaluation.run_eval import evaluate_run
    from semiseg.evaluation.scoring import read_csv
    from tests.conftest import tiny_overrides

    cfg = load_config("synthbrain2d_supervised", tiny_overrides(msd_dataset) + ["train.iterations=2", "train.val_every=2"])
    Trainer(cfg, tmp_path / "run").fit()
    res = evaluate_run(tmp_path / "run", "test", save_predictions=False, equivariance=True)
    rows = [r for r in read_csv(tmp_path / "run" / "eval_test" / "summary.csv") if r["metric"] == "equivariance_dice"]
    assert {r["class"] for r in rows} == set(res["classes"]) | {"mean"}
    assert all(0.0 <= float(r["mean"]) <= 1.0 and int(r["n"]) == 2 for r in rows)
    assert (tmp_path / "run" / "eval_test" / "equivariance.csv").is_file()


def test_given_prediction_is_used_instead_of_recomputing():
    from semiseg.evaluation.inference import predict_probabilities

    kw = dict(groups={"fg": [1]}, policy=FLIPS, spatial_dims=2, patch_size=(16, 16), eval_cfg=EvalConfig())
    img = image()
    given = predict_probabilities(LeftHalf(), img, 2, (16, 16), EvalConfig())
    assert equivariance_dice(LeftHalf(), img, probs=given, **kw) == equivariance_dice(LeftHalf(), img, **kw)
    assert equivariance_dice(LeftHalf(), img, probs=torch.flip(given, dims=[-1]), **kw)["fg"] > 0.9  # it is what gets warped
