"""``roam``: Random Layer Mixup (Bdair et al., ROAM; Algorithm 1).

Per step (starting from a pre-trained model, ``method.init_from``):

1. pseudo-labels for the unlabeled batch from the current model (no gradient, Eq. 4),
   sharpened with temperature T (Eq. 5);
2. labeled and unlabeled batches concatenated (``concatenate: false`` keeps them separate:
   each sample is then paired only within its own stream — the ablation of Table I);
3. a layer kappa drawn uniformly from ``kappas`` (0 = input, 1..L-1 hidden, L = last hidden
   state before the head; ``phi`` = no mixup, lambda' = 1);
4. the hidden state at kappa mixed with a permuted copy, ``lambda' = max(lambda, 1 - lambda)``,
   ``lambda ~ Beta(alpha, alpha)`` (Eq. 6-7), the targets with the same lambda' and pairing (Eq. 8);
   with ``mix_skips`` the skip connections carried at kappa are mixed too (Table IV);
5. forward resumed from kappa; loss = soft-target CE on the labeled part + beta * MSE between the
   softmax and the mixed targets on the unlabeled part (Eq. 9), beta ramped up.

Special cases are presets, not copies: MixMatch (``kappas: [0]``), manifold mixup
(``kappas: [2]``), and ROAM as a supervised regulariser, ROAM-LB / ROAM-UB
(``supervised_only: true``: the labeled batch mixed with its own permutation, CE only).

Every member of ``kappas`` is drawn: the counts are kept in ``kappa_counts`` (saved with the
checkpoint) and each step logs which one it drew (``kappa_<k>`` averages to its frequency).

Choices where the paper is silent: pseudo-labels are guessed with the network in training mode
(``guess_mode: train``, as MixMatch's code does: batch statistics, dropout active). Guessing in
evaluation mode (running batch-norm statistics, which drift while the network trains on mixed
batches) fed back into the targets and collapsed the segmentation on ACDC validation data within
200 steps (mean Dice 0.45 -> 0.02), where training-mode guesses reached 0.56. ``dice_weight``
(default 0, the paper's CE only) may add a soft Dice term on the labeled part; beta's ramp-up is
linear over ``rampup_fraction`` of the run (MixMatch).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import field_validator

from semiseg.losses import cross_entropy, dice_loss, one_hot, softmax_mse
from semiseg.methods.base import Method, MethodContext, MethodParams
from semiseg.methods.mixup import mix, mix_state, pairing, sample_mix_coefficient, sharpen
from semiseg.methods.registry import register_method
from semiseg.networks.base import SegmentationNetwork

PHI = -1  # "no mixup" as a member of the kappa set


class RoamParams(MethodParams):
    temperature: float = 0.5
    alpha: float = 0.75
    beta: float = 75.0
    beta_rampup: Literal["none", "linear", "sigmoid", "cosine"] = "linear"
    rampup_fraction: float = 0.3
    kappas: list[int | str] = [0, 1, "L"]
    concatenate: bool = True
    sharpen: bool = True
    mix_skips: bool = False
    supervised_only: bool = False
    dice_weight: float = 0.0
    guess_mode: Literal["eval", "train"] = "train"

    @field_validator("kappas")
    @classmethod
    def _check_kappas(cls, v: list[int | str]) -> list[int | str]:
        if not v:
            raise ValueError("kappas must name at least one layer")
        for k in v:
            if isinstance(k, str) and k not in ("L", "phi", "all"):
                raise ValueError(f"kappa '{k}' must be a layer index, 'L' (last), 'phi' (no mix) or 'all'")
            if isinstance(k, int) and k < 0:
                raise ValueError(f"kappa {k} must be >= 0")
        return v

    @field_validator("temperature", "alpha")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be > 0")
        return v


def resolve_kappas(spec: list[int | str], num_layers: int) -> list[int]:
    """Turn the configured set into layer indices (``L`` -> num_layers, ``phi`` -> PHI, ``all`` -> 0..L)."""
    out: list[int] = []
    for k in spec:
        if k == "all":
            out += list(range(num_layers + 1))
        elif k == "L":
            out.append(num_layers)
        elif k == "phi":
            out.append(PHI)
        else:
            if int(k) > num_layers:
                raise ValueError(f"kappa {k} exceeds the network's last layer L = {num_layers}")
            out.append(int(k))
    return sorted(set(out))


def kappa_name(k: int) -> str:
    return "phi" if k == PHI else str(k)


@register_method
class Roam(Method):
    name = "roam"
    Params = RoamParams
    uses_unlabeled = True

    def __init__(self, ctx: MethodContext, params: RoamParams) -> None:
        super().__init__(ctx, params)
        self.network = ctx.network_factory()
        self.kappas = resolve_kappas(params.kappas, self.network.num_layers)
        self.uses_unlabeled = not params.supervised_only  # type: ignore[misc]
        self.register_buffer("kappa_counts", torch.zeros(len(self.kappas), dtype=torch.long))

    def inference_network(self) -> SegmentationNetwork:
        return self.network

    def draw_kappa(self) -> int:
        return self.kappas[int(torch.randint(len(self.kappas), (1,)))]

    def training_step(self, labeled, unlabeled, step):  # type: ignore[override]
        p: RoamParams = self.params  # type: ignore[assignment]
        net = self.network
        c = self.ctx.num_classes
        x_l, y_l = labeled["image"], one_hot(labeled["label"], c)
        n_l = x_l.shape[0]
        use_unl = unlabeled is not None and not p.supervised_only
        if use_unl:
            x_u = unlabeled["image"]
            with torch.no_grad():
                was_training = net.training
                net.train(p.guess_mode == "train")
                guess = torch.softmax(net(x_u).float(), dim=1)  # Eq. 4
                net.train(was_training)
                y_u = sharpen(guess, p.temperature) if p.sharpen else guess  # Eq. 5
            x = torch.cat([x_l, x_u])
            y = torch.cat([y_l, y_u])
            groups = [x.shape[0]] if p.concatenate else [n_l, x_u.shape[0]]
        else:
            x, y, groups = x_l, y_l, [n_l]

        kappa = self.draw_kappa()
        self.kappa_counts[self.kappas.index(kappa)] += 1
        if kappa == PHI:
            lam, layer = 1.0, 0
            perm = torch.arange(x.shape[0], device=x.device)
        else:
            lam, layer = sample_mix_coefficient(p.alpha), kappa
            perm = pairing(groups, x.device)
        state = mix_state(net.forward_to(x, layer), perm, lam, p.mix_skips)  # Eq. 6-7
        logits = net.forward_from(state, layer)
        y_mix = mix(y, perm, lam)  # Eq. 8

        ce = cross_entropy(logits[:n_l], y_mix[:n_l])
        loss = ce
        out: dict[str, torch.Tensor] = {"ce": ce.detach()}
        if p.dice_weight:
            dc = dice_loss(torch.softmax(logits[:n_l], 1), y_mix[:n_l])
            loss = loss + p.dice_weight * dc
            out["dice"] = dc.detach()
        if use_unl:
            mse = softmax_mse(logits[n_l:], y_mix[n_l:])
            weight = self.ramped(p.beta, p.beta_rampup, step)
            loss = loss + weight * mse
            out["mse"] = mse.detach()
            out["beta"] = torch.tensor(weight)
        out["mix_lambda"] = torch.tensor(lam)
        for k in self.kappas:
            out[f"kappa_{kappa_name(k)}"] = torch.tensor(float(k == kappa))
        return {"loss": loss, **out}
