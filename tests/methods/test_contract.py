"""Every registered method honours the Method contract (GUIDE): one step on tiny 2D batches."""

import pytest
import torch

from semiseg.methods import create_method, get_method_class, list_methods
from tests.conftest import tiny_unet_context

C = 3


def builtin_methods() -> list[str]:
    """The package's methods (tests may register extra ones)."""
    return [m for m in list_methods() if get_method_class(m).__module__.startswith("semiseg.")]


def ctx(total=10, dims=2):
    return tiny_unet_context(dims, total, classes=C, features=(4, 8, 16) if dims == 2 else (2, 4, 8))


def batches(n_l=2, n_u=2, size=16, dims=2):
    g = torch.Generator().manual_seed(0)
    shape = (size,) * dims
    lab = {"image": torch.randn(n_l, 1, *shape, generator=g), "label": torch.randint(0, C, (n_l, *shape), generator=g)}
    unl = {"image": torch.randn(n_u, 1, *shape, generator=g)}
    return lab, unl


class Recorder:
    """Stands in for the engine's optimize(): backward, then record and clear the grads of that group."""

    def __init__(self, method):
        self.groups = {n: list(p) for n, p in method.configure_optimizers().items()}
        self.calls = []

    def __call__(self, loss, name):
        loss.backward()
        self.calls.append(name)
        for p in self.groups[name]:
            p.grad = None


@pytest.mark.parametrize("name", builtin_methods())
@pytest.mark.parametrize("with_unlabeled", [True, False])
@pytest.mark.parametrize("dims", [2, 3])
def test_training_step_contract(name, with_unlabeled, dims):
    torch.manual_seed(0)
    m = create_method(name, ctx(dims=dims), {})
    m.train()
    rec = Recorder(m)
    m.attach_optimize(rec)
    lab, unl = batches(dims=dims)
    out = m.training_step(lab, unl if with_unlabeled else None, 5)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    for k, v in out.items():
        assert torch.isfinite(torch.as_tensor(v)).all(), k
        if k != "loss":
            assert not torch.as_tensor(v).requires_grad, f"term {k} must be detached"
    net = m.inference_network()
    if m.manual_optimization:
        assert rec.calls and rec.calls[0] == "main"
    else:
        out["loss"].backward()
        grads = [p.grad for p in m.configure_optimizers()["main"]]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), "no gradient reaches the trained networks"
    trained = {id(p) for ps in m.configure_optimizers().values() for p in ps}
    before = [q.detach().clone() for q in net.parameters()]
    if not any(id(q) in trained for q in net.parameters()):  # an EMA teacher predicts: a step must move it
        with torch.no_grad():
            for ps in m.configure_optimizers().values():
                for q in ps:
                    q.add_(0.01)
    m.on_after_step(5)
    if not any(id(q) in trained for q in net.parameters()):
        assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters())), "the inference network never changes"
    groups = m.configure_optimizers()
    assert "main" in groups and all(isinstance(p, torch.nn.Parameter) for ps in groups.values() for p in ps)
    # the whole method state round-trips
    m2 = create_method(name, ctx(dims=dims), {})
    m2.load_state_dict(m.state_dict())
    for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    assert net.num_classes == C


def test_list_methods_has_every_issue_method():
    assert set(list_methods()) >= {"supervised", "roam", "mean_teacher", "ua_mt", "cps", "pseudo_label",
                                   "adversarial", "graph_embedding"}


@pytest.mark.parametrize("name", [n for n in builtin_methods() if n != "supervised"])
def test_unknown_param_is_rejected(name):
    from semiseg.errors import ConfigError

    with pytest.raises(ConfigError, match="valid params"):
        create_method(name, ctx(), {"no_such_param": 1})
