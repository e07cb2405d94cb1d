"""The CUDA path gives the CPU's numbers and trains every method (skipped where no GPU is present)."""

import copy

import numpy as np
import pytest
import torch

from semiseg.config import load_config
from semiseg.config.schema import EvalConfig
from semiseg.data.replay import draw_transform, strong_policy
from semiseg.engine.checkpoint import load_checkpoint
from semiseg.engine.trainer import Trainer
from semiseg.evaluation.inference import predict_probabilities
from tests.conftest import tiny_overrides
from tests.methods.test_contract import builtin_methods
from tests.networks.test_networks import CASES, build

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
GPU = torch.device("cuda")


@pytest.fixture(autouse=True)
def _exact_fp32():
    """No TF32 so CPU and GPU float32 agree to rounding."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("name,dims", list(CASES))
def test_network_forward_matches_cpu(name, dims):
    case = CASES[(name, dims)]
    net = build(name, dims, case["kwargs"])
    x = torch.randn(*case["shape"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = net(x)
        out = net.to(GPU)(x.to(GPU)).cpu()
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dims", [2, 3])
def test_replayed_transform_matches_cpu(dims):
    """The same generator state draws the same transform on either device (EquiReg's T)."""
    size = (24,) * dims
    probs = torch.softmax(torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(2)), 1)
    t_cpu = draw_transform(strong_policy(), 3, size, torch.Generator().manual_seed(5))
    t_gpu = draw_transform(strong_policy(), 3, size, torch.Generator().manual_seed(5), device=GPU)
    torch.testing.assert_close(t_gpu.apply_probabilities(probs.to(GPU)).cpu(), t_cpu.apply_probabilities(probs),
                               rtol=1e-4, atol=1e-4)
    # valid masks agree up to pixels whose source lies on the border within rounding
    assert (t_gpu.valid.cpu() != t_cpu.valid).float().mean() < 1e-3


@pytest.mark.parametrize("dims,mode", [(2, "patch"), (3, "resize")])
def test_sliding_window_matches_cpu(dims, mode):
    net = build("unet", 2, {}) if dims == 2 else build("vnet", 3, {"n_filters": 4})
    image = np.random.default_rng(0).normal(size=(1, 3, 40, 56)).astype(np.float32) if dims == 2 else \
        np.random.default_rng(0).normal(size=(1, 20, 28, 24)).astype(np.float32)
    patch = [32, 32] if dims == 2 else [16, 16, 16]
    ref = predict_probabilities(net, image, dims, patch, EvalConfig(), slice_mode=mode)
    out = predict_probabilities(copy.deepcopy(net).to(GPU), image, dims, patch, EvalConfig(), device=GPU, slice_mode=mode)
    assert out.device.type == "cpu" and out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("method", builtin_methods())
@pytest.mark.parametrize("dims", [2, 3])
def test_every_method_trains_on_cuda_with_amp(msd_dataset, tmp_path, method, dims):
    preset = "synthbrain2d_supervised" if dims == 2 else "synthbrain3d_supervised"
    cfg = load_config(preset, tiny_overrides(msd_dataset, dims) + [
        f"method.name={method}", "train.unlabeled_batch_size=2", "split.unlabeled=rest", "train.device=cuda",
        "train.amp=true", "train.iterations=4", "train.val_every=2", "train.checkpoint_every=2"])
    result = Trainer(cfg, tmp_path / method).fit()
    assert result["step"] == 4 and 0.0 <= result["best_metric"] <= 1.0
    state = load_checkpoint(tmp_path / method / "checkpoint_final.pt")["method_state"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
