"""Preconditioning per parameterization, in the shape of Karras et al. (2022): raw output F -> ŷ0, loss weight.

With y_t = a·y0 + s·ε, a = √γ, s = √(1−γ), every parameterization is an affine map of the network's raw
output F: ŷ0 = c_skip(γ)·y_t + c_out(γ)·F.

| name  | the network predicts                        | c_skip        | c_out          |
|-------|---------------------------------------------|---------------|----------------|
| `eps` | ε (the SR3 paper)                           | 1/a           | −s/a           |
| `x0`  | y0                                          | 0             | 1              |
| `v`   | v = a·ε − s·y0                              | a             | −s             |
| `edm` | F, unit variance at every γ (σ_data = 0.5)  | a·σ²/(a²σ²+s²) | s·σ/√(a²σ²+s²) |

The loss weight w(γ) = 1/|c_out| turns the error on ŷ0 back into the error on F: w·|ŷ0 − y0| = |F − F*|, so
one loss over (ŷ0 − y0) trains every parameterization on its own target, as the separate losses did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

SIGMA_DATA = 0.5  # std of images in [-1, 1], the `edm` preconditioning's σ_data


def alpha_sigma(gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """a = √γ and s = √(1−γ) shaped (B,1,1,1), fp32; s is floored at 1e-6 (γ may round to 1 in fp32)."""
    g = gamma.float()[:, None, None, None]
    return g.sqrt(), (1 - g).clamp(min=1e-12).sqrt()


Pair = tuple[torch.Tensor, torch.Tensor]
# A closed form of ŷ0 or ε̂ in the raw output: (out, y_t, a, s) -> tensor, each (B,C,H,W) or (B,1,1,1).
ClosedForm = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _edm(a: torch.Tensor, s: torch.Tensor) -> Pair:
    """(c_skip, c_out) of the `edm` row for a = √γ, s = √(1−γ)."""
    sd2 = SIGMA_DATA**2
    # Var(ỹ) = a²σ_d² + s²; c_skip minimizes the target's variance, c_out scales it to unit variance.
    var = a * a * sd2 + s * s
    return a * sd2 / var, s * SIGMA_DATA / var.sqrt()


def edm_coefficients(gamma: torch.Tensor) -> Pair:
    """(c_skip, c_out) of ŷ0 = c_skip·ỹ + c_out·F for ỹ = a·y0 + s·ε and data std σ_data (Karras et al. 2022)."""
    return _edm(*alpha_sigma(gamma))


@dataclass(frozen=True)
class Precond:
    """A parameterization: ŷ0 = c_skip·y_t + c_out·F, ε̂ implied by ŷ0, and the loss weight 1/|c_out|.

    `skip_out` is the module table's row, (a, s) -> (c_skip, c_out). Where the raw output gives ŷ0 or ε̂ in
    closed form (`y0_form`, `eps_form`), that form is used instead: the same numbers as the earlier code,
    and no division by s.
    """

    name: str
    skip_out: Callable[[torch.Tensor, torch.Tensor], Pair]
    y0_form: ClosedForm | None = None
    eps_form: ClosedForm | None = None

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled by name (the rows hold lambdas): a model holding its Precond can be saved or sent whole."""
        return get_precond, (self.name,)

    def coefficients(self, gamma: torch.Tensor) -> Pair:
        """(c_skip, c_out), each (B,1,1,1) fp32."""
        return self.skip_out(*alpha_sigma(gamma))

    def y0(self, out: torch.Tensor, y_t: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """ŷ0 from the raw output `out`, the noisy image y_t and γ (B,)."""
        a, s = alpha_sigma(gamma)
        if self.y0_form is not None:
            return self.y0_form(out, y_t, a, s)
        c_skip, c_out = self.skip_out(a, s)
        return c_skip * y_t + c_out * out

    def eps(self, out: torch.Tensor, y_t: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """ε̂ = (y_t − a·ŷ0) / s, or the closed form."""
        a, s = alpha_sigma(gamma)
        if self.eps_form is not None:
            return self.eps_form(out, y_t, a, s)
        return (y_t - a * self.y0(out, y_t, gamma)) / s

    def weight(self, gamma: torch.Tensor) -> torch.Tensor:
        """(B,1,1,1) loss weight 1/|c_out|: w·|ŷ0 − y0| is the error on the raw output."""
        return 1.0 / self.coefficients(gamma)[1].abs()


PRECONDS: dict[str, Precond] = {
    p.name: p
    for p in (
        # ε-prediction (the paper): ŷ0 = (y_t − s·ε̂)/a, written as the public code does; ε̂ is the output.
        Precond("eps", lambda a, s: (1 / a, -s / a),
                y0_form=lambda out, y_t, a, s: (y_t - s * out) / a, eps_form=lambda out, y_t, a, s: out),
        # y0-prediction: ŷ0 is the output.
        Precond("x0", lambda a, s: (torch.zeros_like(a), torch.ones_like(a)), y0_form=lambda out, y_t, a, s: out),
        # v-prediction (Salimans & Ho 2022): v = a·ε − s·y0, so ŷ0 = a·y_t − s·v̂ and ε̂ = s·y_t + a·v̂.
        Precond("v", lambda a, s: (a, -s), eps_form=lambda out, y_t, a, s: s * y_t + a * out),
        # Karras et al.'s preconditioning for this variance-preserving process (σ_data = 0.5).
        Precond("edm", _edm),
    )
}
PARAMETERIZATIONS = tuple(PRECONDS)


def get_precond(name: str) -> Precond:
    """The preconditioning of a parameterization; an unknown name is an error listing the valid ones."""
    if name not in PRECONDS:
        raise ValueError(f"unknown parameterization {name!r}; valid: {', '.join(PARAMETERIZATIONS)}")
    return PRECONDS[name]
