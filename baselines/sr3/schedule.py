"""Noise schedules as small immutable objects: β_t, α_t = 1 − β_t, γ_t = Π α_i (SR3's notation).

A schedule is described by a JSON-able spec (stored in checkpoints) and rebuilt from it:
`{"kind": "linear", "T": 2000, "beta_start": 1e-6, "beta_end": 0.01}` (the SR3 paper's training schedule),
`{"kind": "cosine", "T": 1000, "s": 0.008}`, `{"kind": "respace", "steps": 100, "base": SPEC}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

# The SR3 paper's training schedule: linear β from 1e-6 to 0.01 over T = 2000.
PAPER_TRAIN: dict[str, Any] = {"kind": "linear", "T": 2000, "beta_start": 1e-6, "beta_end": 0.01}
# The harness's training default, chosen by measurement (docs/sr3.md): cosine over T = 2000.
TRAIN_DEFAULT: dict[str, Any] = {"kind": "cosine", "T": 2000, "s": 0.008}


@dataclass(frozen=True)
class Schedule:
    """β_1..β_T (a tuple, so the object is immutable); derived tensors are float64 copies."""

    betas: tuple[float, ...]
    spec: tuple[tuple[str, Any], ...] = ()  # the spec it was built from, as sorted items

    def __post_init__(self) -> None:
        """Check 0 < β < 1."""
        if not self.betas:
            raise ValueError("a schedule needs at least one step")
        if not all(0.0 < b < 1.0 for b in self.betas):
            raise ValueError("every beta must lie in (0, 1)")

    @property
    def T(self) -> int:  # noqa: N802 - the paper's name
        """Number of steps."""
        return len(self.betas)

    def beta(self) -> torch.Tensor:
        """(T,) β_t, t = 1..T."""
        return torch.tensor(self.betas, dtype=torch.float64)

    def alpha(self) -> torch.Tensor:
        """(T,) α_t = 1 − β_t."""
        return 1.0 - self.beta()

    def gamma(self) -> torch.Tensor:
        """(T,) γ_t = Π_{i≤t} α_i, decreasing from ≈1 to γ_T."""
        return torch.cumprod(self.alpha(), dim=0)

    def gamma_prev(self) -> torch.Tensor:
        """(T,) γ_{t−1}, with γ_0 = 1."""
        g = self.gamma()
        return torch.cat([torch.ones(1, dtype=g.dtype), g[:-1]])

    def sampling_gammas(self) -> torch.Tensor:
        """(T+1,) float64 noise levels for the samplers: γ_T, ..., γ_1, then 1 (clean)."""
        return torch.cat([self.gamma().flip(0), torch.ones(1, dtype=torch.float64)])

    def to_spec(self) -> dict[str, Any]:
        """The JSON spec this schedule was built from."""
        return _unitems(self.spec)

    def gamma_table(self) -> torch.Tensor:
        """(T+1,) float64 γ_0 = 1, γ_1, ..., γ_T: what `sample_gamma` draws from (move it to the device once)."""
        return torch.cat([torch.ones(1, dtype=torch.float64), self.gamma()])

    def sample_gamma(self, b: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(B,) training noise levels drawn from this schedule (builds its table: training keeps one instead)."""
        return sample_gamma(self.gamma_table().to(device), b)

    def respace(self, steps: int) -> Schedule:
        """A `steps`-step schedule over the same γ range: log γ interpolated at evenly spaced positions."""
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        log_g = torch.log(torch.cat([torch.ones(1, dtype=torch.float64), self.gamma()]))  # (T+1,) from t=0
        pos = torch.linspace(0, self.T, steps + 1, dtype=torch.float64)[1:]
        lo = pos.floor().long().clamp(max=self.T - 1)
        frac = pos - lo
        new_log_g = log_g[lo] * (1 - frac) + log_g[(lo + 1).clamp(max=self.T)] * frac
        g = torch.exp(torch.cat([torch.zeros(1, dtype=torch.float64), new_log_g]))
        betas = (1.0 - g[1:] / g[:-1]).clamp(1e-12, 0.999999)
        return Schedule(tuple(betas.tolist()), _items({"kind": "respace", "steps": steps, "base": self.to_spec()}))


def sample_gamma(table: torch.Tensor, b: int) -> torch.Tensor:
    """(B,) noise levels per example from a (T+1,) `gamma_table`: t ~ U{1..T}, γ ~ U(γ_t, γ_{t−1}) (SR3 §2.4)."""
    n = table.shape[0] - 1
    # t uniform over 1..T for each example (global RNG: the training loop saves and restores it).
    t = torch.randint(1, n + 1, (b,), device=table.device)
    u = torch.rand(b, device=table.device, dtype=torch.float64)
    # Piecewise uniform: between γ_t (lower) and γ_{t−1} (upper).
    return (table[t] + u * (table[t - 1] - table[t])).float()


def _items(spec: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, _items(v) if isinstance(v, dict) else v) for k, v in spec.items()))


def _unitems(items: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return {k: _unitems(v) if isinstance(v, tuple) else v for k, v in items}


def linear(T: int = 2000, beta_start: float = 1e-6, beta_end: float = 0.01) -> Schedule:  # noqa: N803
    """Linear β from beta_start to beta_end over T steps (SR3's training schedule by default)."""
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64) if T > 1 else torch.tensor([beta_end])
    spec = {"kind": "linear", "T": T, "beta_start": beta_start, "beta_end": beta_end}
    return Schedule(tuple(betas.tolist()), _items(spec))


def cosine(T: int = 1000, s: float = 0.008) -> Schedule:  # noqa: N803
    """Nichol & Dhariwal's cosine schedule: γ(t) ∝ cos²((t/T + s)/(1 + s)·π/2), β clipped at 0.999."""
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(1e-12, 0.999)
    return Schedule(tuple(betas.tolist()), _items({"kind": "cosine", "T": T, "s": s}))


def training_schedule(kind: str, T: int, **betas: float) -> dict[str, Any]:  # noqa: N803
    """The JSON spec of a recipe's training schedule: linear (with `betas`: beta_start, beta_end) or cosine."""
    if kind == "linear":
        return linear(T, **betas).to_spec()
    if kind == "cosine":
        return cosine(T).to_spec()
    raise ValueError(f"--set schedule={kind}: the training schedule must be linear or cosine")


def from_spec(spec: dict[str, Any]) -> Schedule:
    """Rebuild a schedule from its JSON spec."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    try:
        if kind == "linear":
            return linear(int(spec.get("T", 2000)), float(spec["beta_start"]), float(spec["beta_end"]))
        if kind == "cosine":
            return cosine(int(spec.get("T", 1000)), float(spec.get("s", 0.008)))
        if kind == "respace":
            return from_spec(spec["base"]).respace(int(spec["steps"]))
    except KeyError as exc:
        raise ValueError(f"schedule spec {spec} of kind {kind!r} lacks {exc}") from exc
    raise ValueError(f"unknown schedule kind {kind!r}; known: linear, cosine, respace")


def posterior(schedule: Schedule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coefficients of q(y_{t−1} | y_t, y_0) = N(c0·y_0 + ct·y_t, var), each (T,) float64 (DDPM eq. 6-7)."""
    beta, alpha, gamma, gamma_prev = (
        schedule.beta(),
        schedule.alpha(),
        schedule.gamma(),
        schedule.gamma_prev(),
    )
    c0 = torch.sqrt(gamma_prev) * beta / (1 - gamma)
    ct = torch.sqrt(alpha) * (1 - gamma_prev) / (1 - gamma)
    var = (1 - gamma_prev) / (1 - gamma) * beta
    return c0, ct, var
